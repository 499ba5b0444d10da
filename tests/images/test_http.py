"""Uploads and downloads over a real HTTP connection (uvicorn on loopback): multipart and raw bodies,
named problems as JSON, size limits, Range, ETag, Repr-Digest, receipts, and what each party may take."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent, LibraryImage
from tests.fixtures.library import GOOD_NOTES, OTHER_C1, OWN_A1, OWN_A2, World, client, make_world, serving

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def send(
    http: httpx2.AsyncClient, data: bytes, notes: str | None = GOOD_NOTES, **fields: str
) -> httpx2.Response:
    """POST a multipart upload as a browser form or `curl -F` would."""
    values = dict(fields)
    if notes is not None:
        values["releaseNotes"] = notes
    return await http.post(
        "/api/v1/images", files={"file": ("image.zigbee", data, "application/octet-stream")}, data=values
    )


async def images_stored(world: World) -> int:
    async with world.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LibraryImage)) or 0)


async def test_a_multipart_upload_answers_201_with_hashes_header_state_and_problems(world: World) -> None:
    data = world.image(OWN_A1, min_hw="0001", max_hw="0FFF")
    async with serving(world.app()) as url, client(url, world.tokens.manufacturer) as http:
        response = await send(http, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/images/{body['id']}"
    assert body["state"] == "draft" and body["problems"] == []
    assert body["fileSha256"] == hashlib.sha256(data).hexdigest()
    assert body["manufacturerImageSha256"] == OWN_A1.cpl_hash
    assert body["header"]["manufacturerCode"] == "10B2"
    assert body["header"]["minimumHardwareVersion"] == "0001"
    assert body["deviceModel"] == {"manufacturerId": "10B2", "modelId": "0001", "hardwareVersion": "0100"}
    assert body["fileName"] == f"10B2-0001-01000000-{body['fileSha256']}.zigbee"
    assert "<li>" in body["releaseNotes"]["html"]


async def test_a_raw_body_upload_names_the_model_in_the_query_and_lacks_notes(world: World) -> None:
    async with serving(world.app()) as url, client(url, world.tokens.manufacturer) as http:
        response = await http.post(
            "/api/v1/images?modelId=0001&hardwareVersion=0100",
            content=world.image(OWN_A2),
            headers={"Content-Type": "application/octet-stream"},
        )
    assert response.status_code == 201, response.text
    assert [p["problem"] for p in response.json()["problems"]] == ["release-notes-missing"]


async def test_refusals_are_json_with_named_problems_and_keep_nothing(world: World) -> None:
    data = world.image(OWN_A1)
    async with serving(world.app()) as url, client(url, world.tokens.manufacturer) as http:
        cases = {
            "bad magic": (await send(http, b"PK\x03\x04" + data[4:]), 422),
            "not yours": (await send(http, world.image(OTHER_C1)), 403),
            "bad notes": (await send(http, data, notes="# Only a heading"), 422),
            "bad field": (
                await send(http, data, modelId="XYZW!", hardwareVersion="0100"),
                422,
            ),
            "unknown field": (await send(http, data, colour="blue"), 422),
            "no file": (
                await http.post("/api/v1/images", data={"releaseNotes": GOOD_NOTES}, files={"x": ("a", b"")}),
                422,
            ),
            "wrong type": (
                await http.post("/api/v1/images", content=data, headers={"Content-Type": "text/plain"}),
                422,
            ),
            "empty": (
                await http.post(
                    "/api/v1/images", content=b"", headers={"Content-Type": "application/octet-stream"}
                ),
                422,
            ),
        }
    for name, (response, status) in cases.items():
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert body["problems"] and all(p["problem"] and p["detail"] for p in body["problems"]), name
    assert cases["bad magic"][0].json()["problems"][0]["problem"] == "bad-magic"
    assert cases["not yours"][0].json()["problems"][0]["problem"] == "manufacturer-not-yours"
    assert "modelId" in cases["bad field"][0].json()["problems"][0]["detail"]
    assert "colour" in cases["unknown field"][0].json()["problems"][0]["detail"]
    assert await images_stored(world) == 0
    assert [b async for b in world.store.list()] == []
    assert list(world.store.staging.folder.glob("*")) == []


async def test_uploads_are_for_writing_manufacturers_only(world: World) -> None:
    data = world.image(OWN_A1)
    async with serving(world.app()) as url:
        for token, status in [
            (None, 401),
            (world.tokens.supplier, 403),
            (world.tokens.read_only_manufacturer, 403),
            (world.tokens.revoked, 401),
        ]:
            async with client(url, token) as http:
                response = await send(http, data)
            assert response.status_code == status, (token, response.text)
    assert await images_stored(world) == 0


async def test_an_upload_over_the_size_limit_is_refused_with_413(world: World) -> None:
    app = world.app(max_image_bytes=50_000)

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"\x1e\xf1\xee\x0b" * 1024

    async with serving(app) as url, client(url, world.tokens.manufacturer) as http:
        declared = await http.post(
            "/api/v1/images",
            content=b"x" * 2_000_000,
            headers={"Content-Type": "application/octet-stream"},
        )
        streamed = await http.post(
            "/api/v1/images", content=endless(), headers={"Content-Type": "application/octet-stream"}
        )
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert streamed.json()["problems"][0]["problem"] == "too-large"
    assert await images_stored(world) == 0
    assert list(world.store.staging.folder.glob("*")) == []


async def test_a_supplier_downloads_exactly_the_published_bytes_with_digests(world: World) -> None:
    data = world.image(OWN_A1)
    async with serving(world.app()) as url:
        async with client(url, world.tokens.manufacturer) as http:
            image_id = (await send(http, data)).json()["id"]
        await world.publish(image_id)
        async with client(url, world.tokens.supplier) as http:
            response = await http.get(f"/api/v1/images/{image_id}/file")
            head = await http.head(f"/api/v1/images/{image_id}/file")
            receipts = (await http.get("/api/v1/downloads")).json()["downloads"]
    digest = hashlib.sha256(data).digest()
    assert response.status_code == 200
    assert response.content == data
    assert hashlib.sha256(response.content).hexdigest() == response.headers["etag"].strip('"')
    assert response.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="10B2-0001-01000000-{digest.hex()}.zigbee"'
    )
    assert response.headers["content-type"] == "application/octet-stream"
    assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(data)), b"")
    assert [(r["imageId"], r["fileSha256"], r["range"]) for r in receipts] == [(image_id, digest.hex(), None)]


async def test_range_requests_resume_a_download(world: World) -> None:
    data = world.image(OWN_A1)
    async with serving(world.app()) as url:
        async with client(url, world.tokens.manufacturer) as http:
            image_id = (await send(http, data)).json()["id"]
        await world.publish(image_id)
        async with client(url, world.tokens.supplier) as http:
            path = f"/api/v1/images/{image_id}/file"
            middle = await http.get(path, headers={"Range": "bytes=100-199"})
            tail = await http.get(path, headers={"Range": "bytes=-66"})
            rest = await http.get(path, headers={"Range": "bytes=1000-"})
            beyond = await http.get(path, headers={"Range": f"bytes={len(data)}-"})
            stale = await http.get(path, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
            cached = await http.get(path, headers={"If-None-Match": f'"{hashlib.sha256(data).hexdigest()}"'})
            receipts = (await http.get("/api/v1/downloads")).json()["downloads"]
    assert (middle.status_code, middle.content) == (206, data[100:200])
    assert middle.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert (tail.status_code, tail.content) == (206, data[-66:])
    assert (rest.status_code, rest.content) == (206, data[1000:])
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(data)}")
    assert (stale.status_code, stale.content) == (200, data)
    assert (cached.status_code, cached.content) == (304, b"")
    # Every response that carried bytes is a receipt; 416 and 304 carried none.
    assert [r["range"] for r in receipts] == [
        None,
        f"1000-{len(data) - 1}",
        f"{len(data) - 66}-{len(data) - 1}",
        "100-199",
    ]


async def test_drafts_and_withdrawn_images_are_not_served_to_others(world: World) -> None:
    data = world.image(OWN_A1)
    async with serving(world.app()) as url:
        async with client(url, world.tokens.manufacturer) as http:
            image_id = (await send(http, data)).json()["id"]
            own_draft = await http.get(f"/api/v1/images/{image_id}/file")
        async with client(url, world.tokens.supplier) as http:
            draft_to_supplier = await http.get(f"/api/v1/images/{image_id}/file")
            draft_record = await http.get(f"/api/v1/images/{image_id}")
        await world.publish(image_id)
        await world.library.withdraw(
            await world.principal(world.tokens.manufacturer), image_id, "bricks meters on cold start"
        )
        async with client(url, world.tokens.supplier) as http:
            withdrawn = await http.get(f"/api/v1/images/{image_id}/file")
            record = await http.get(f"/api/v1/images/{image_id}")
        async with client(url, world.tokens.panel) as http:
            panel = await http.get(f"/api/v1/images/{image_id}/file")
        async with client(url, None) as http:
            anonymous = await http.get(f"/api/v1/images/{image_id}/file")
    assert (own_draft.status_code, own_draft.content) == (200, data)
    assert (draft_to_supplier.status_code, draft_record.status_code) == (404, 404)
    assert withdrawn.status_code == 410 and "bricks meters on cold start" in withdrawn.json()["error"]
    assert record.json()["withdrawalReason"] == "bricks meters on cold start"
    assert panel.status_code == 410
    assert anonymous.status_code == 401


async def test_every_download_is_an_audit_event_of_the_party_that_took_it(world: World) -> None:
    data = world.image(OWN_A1)
    async with serving(world.app()) as url:
        async with client(url, world.tokens.manufacturer) as http:
            image_id = (await send(http, data)).json()["id"]
        await world.publish(image_id)
        async with client(url, world.tokens.panel) as http:
            refused = await http.get(f"/api/v1/images/{image_id}/file")
        async with client(url, world.tokens.panel_with_downloads) as http:
            assert (await http.get(f"/api/v1/images/{image_id}/file")).status_code == 200
    assert refused.status_code == 403
    async with world.db.sessions() as session:
        events = list(
            (
                await session.execute(select(AuditEvent).where(AuditEvent.action == "image.downloaded"))
            ).scalars()
        )
    assert [(e.actor, e.details["image_id"]) for e in events] == [("SEC Panel Audit", image_id)]


async def test_malformed_image_ids_are_not_found(world: World) -> None:
    async with serving(world.app()) as url, client(url, world.tokens.supplier) as http:
        for path in ["/api/v1/images/abc", "/api/v1/images/99999999999999", "/api/v1/images/-1/file"]:
            assert (await http.get(path)).status_code == 404, path


def range_spellings(size: int) -> list[str]:
    """Range headers as clients, proxies and attackers spell them (RFC 9110 14.1.1 and worse)."""
    huge = "9" * 30
    return [
        "bytes=0-5",
        "bytes=0-0",
        "bytes=5-",
        "bytes=-10",
        f"bytes={size - 1}-",
        f"bytes=0-{size - 1}",
        f"bytes=0-{size + 100}",
        f"bytes=-{size}",
        f"bytes=-{size + 1}",
        f"bytes={size}-",
        f"bytes={size}-{size + 5}",
        "bytes=0-5,2000-3000",
        "bytes=0-5,0-5",
        "bytes=1-1,2-2,3-3",
        "bytes=0-5, 6-10",
        f"bytes=0-5,{size + 10}-",
        "bytes= 0 - 5",
        "bytes= 0-5",
        "bytes=0-5\t,",
        "bytes=\t0-5",
        "bytes=0-5,",
        "bytes=,0-5",
        "bytes=0-5, ,",
        "BYTES=0-5",
        "Bytes=10-20",
        "bytes =0-5",
        "bytes= 10-20 ,",
        "bytes=5-2",
        "bytes=-0",
        "bytes=--5",
        "bytes=0--5",
        "bytes=-",
        "bytes=",
        "bytes",
        "bytes=a-b",
        "bytes=٠-٥",
        "bytes=²-5",
        "bytes=0-²",
        "bytes=0x0-5",
        "bytes=+0-5",
        "bytes=0-5;q=1",
        "bytes=0.0-5",
        f"bytes=0-{huge}",
        f"bytes={huge}-",
        f"bytes=-{huge}",
        f"bytes={huge}-{huge}",
        f"bytes={huge}-5",
        "bytes=" + "9" * 5000 + "-",
        "items=0-5",
        "none",
        "=0-5",
        "bytes==0-5",
    ]


async def test_every_range_spelling_sends_exactly_what_its_receipt_records(world: World) -> None:
    await check_range_spellings(world)


async def check_range_spellings(world: World) -> None:
    """Every spelling of `range_spellings` against a real server: each answer's bytes are exactly the
    range its Content-Range names (or the whole file), HEAD decides alike, and the receipts record
    exactly what the answers carried. Shared with the S3 store's test."""
    data = world.image(OWN_A1)
    size = len(data)
    async with serving(world.app(rate_limit_per_minute=0)) as url:
        async with client(url, world.tokens.manufacturer) as http:
            image_id = (await send(http, data)).json()["id"]
        await world.publish(image_id)
        answers = []
        async with client(url, world.tokens.supplier) as http:
            path = f"/api/v1/images/{image_id}/file"
            for spelling in range_spellings(size):
                # As the server reads header bytes (Latin-1): '²' arrives as '²', '٠' as UTF-8's bytes.
                raw = (
                    spelling.encode("latin-1") if spelling.isascii() or "²" in spelling else spelling.encode()
                )
                response = await http.get(path, headers={b"Range": raw})
                head = await http.head(path, headers={b"Range": raw})
                answers.append((spelling, response, head))
            receipts = (await http.get("/api/v1/downloads")).json()["downloads"]
    recorded = [receipt["range"] for receipt in reversed(receipts)]  # oldest first, as sent
    sent: list[str | None] = []
    for spelling, response, head in answers:
        assert head.status_code == response.status_code, spelling  # HEAD decides as GET does
        assert head.headers.get("content-range") == response.headers.get("content-range"), spelling
        if response.status_code == 200:
            assert response.content == data and "content-range" not in response.headers, spelling
            sent.append(None)
        elif response.status_code == 206:
            first, last = response.headers["content-range"].removeprefix("bytes ").split("/")[0].split("-")
            assert response.headers["content-range"].endswith(f"/{size}"), spelling
            assert response.content == data[int(first) : int(last) + 1], spelling
            assert response.headers["content-length"] == str(int(last) - int(first) + 1), spelling
            sent.append(f"{first}-{last}")
        else:
            assert response.status_code == 416, (spelling, response.status_code)
            assert response.headers["content-range"] == f"bytes */{size}", spelling
    # One receipt for each answer that carried bytes, recording exactly the bytes it carried.
    assert recorded == sent
    decided = {spelling: (r.status_code, r.headers.get("content-range")) for spelling, r, _ in answers}
    assert decided["bytes=0-5,2000-3000"] == (200, None)  # several ranges: the whole file
    # A space inside a range: no valid Range, ignored (the field's own leading and trailing spaces are
    # gone before the application sees it, so "bytes= 0 - 5 " is this one).
    assert decided["bytes= 0 - 5"] == (200, None)
    assert decided["bytes= 0-5"] == decided["bytes=0-5,"] == (206, f"bytes 0-5/{size}")  # spaces around
    assert decided["bytes=٠-٥"] == decided["bytes=²-5"] == (200, None)  # 0-9 only
    assert decided["BYTES=0-5"] == (206, f"bytes 0-5/{size}")  # the unit is case-insensitive
    assert decided["bytes=5-2"] == (200, None)  # last before first: invalid, ignored
    assert (
        decided[f"bytes={size}-"][0] == decided["bytes=-0"][0] == decided["bytes=" + "9" * 30 + "-"][0] == 416
    )
    assert decided["bytes=-" + "9" * 30] == (206, f"bytes 0-{size - 1}/{size}")


