"""Debian's Chromium, driven by Playwright, against the app served by uvicorn on loopback: what every
browser test shares.

Each test gets a fresh SQLite library (`world`) and the app serving it (`site`); one Chromium (`browser`)
serves the whole run, so every test runs in the session's event loop (`LOOP`). `open_tab` opens a tab in
a context of its own (its own cookies) and watches every page it shows: a console error or an HTML page
without its Content-Security-Policy fails the test at its end, so no test has to remember to look.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Response,
    async_playwright,
    expect,
)

from cfl_graph import migrate
from cfl_graph.database import Database
from cfl_graph.keys import VersionKey
from tests.fixtures import provision
from tests.fixtures.library import Version, World, make_world, serving

# No network but loopback, no sandbox (CI runs as root in a container), nothing the browser does on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 15_000
LAUNCH_TIMEOUT_MS = 15_000
AXE_SCRIPT = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"

expect.set_options(timeout=ACTION_TIMEOUT_MS)
# Every browser test module sets `pytestmark = [LOOP, ...]`: the session's Chromium lives in that loop.
LOOP = pytest.mark.asyncio(loop_scope="session")


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, never a browser Playwright downloads (the machines reach no such host); the
    suite installs it if it is missing, and axe-core's npm package too."""
    executable = provision.chromium()
    provision.npm_packages(AXE_SCRIPT.parent.parent.parent)
    return await playwright.chromium.launch(
        executable_path=str(executable), headless=True, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


COMMERCIAL_REASON = "Built for one supplier's prepayment trial"


async def declare_commercial(world: World, version: Version) -> None:
    """`version` declared commercial by its manufacturer, through the service."""
    await world.library.declare_commercial(
        await world.principal(world.tokens.manufacturer),
        VersionKey(
            version.manufacturer_id, version.model_id, version.hardware_version, version.firmware_version
        ),
        COMMERCIAL_REASON,
    )


# How Chromium reports a page or resource answered with an error status; for a page, `error_pages` has it.
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


@dataclass
class Tab:
    """One person's browser tab, with what it saw that no page should show.

    A page answered with an error status (a refused upload is re-rendered with 422) is fine only if the
    test expects that status (`expected_statuses`); Chromium's console line about it is not counted twice.
    """

    page: Page
    expected_statuses: set[int] = field(default_factory=set)
    console_errors: list[tuple[str, str]] = field(default_factory=list)
    error_pages: dict[str, int] = field(default_factory=dict)
    pages_without_csp: list[str] = field(default_factory=list)
    html_pages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.console_errors.append((f"uncaught: {error}", "")))
        self.page.on("response", self._on_response)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    def _on_response(self, response: Response) -> None:
        if response.frame != self.page.main_frame or response.request.resource_type != "document":
            return
        if not response.headers.get("content-type", "").startswith("text/html"):
            return
        self.html_pages.append(response.url)
        if response.status >= 400:
            self.error_pages[response.url] = response.status
        if "content-security-policy" not in response.headers:
            self.pages_without_csp.append(response.url)

    async def sign_in(self, token: str, *, typed: bool = True) -> None:
        """As a person does: open the site, get sent to sign in, type the token, press the button.

        Typing takes a second; `typed=False` pastes it, for tests about something else.
        """
        await self.page.goto("/")
        await expect(self.page).to_have_url("/login?next=%2F")
        field = self.page.get_by_label("API token")
        await (field.press_sequentially(token) if typed else field.fill(token))
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page).to_have_url("/")
        await expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    async def sign_out(self) -> None:
        await self.page.get_by_role("button", name="Sign out").click()
        await expect(self.page).to_have_url("/login")

    def assert_clean(self) -> None:
        assert self.html_pages, "the tab showed no page"
        console = [
            f"{text} (at {url})"
            for text, url in self.console_errors
            if not ((failed := FAILED_LOAD.match(text)) and self.error_pages.get(url) == int(failed[1]))
        ]
        assert not console, f"console errors: {console}"
        unexpected = {url: s for url, s in self.error_pages.items() if s not in self.expected_statuses}
        assert not unexpected, f"pages answered with an error status: {unexpected}"
        assert not self.pages_without_csp, (
            f"pages without a Content-Security-Policy: {self.pages_without_csp}"
        )


OpenTab = Callable[..., Awaitable[Tab]]


@pytest_asyncio.fixture(loop_scope="session")
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only: these tests prove the pages in a browser; both databases are proved under tests/."""
    database = Database.connect(f"sqlite+aiosqlite:///{tmp_path}/cfl.sqlite3")
    await migrate.upgrade(database.engine)
    try:
        yield database
    finally:
        await database.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


@pytest_asyncio.fixture(loop_scope="session")
async def site(world: World) -> AsyncIterator[str]:
    async with serving(world.app()) as base_url:
        yield base_url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the whole run (starting Playwright and Chromium takes a second); every test
    works in contexts of its own."""
    async with async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_tab(browser: Browser, base_url: str, *, bypass_csp: bool = False, **options: Any) -> Tab:
    """A tab on the site in a browser context of its own (its own cookies), every wait bounded."""
    context = await browser.new_context(
        base_url=base_url, accept_downloads=True, bypass_csp=bypass_csp, **options
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    return Tab(await context.new_page())


@pytest_asyncio.fixture(loop_scope="session")
async def open_tab(browser: Browser, site: str) -> AsyncIterator[OpenTab]:
    """Opens tabs on the site; at the end, every tab must have stayed clean."""
    tabs: list[Tab] = []

    async def open_one(*, bypass_csp: bool = False) -> Tab:
        tabs.append(await new_tab(browser, site, bypass_csp=bypass_csp))
        return tabs[-1]

    try:
        yield open_one
    finally:
        for tab in tabs:
            # A context the browser already lost needs no closing; the test's own outcome says more.
            with contextlib.suppress(Error):
                await tab.page.context.close()
    for tab in tabs:
        tab.assert_clean()
