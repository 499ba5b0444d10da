"""Hostile posts to the web forms and the upload endpoints, and hostile values in the search and
filter forms (issue 9): each refused with a clear answer, never a 5xx, and nothing changed (no record,
no blob, no staged file, no audit event beyond the session's own). At least 50 distinct cases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import AuditEvent, CommercialDeclaration, ImageState, LibraryImage
from tests.fixtures.library import GOOD_NOTES, OTHER_C1, OWN_A1, OWN_A2, World, make_world

pytestmark = pytest.mark.postgres

HUGE = "x" * 3_000_000


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def _counts(world: World) -> tuple[int, int, int, list[ImageState]]:
    async with world.db.sessions() as session:
        images = int(await session.scalar(select(func.count()).select_from(LibraryImage)) or 0)
        declared = int(await session.scalar(select(func.count()).select_from(CommercialDeclaration)) or 0)
        states = list((await session.execute(select(LibraryImage.state).order_by(LibraryImage.id))).scalars())
        events = int(
            await session.scalar(
                select(func.count()).select_from(AuditEvent).where(~AuditEvent.action.startswith("session."))
            )
            or 0
        )
    return images, declared, events, states


async def _form_token(http: httpx2.AsyncClient, path: str) -> str:
    """The CSRF token of the form on `path` (the sign-in form's, or the session's)."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', (await http.get(path)).text)
    assert found is not None, path
    return found.group(1)


async def test_hostile_form_posts_are_refused_cleanly_and_change_nothing(world: World) -> None:
    draft = await world.upload(world.image(OWN_A2))
    published = await world.upload(world.image(OWN_A1))
    await world.publish(published.id)
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        # Sign-in attempts first: each refused, none opens a session.
        for token in [
            "",
            " ",
            "cflg_",
            "' OR 1=1 --",
            "cflg_aaaaaaaaaaaa_" + "A" * 43,
            "😀" * 50,
            HUGE,
            "\x00",
        ]:
            answer = await http.post(
                "/login", data={"csrf_token": await _form_token(http, "/login"), "token": token, "next": "/"}
            )
            assert answer.status_code in (401, 403, 413), (token[:20], answer.status_code)
            assert "cfl_session" not in answer.cookies
        # A sign-in never redirects off the site, whatever `next` says.
        for next_path in ["//evil.example", "https://evil.example", "/\\evil", "javascript:alert(1)"]:
            answer = await http.post(
                "/login",
                data={
                    "csrf_token": await _form_token(http, "/login"),
                    "token": world.tokens.supplier,
                    "next": next_path,
                },
            )
            assert answer.status_code == 303 and answer.headers["location"] == "/", next_path
            await http.post("/logout", data={"csrf_token": await _form_token(http, "/")})
        # Now as the manufacturer.
        signed_in = await http.post(
            "/login",
            data={
                "csrf_token": await _form_token(http, "/login"),
                "token": world.tokens.manufacturer,
                "next": "/",
            },
        )
        assert signed_in.status_code == 303
        csrf = await _form_token(http, "/")
        before = await _counts(world)
        posts: list[tuple[str, dict[str, str], set[int]]] = [
            (f"/images/{published.id}/withdraw", {"reason": ""}, {422}),
            (f"/images/{published.id}/withdraw", {"reason": "short"}, {422}),
            (f"/images/{published.id}/withdraw", {"reason": "x" * 2001}, {422}),
            (f"/images/{published.id}/withdraw", {"reason": HUGE}, {413}),
            (f"/images/{published.id}/withdraw", {}, {422}),
            (f"/images/{published.id}/publish", {}, {409}),
            (f"/images/{published.id}/discard", {}, {409}),
            (f"/images/{published.id}/notes", {"markdown": GOOD_NOTES}, {409}),
            (f"/images/{draft.id}/notes", {"markdown": "# heading only"}, {422}),
            (f"/images/{draft.id}/notes", {"markdown": "x" * 20_001}, {422}),
            (f"/images/{draft.id}/notes", {"markdown": "- Fixed \x00 the display"}, {422}),
            (f"/images/{draft.id}/withdraw", {"reason": "a perfectly good reason"}, {409}),
            ("/images/99999/publish", {}, {404}),
            ("/images/abc/publish", {}, {404}),
            ("/images/-1/publish", {}, {404}),
            (
                "/models/10B2/0001/0100/declare",
                {"firmwareVersion": "zz", "reason": "a contract version"},
                {422},
            ),
            (
                "/models/10B2/0001/0100/declare",
                {"firmwareVersion": "01990000", "reason": "a contract version"},
                {422},
            ),
            ("/models/10B2/0001/0100/declare", {"firmwareVersion": "01000000", "reason": "x"}, {409, 422}),
            (
                "/models/2C4F/0007/0001/declare",
                {"firmwareVersion": "03000000", "reason": "not ours at all"},
                {403},
            ),
            (
                "/models/ZZZZ/0001/0100/declare",
                {"firmwareVersion": "01000000", "reason": "a contract version"},
                {422},
            ),
        ]
        for path, data, statuses in posts:
            answer = await http.post(path, data={"csrf_token": csrf, **data})
            assert answer.status_code < 500 and answer.status_code in statuses, (
                path,
                data.keys(),
                answer.status_code,
            )
        # The same forms without the session's CSRF token, or from another site.
        for path in [f"/images/{draft.id}/publish", f"/images/{published.id}/withdraw", "/logout"]:
            assert (await http.post(path, data={"reason": "a perfectly good reason"})).status_code == 403
            forged = await http.post(
                path,
                data={"csrf_token": csrf, "reason": "a perfectly good reason"},
                headers={"Origin": "https://evil.example"},
            )
            assert forged.status_code == 403
        # The upload form, with hostile bodies.
        uploads: list[tuple[dict[str, object], set[int]]] = [
            ({"data": {"releaseNotes": GOOD_NOTES}}, {422}),
            ({"files": {"file": ("x", b"", "application/octet-stream")}}, {422}),
            ({"files": {"file": ("x", b"not an image at all", "application/octet-stream")}}, {422}),
            (
                {
                    "files": {
                        "file": ("x", world.image(OWN_A1), "application/octet-stream"),
                        "other": ("y", b"1", "text/plain"),
                    }
                },
                {422},
            ),
            (
                {
                    "files": {"file": ("x", world.image(OWN_A1), "application/octet-stream")},
                    "data": {"modelId": "<script>"},
                },
                {422},
            ),
            (
                {
                    "content": b"--boundary\r\nnonsense",
                    "headers": {"Content-Type": "multipart/form-data; boundary=boundary"},
                },
                {422},
            ),
            ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, {422}),
            ({"content": b"x", "headers": {"Content-Type": "text/plain"}}, {422}),
        ]
        for request, statuses in uploads:
            answer = await http.post(f"/upload?csrf_token={csrf}", **request)  # type: ignore[arg-type]
            assert answer.status_code < 500 and answer.status_code in statuses, (
                request.keys(),
                answer.status_code,
            )
        # The GET forms (search and filters) with hostile values.
        searches = [
            "/models?search=%00",
            "/models?search=North%07field",
            "/models?search=" + "x" * 101,
            "/models?deviceType=TOASTER",
            "/models?manufacturerId=ZZZZZ",
            "/models?after=%00",
        ]
        for path in searches:
            answer = await http.get(path)
            assert answer.status_code == 422, (path[:40], answer.status_code)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as panel:
        panel.headers["Authorization"] = f"Bearer {world.tokens.panel}"
        audit_filters = ["/audit?action=%00", "/audit?actor=Northfield%00", "/audit?action=image.%07"]
        for path in audit_filters:
            answer = await panel.get(path)
            assert answer.status_code == 422 and "control character" in answer.text, (
                path,
                answer.status_code,
            )
    api_uploads = await _hostile_api_uploads(world, transport)
    cases = 8 + 4 + len(posts) + 3 * 2 + len(uploads) + len(searches) + len(audit_filters) + api_uploads
    assert cases >= 50, cases
    assert await _counts(world) == before
    assert [b async for b in world.store.list()] and list(world.store.staging.folder.glob("*")) == []


