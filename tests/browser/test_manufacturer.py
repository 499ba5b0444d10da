"""A manufacturer, in Chromium: a bad file is refused with its named problem and nothing kept; a good
signed image becomes a draft with no problems, is published with one click, and closes its coverage gap
(R5, R7, R8)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from playwright.async_api import expect
from sqlalchemy import func, select

from cfl_graph.tables import LibraryImage
from tests.browser.conftest import LOOP, OpenTab
from tests.fixtures.library import OWN_A3, World

pytestmark = [LOOP, pytest.mark.timeout(60)]

NOTES = "## Changes\n\n- Fixed the tariff switch at midnight on the last day of the month."


async def images_kept(world: World) -> int:
    async with world.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LibraryImage)) or 0)


def blobs_kept(world: World) -> list[Path]:
    return [path for path in (world.tmp_path / "blobs").rglob("*") if path.is_file()]


async def test_a_manufacturer_uploads_a_refused_file_then_publishes_a_good_one(
    world: World, open_tab: OpenTab, tmp_path: Path
) -> None:
    bad = tmp_path / "random.bin"
    bad.write_bytes(random.Random(7).randbytes(4096))
    good = tmp_path / "10B2-0001-01020000.ota"
    good.write_bytes(world.image(OWN_A3))
    tab = await open_tab()
    page = tab.page
    await tab.sign_in(world.tokens.manufacturer)

    await page.get_by_role("link", name="Upload").click()
    await expect(page).to_have_url("/upload")
    await page.get_by_label("Image file").set_input_files(bad)
    tab.expected_statuses.add(422)  # the refused upload's form, shown again with its problems
    await page.get_by_role("button", name="Upload").click()
    refusal = page.get_by_role("alert")
    await expect(refusal).to_contain_text("bad-magic")
    await expect(refusal).to_contain_text("Nothing was kept.")
    assert await images_kept(world) == 0
    assert blobs_kept(world) == []

    await page.get_by_label("Image file").set_input_files(good)
    await page.get_by_label("Release notes (Markdown)").press_sequentially(NOTES)
    await page.get_by_role("button", name="Upload").click()
    await expect(page).to_have_url(re.compile(r"/images/\d+$"))
    await expect(page.get_by_text("None: this draft can be published.")).to_be_visible()
    await expect(page.locator(".notes li")).to_have_text(
        "Fixed the tariff switch at midnight on the last day of the month."
    )
    await expect(page.locator("h1 .badge")).to_have_text("Draft")

    await page.get_by_role("button", name="Publish").click()
    await expect(page).to_have_url(re.compile(r"/images/\d+\?done=published$"))
    await expect(page.get_by_role("status")).to_contain_text("Published")
    badge = page.locator("h1 .badge")
    await expect(badge).to_have_text("Published")
    await expect(badge).to_have_class(re.compile(r"\bbadge-published\b"))

    # The breadcrumbs name the model beside its ids.
    await expect(page.locator(".crumbs")).to_contain_text(
        "Northfield Metering Ltd 10B2 › Model 0001 10B2 · 0001 · hw 0100"
    )
    await page.locator(".crumbs").get_by_role("link", name="Model 0001").click()
    await expect(page).to_have_url("/models/10B2/0001/0100")
    closed = page.locator(f"tr[data-version='{OWN_A3.firmware_version}'] .badge")
    await expect(closed).to_have_text("Available")
    await expect(closed).to_have_class(re.compile(r"\bbadge-available\b"))
    assert await images_kept(world) == 1