async def test_if_none_match_compares_weakly_and_star_matches(world: World) -> None:
    data = world.image(OWN_A1)
    digest = hashlib.sha256(data).hexdigest()
    async with serving(world.app()) as url:
        async with client(url, world.tokens.manufacturer) as http:
            image_id = (await send(http, data)).json()["id"]
        await world.publish(image_id)
        async with client(url, world.tokens.supplier) as http:
            path = f"/api/v1/images/{image_id}/file"
            answers = {
                tag: (await http.get(path, headers={"If-None-Match": tag})).status_code
                for tag in [
                    f'"{digest}"',
                    f'W/"{digest}"',
                    "*",
                    f'"other", W/"{digest}"',
                    f'"a,b",  "{digest}"',
                    '"other"',
                    'W/"other"',
                    digest,  # unquoted: not an entity tag
                ]
            }
            receipts = (await http.get("/api/v1/downloads")).json()["downloads"]
    assert answers == {
        f'"{digest}"': 304,
        f'W/"{digest}"': 304,
        "*": 304,
        f'"other", W/"{digest}"': 304,
        f'"a,b",  "{digest}"': 304,
        '"other"': 200,
        'W/"other"': 200,
        digest: 200,
    }
    assert len(receipts) == 3  # only the answers that carried bytes