async def _hostile_api_uploads(world: World, transport: httpx2.ASGITransport) -> int:
    """Hostile uploads to `POST /api/v1/images` with a bearer token; returns how many were sent."""
    image = world.image(OWN_A1)
    notes = ("notes.md", GOOD_NOTES.encode(), "text/markdown")

    async def lying_body() -> AsyncIterator[bytes]:
        yield image[:100]

    raw = {"Content-Type": "application/octet-stream"}
    uploads: list[tuple[str, str, dict[str, Any], set[int]]] = [
        ("manufacturer", "?modelId=0001", {"content": image, "headers": raw}, {422}),
        ("manufacturer", "?modelId=ZZZZ&hardwareVersion=0100", {"content": image, "headers": raw}, {422}),
        ("manufacturer", "", {"content": b"", "headers": raw}, {422}),
        (
            "manufacturer",
            "",
            {"content": lying_body(), "headers": {**raw, "Content-Length": str(10**12)}},
            {413},
        ),
        (
            "manufacturer",
            "",
            {"files": [("file", ("a", image, "application/octet-stream")), ("file", ("b", image, "x/y"))]},
            {422},
        ),
        ("manufacturer", "", {"files": {"file": ("a", image, "x/y")}, "data": {"modelId": "0" * 65}}, {422}),
        (
            "manufacturer",
            "",
            {
                "files": {
                    "file": ("a", image, "x/y"),
                    "releaseNotes": ("n", b"- Fixed \x00 it at last", "text/plain"),
                }
            },
            {422},
        ),
        (
            "manufacturer",
            "",
            {
                "files": {
                    "file": ("a", image, "x/y"),
                    "releaseNotes": ("n", "- Réparé".encode("cp1252"), "text/plain"),
                }
            },
            {422},
        ),
        ("manufacturer", "", {"files": {"file": ("a", image, "x/y"), "notes": notes}}, {422}),
        ("manufacturer", "", {"files": {"file": ("a", world.image(OTHER_C1), "x/y")}}, {403}),
        ("supplier", "", {"files": {"file": ("a", image, "x/y")}}, {403}),
        ("read_only_manufacturer", "", {"files": {"file": ("a", image, "x/y")}}, {403}),
    ]
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as api:
        for who, query, request, statuses in uploads:
            headers = {"Authorization": f"Bearer {getattr(world.tokens, who)}", **request.pop("headers", {})}
            answer = await api.post(f"/api/v1/images{query}", headers=headers, **request)
            assert answer.status_code in statuses, (who, query, answer.status_code, answer.text[:200])
            assert answer.json().get("problems") or answer.status_code in (403, 413), answer.text[:200]
    return len(uploads)
