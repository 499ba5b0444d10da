"""Full-page screenshots of the main pages on the demo data, for the README:

    .venv/bin/python -m tests.browser.screenshots

Builds the demo CPL and library (`cfl_graph.demo.prepare_demo`) in a throwaway SQLite database, serves it
on loopback, signs in through the form as a supplier, a manufacturer and the Panel, and saves
docs/screenshots/<page>.png. Needs Debian's Chromium, as the browser tests do; bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Browser, async_playwright
from sqlalchemy import func, select

from cfl_graph import migrate
from cfl_graph.access.tokens import authenticate
from cfl_graph.blobs.local import LocalBlobStore
from cfl_graph.database import Database
from cfl_graph.demo import prepare_demo
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from cfl_graph.tables import CplSnapshot, ImageState, LibraryImage
from tests.browser.conftest import launch_chromium, new_tab
from tests.fixtures.library import serving

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
# Long pages (hundreds of findings or events) are cut here: the top says what the page is, and the
# README should not carry megabytes of table.
MAX_HEIGHT = 2000
TOTAL_SECONDS = 400  # the demo data takes about 50 s to build; each page well under a second
# A line of the demo tokens file: the role, the party's name, then the token on the next line.
TOKEN_LINE = re.compile(r"^(?P<role>\w+) +.+\n +(?P<token>cflg_\S+)$", re.MULTILINE)

log = logging.getLogger("screenshots")


PHONE = 390  # px, a phone's width


@dataclass(frozen=True)
class Shot:
    name: str
    role: str
    path: str
    width: int = VIEWPORT["width"]
    section: str | None = None  # a CSS selector: that part of the page, not the page's top
    status: int = 200


async def demo_shots(db: Database, tokens: dict[str, str]) -> list[Shot]:
    """The pages to show, chosen from the demo data: the manufacturer's first published image and its
    device model, and the change between the two CPL snapshots."""
    async with db.sessions() as session:
        manufacturer = await authenticate(session, tokens["manufacturer"])
        mid = sorted(manufacturer.manufacturer_ids)[0]
        image = (
            await session.execute(
                select(LibraryImage)
                .where(LibraryImage.manufacturer_id == mid, LibraryImage.state == ImageState.PUBLISHED.value)
                .order_by(LibraryImage.id)
                .limit(1)
            )
        ).scalar_one()
        first, last = (
            await session.execute(select(func.min(CplSnapshot.id), func.max(CplSnapshot.id)))
        ).one()
    model = f"/models/{image.manufacturer_id}/{image.model_id}/{image.hardware_version}"
    return [
        Shot("home", "supplier", "/"),
        Shot("models", "supplier", "/models"),
        Shot("model", "supplier", model),
        Shot("image", "manufacturer", f"/images/{image.id}"),
        Shot("coverage", "panel", "/coverage"),
        Shot("coverage-history", "panel", "/coverage", section="svg[aria-labelledby=history-title]"),
        Shot("timeliness", "panel", "/coverage", section="svg[aria-labelledby=timeliness-title]"),
        Shot("coverage-phone", "panel", "/coverage", width=PHONE),
        Shot("coverage-history-phone", "panel", "/coverage", PHONE, "svg[aria-labelledby=history-title]"),
        Shot("timeliness-phone", "panel", "/coverage", PHONE, "svg[aria-labelledby=timeliness-title]"),
        Shot("models-phone", "supplier", "/models", width=PHONE),
        Shot("model-phone", "supplier", model, width=PHONE),
        Shot("not-found", "supplier", "/no/such/page", status=404),
        Shot("consistency", "manufacturer", f"/manufacturers/{mid}/consistency"),
        Shot("cpl", "supplier", f"/cpl?from={first}&to={last}"),
        Shot("upload", "manufacturer", "/upload"),
        Shot("audit", "panel", "/audit"),
    ]


async def take(browser: Browser, base_url: str, tokens: dict[str, str], shots: list[Shot]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for role, width in dict.fromkeys((shot.role, shot.width) for shot in shots):
        tab = await new_tab(browser, base_url, viewport={**VIEWPORT, "width": width})
        try:
            await tab.sign_in(tokens[role])
            for shot in (s for s in shots if (s.role, s.width) == (role, width)):
                answer = await tab.page.goto(shot.path)
                if answer is None or answer.status != shot.status:
                    raise RuntimeError(f"{shot.path} answered {answer and answer.status}")
                if shot.section is not None:
                    await tab.page.locator(shot.section).screenshot(path=OUT / f"{shot.name}.png")
                    log.info(
                        "saved %s (%s of %s as %s)", OUT / f"{shot.name}.png", shot.section, shot.path, role
                    )
                    continue
                height = min(await tab.page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT)
                await tab.page.screenshot(
                    path=OUT / f"{shot.name}.png",
                    full_page=True,
                    clip={"x": 0, "y": 0, "width": width, "height": height},
                )
                log.info("saved %s (%s as %s)", OUT / f"{shot.name}.png", shot.path, role)
        finally:
            await tab.page.context.close()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cfl-screenshots-") as folder:
        root = Path(folder)
        db = Database.connect(f"sqlite+aiosqlite:///{root}/cfl.sqlite3")
        store = LocalBlobStore(root / "blobs")
        settings = Settings(database_url=db.url, work_dir=root / "work", blob_dir=root / "blobs")
        try:
            async with asyncio.timeout(TOTAL_SECONDS):
                await migrate.upgrade(db.engine)
                log.info("building the demo data")
                tokens_file = await prepare_demo(settings, db, store)
                tokens = {m["role"]: m["token"] for m in TOKEN_LINE.finditer(tokens_file.read_text())}
                shots = await demo_shots(db, tokens)
                app = create_app(settings, db=db, store=store)
                async with serving(app) as base_url, async_playwright() as playwright:
                    browser = await launch_chromium(playwright)
                    try:
                        await take(browser, base_url, tokens, shots)
                    finally:
                        await browser.close()
        finally:
            await store.close()
            await db.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    asyncio.run(main())
