"""The web pages without a browser (R5, R8): who sees which page, forms that need their CSRF token, and a
fixed number of SQL statements per page whatever the data size. The browser tests (tests/browser/)
click through the same pages in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from cfl_graph.database import Database
from cfl_graph.tables import LibraryImage
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import row, write_csv
from tests.fixtures.library import GOOD_NOTES, OWN_A1, OWN_A2, World, make_world
from tests.fixtures.sql import counting

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def get(world: World, path: str, token: str | None) -> httpx2.Response:
    headers = {"Accept": "text/html"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path, headers=headers)


async def test_anonymous_visitors_are_sent_to_sign_in(world: World) -> None:
    for path in ["/", "/models", "/models/10B2/0001/0100", "/coverage", "/upload", "/audit"]:
        answer = await get(world, path, None)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next="), path


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/audit", "supplier", 403),
        ("/audit", "manufacturer", 403),
        ("/audit", "panel", 200),
        ("/upload", "supplier", 403),
        ("/upload", "manufacturer", 200),
        ("/manufacturers/10B2/consistency", "manufacturer", 200),
        ("/manufacturers/2C4F/consistency", "manufacturer", 403),
        ("/manufacturers/2C4F/consistency", "supplier", 403),
        ("/manufacturers/2C4F/consistency", "panel", 200),
        ("/models/10B2/9999/0100", "supplier", 404),
        ("/models/not/hex/ids", "supplier", 404),
        ("/images/abc", "supplier", 404),
    ],
)
async def test_each_page_is_for_whom_the_policy_says(
    world: World, path: str, token: str, status: int
) -> None:
    assert (await get(world, path, getattr(world.tokens, token))).status_code == status


async def test_a_draft_page_is_its_manufacturers_only(world: World) -> None:
    draft = await world.upload(world.image(OWN_A2))
    assert (await get(world, f"/images/{draft.id}", world.tokens.manufacturer)).status_code == 200
    assert (await get(world, f"/images/{draft.id}", world.tokens.supplier)).status_code == 404
    assert (await get(world, f"/images/{draft.id}", world.tokens.other_manufacturer)).status_code == 404


async def test_the_device_model_page_shows_each_version_beside_the_library(world: World) -> None:
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    html = (await get(world, "/models/10B2/0001/0100", world.tokens.supplier)).text
    states = {
        version: state for state, version in re.findall(r'class="state-([a-z-]+)" data-version="(\w+)"', html)
    }
    assert states == {
        "01020000": "missing",
        "01010000": "missing",
        "01000000": "available",
        "00900000": "not-active",
    }
    assert f'href="/api/v1/images/{image.id}/file"' in html
    assert image.file_sha256 in html and image.manufacturer_image_sha256 in html


async def test_page_forms_need_the_sessions_csrf_token(world: World, tmp_path: Path) -> None:
    draft = await world.upload(world.image(OWN_A1))
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        login = await http.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert csrf is not None
        signed_in = await http.post(
            "/login", data={"csrf_token": csrf.group(1), "token": world.tokens.manufacturer, "next": "/"}
        )
        assert signed_in.status_code == 303
        forged = await http.post(f"/images/{draft.id}/publish", data={})
        assert forged.status_code == 403
        page = await http.get(f"/images/{draft.id}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        published = await http.post(f"/images/{draft.id}/publish", data={"csrf_token": token.group(1)})
        assert (published.status_code, published.headers["location"]) == (
            303,
            f"/images/{draft.id}?done=published",
        )


async def _signed_in(http: httpx2.AsyncClient, token: str) -> str:
    """Sign in on the page as a person does; returns the session's CSRF token."""
    login = await http.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert csrf is not None
    signed_in = await http.post("/login", data={"csrf_token": csrf.group(1), "token": token, "next": "/"})
    assert signed_in.status_code == 303
    page = await http.get("/")
    session_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert session_token is not None
    return session_token.group(1)


@pytest.mark.parametrize("verb", ["withdraw", "publish", "approve", "recheck", "notes", "discard"])
async def test_a_refused_action_shows_no_form_the_refused_may_not_use(world: World, verb: str) -> None:
    """Another manufacturer's post to an image it may see but not act on: refused, and the page it gets
    back offers none of the owner's forms (issue 15)."""
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        csrf = await _signed_in(http, world.tokens.other_manufacturer)
        refused = await http.post(
            f"/images/{image.id}/{verb}", data={"csrf_token": csrf, "reason": "not ours to withdraw at all"}
        )
    assert refused.status_code in (403, 409), refused.text[:300]
    assert re.findall(rf'<form[^>]+action="/images/{image.id}/', refused.text) == []
    async with world.db.sessions() as session:
        assert (await session.get_one(LibraryImage, image.id)).state == "published"


PAGES = [
    "/",
    "/models",
    "/models?search=model&gap=yes",
    "/models/10B2/0001/0100",
    "/manufacturers/10B2",
    "/coverage",
    "/cpl",
]


async def test_pages_issue_a_fixed_number_of_statements_whatever_the_data(
    world: World, tmp_path: Path
) -> None:
    async def statements_per_page() -> dict[str, int]:
        found = {}
        for path in PAGES:
            with counting(world.db) as statements:
                answer = await get(world, path, world.tokens.supplier)
            assert answer.status_code == 200, path
            found[path] = len(statements)
        return found

    small = await statements_per_page()
    # Ten times the device models, each with more versions, and an image.
    many = [
        row(
            model_id=f"{m:04X}",
            model_name=f"Model {m}",
            firmware_version=f"{v + 1:02X}000000",
            image_hash=f"{m * 10 + v:064x}",
        )
        for m in range(1, 61)
        for v in range(3)
    ]
    many.append(OWN_A1.as_row())
    await sync_cpl(world.db, str(write_csv(tmp_path / "many.csv", many)), work_dir=tmp_path / "sync2")
    image = await world.upload(world.image(OWN_A1))
    await world.publish(image.id)
    large = await statements_per_page()
    assert small == large, (small, large)
    assert max(large.values()) <= 12, large


async def test_the_upload_form_takes_images_larger_than_the_general_request_limit(
    world: World, tmp_path: Path
) -> None:
    data = world.image(OWN_A1, manufacturer_image=b"\x5a" * (3 * 1024 * 1024))  # 3 MiB, over 1 MiB
    transport = httpx2.ASGITransport(app=world.app(max_request_bytes=1024 * 1024))
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        login = await http.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert csrf is not None
        await http.post(
            "/login", data={"csrf_token": csrf.group(1), "token": world.tokens.manufacturer, "next": "/"}
        )
        form = await http.get("/upload")
        token = re.search(r'action="/upload\?csrf_token=([^"]+)"', form.text)
        assert token is not None
        answer = await http.post(
            f"/upload?csrf_token={token.group(1)}",
            files={"file": ("big.zigbee", data, "application/octet-stream")},
            data={"releaseNotes": GOOD_NOTES},
        )
        too_big = await http.post("/graphql", content=b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert answer.status_code == 303, answer.text[:500]
    assert answer.headers["location"].startswith("/images/")
    assert too_big.status_code == 413  # every other door keeps the general limit