def multipart(
    parts: list[tuple[str, bytes]], boundary: str = "cfl-boundary-15", *, close: bool = True
) -> bytes:
    """A multipart/form-data body written by hand, so that it can be wrong in exactly one way."""
    body = b""
    for name, value in parts:
        filename = '; filename="image.zigbee"' if name == "file" else ""
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode()
        body += value + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


async def test_a_cut_short_multipart_body_or_a_repeated_field_is_refused_naming_the_problem(
    world: World,
) -> None:
    data = world.image(OWN_A1)
    notes = GOOD_NOTES.encode()
    whole = multipart([("file", data), ("releaseNotes", notes)])
    cases = {
        "no closing boundary": (
            multipart([("file", data), ("releaseNotes", notes)], close=False),
            "closing boundary",
        ),
        "cut inside the notes": (whole[: whole.index(notes) + 30], "closing boundary"),
        "cut inside the file": (whole[: whole.index(data) + 100], "closing boundary"),
        "cut inside the closing boundary": (whole[:-6], "closing boundary"),
        "release notes twice": (
            multipart(
                [
                    ("file", data),
                    ("releaseNotes", notes),
                    ("releaseNotes", b"## Other\n\n- Something else entirely."),
                ]
            ),
            "releaseNotes came more than once",
        ),
        "model id twice": (
            multipart([("file", data), ("modelId", b"0001"), ("modelId", b"0002"), ("releaseNotes", notes)]),
            "modelId came more than once",
        ),
        "hardware version twice, the same": (
            multipart([("file", data), ("hardwareVersion", b"0100"), ("hardwareVersion", b"0100")]),
            "hardwareVersion came more than once",
        ),
    }
    headers = {"Content-Type": "multipart/form-data; boundary=cfl-boundary-15"}
    async with serving(world.app()) as url, client(url, world.tokens.manufacturer) as http:
        answers = {
            name: await http.post("/api/v1/images", content=body, headers=headers)
            for name, (body, _) in cases.items()
        }
        with_epilogue = await http.post(
            "/api/v1/images", content=whole + b"an epilogue, which RFC 2046 allows", headers=headers
        )
    for name, (_, said) in cases.items():
        response = answers[name]
        assert response.status_code == 422, (name, response.text)
        [problem] = response.json()["problems"]
        assert problem["problem"] == "bad-field" and said in problem["detail"], (name, problem)
    assert await images_stored(world) == 1
    assert with_epilogue.status_code == 201, with_epilogue.text
    assert with_epilogue.json()["releaseNotes"]["markdown"] == GOOD_NOTES.strip()
    assert list(world.store.staging.folder.glob("*")) == []
