"""A dashboard on another origin, in Chromium (issue 21): a page served from a listed origin runs a
GraphQL query against the library on its own origin with a bearer token, reads a refusal's code, and
downloads an image's first bytes; a page of an origin not listed cannot read anything; and a page of the
listed origin cannot ride on a browser's session with the library (credentials: "include"), even in a
browser signed in to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Error, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from cfl_graph.identifiers import Sha256Hex
from tests.browser.conftest import LOOP, Tab, new_tab
from tests.fixtures.library import OWN_A1, World, serving

pytestmark = [LOOP, pytest.mark.timeout(60)]

QUERY = "{ cplSnapshot { rowCount deviceModelCount } }"
# What the dashboard's page runs: one fetch, reporting what it could read (or the error the browser gave).
FETCH = """async ({ url, init }) => {
  try {
    const response = await fetch(url, init);
    const type = response.headers.get('content-type') || '';
    const body = type.includes('json') ? await response.json() : Array.from(new Uint8Array(await response.arrayBuffer()));
    return { status: response.status, body, etag: response.headers.get('etag') };
  } catch (error) {
    return { failed: String(error) };
  }
}"""


def dashboard_app() -> Starlette:
    """A supplier's dashboard: one page, on an origin of its own (another port)."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(
            "<!doctype html><html lang='en'><link rel='icon' href='data:,'><title>Fleet dashboard</title><h1>Fleet</h1>"
        )

    return Starlette(routes=[Route("/", page)])


@pytest_asyncio.fixture(loop_scope="session")
async def origins() -> AsyncIterator[tuple[str, str]]:
    """A listed dashboard origin and another one, each serving a page."""
    async with serving(dashboard_app()) as listed, serving(dashboard_app()) as unlisted:
        yield listed, unlisted


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(browser: Browser) -> AsyncIterator[Callable[[str, list[str]], Awaitable[Tab]]]:
    """Opens a tab on an origin in a browser context of its own, its console errors kept in a list;
    every context is closed at the end."""
    tabs: list[Tab] = []

    async def open_one(origin: str, console: list[str]) -> Tab:
        tabs.append(await new_tab(browser, origin))
        page = tabs[-1].page
        page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
        await page.goto("/")
        return tabs[-1]

    try:
        yield open_one
    finally:
        for tab in tabs:
            with contextlib.suppress(Error):
                await tab.page.context.close()


async def run(page: Page, url: str, **init: Any) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(FETCH, {"url": url, "init": init})
    return found


async def test_a_dashboard_on_a_listed_origin_queries_and_downloads_with_a_bearer_token(
    world: World, open_page: Callable[[str, list[str]], Awaitable[Tab]], origins: tuple[str, str]
) -> None:
    published = await world.publish((await world.upload(world.image(OWN_A1))).id)
    listed, unlisted = origins
    bearer = {"Authorization": f"Bearer {world.tokens.supplier}", "Content-Type": "application/json"}
    async with serving(world.app(cors_origins=(listed,))) as library:
        console: list[str] = []
        page = (await open_page(listed, console)).page
        answered = await run(
            page, f"{library}/graphql", method="POST", headers=bearer, body=f'{{"query": "{QUERY}"}}'
        )
        by_get = await run(
            page, f"{library}/graphql?query={QUERY}", headers={"Authorization": bearer["Authorization"]}
        )
        refused = await run(
            page,
            f"{library}/graphql",
            method="POST",
            headers={"Content-Type": "application/json"},
            body='{"query": "{ __typename }"}',
        )
        first_bytes = await run(
            page,
            f"{library}/api/v1/images/{published.id}/file",
            headers={"Authorization": bearer["Authorization"], "Range": "bytes=0-63"},
        )
        # Nothing blocked: the one error Chromium logs is the refusal the page asked for.
        assert console == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]

        other_console: list[str] = []
        other = (await open_page(unlisted, other_console)).page
        blocked = await run(
            other, f"{library}/graphql", method="POST", headers=bearer, body=f'{{"query": "{QUERY}"}}'
        )

        # A browser signed in to the library (a session cookie) gives a listed origin's page nothing.
        signed_in = await open_page(library, [])
        await signed_in.sign_in(world.tokens.supplier, typed=False)
        context_page = await signed_in.page.context.new_page()
        await context_page.goto(listed)
        with_cookie = await run(
            context_page,
            f"{library}/graphql",
            method="POST",
            headers={"Content-Type": "application/json"},
            body=f'{{"query": "{QUERY}"}}',
            credentials="include",
        )
        cookie_by_get = await run(context_page, f"{library}/graphql?query={QUERY}", credentials="include")

    snapshot = {"cplSnapshot": {"rowCount": 7, "deviceModelCount": 4}}
    assert (answered["status"], answered["body"]) == (200, {"data": snapshot})
    assert (by_get["status"], by_get["body"]) == (200, {"data": snapshot}) and by_get["etag"]
    assert refused["status"] == 401
    assert refused["body"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert first_bytes["status"] == 206 and len(first_bytes["body"]) == 64
    stored = b"".join([chunk async for chunk in world.store.read(Sha256Hex(published.file_sha256), 0, 64)])
    assert bytes(first_bytes["body"]) == stored  # the image's first bytes, read by the page itself
    assert "failed" in blocked and "Failed to fetch" in blocked["failed"], blocked
    assert any("blocked by CORS policy" in line for line in other_console), other_console
    assert "failed" in with_cookie, with_cookie  # the preflight allows no credentials
    assert "failed" in cookie_by_get, cookie_by_get  # a simple GET is sent, and its answer withheld
