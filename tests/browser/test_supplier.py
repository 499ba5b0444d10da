"""A supplier, in Chromium: finds a device model from the home page, reads which versions it can have and
which are commercial, downloads a published image by clicking, and signs out (R2, R3, R5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Locator, expect

from cfl_graph.images.library import download_name
from tests.browser.conftest import COMMERCIAL_REASON, LOOP, OpenTab, declare_commercial, sha256_of
from tests.fixtures.library import OWN_A1, OWN_A2, OWN_A3, Version, World

pytestmark = [LOOP, pytest.mark.timeout(60)]


async def test_a_supplier_finds_a_model_sees_its_versions_downloads_and_signs_out(
    world: World, open_tab: OpenTab, tmp_path: Path
) -> None:
    published = await world.publish((await world.upload(world.image(OWN_A1))).id)
    await declare_commercial(world, OWN_A2)
    tab = await open_tab()
    page = tab.page
    await tab.sign_in(world.tokens.supplier)

    await page.get_by_role("searchbox", name="Find a device model").press_sequentially("Model 0001")
    await page.get_by_role("button", name="Search").click()
    await expect(page).to_have_url(re.compile(r"/models\?search=Model\+0001$"))
    await expect(page.get_by_text("1 device model.")).to_be_visible()
    await page.get_by_role("link", name="Model 0001").click()
    await expect(page).to_have_url("/models/10B2/0001/0100")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Model 0001")

    def row_of(version: Version) -> Locator:
        return page.locator(f"tr[data-version='{version.firmware_version}']")

    commercial = row_of(OWN_A2)
    await expect(commercial.locator(".badge")).to_have_text("Commercial")
    await expect(commercial.locator(".badge")).to_have_class(re.compile(r"\bbadge-commercial\b"))
    await expect(commercial).to_contain_text(COMMERCIAL_REASON)
    gap = row_of(OWN_A3)
    await expect(gap.locator(".badge")).to_have_text("Missing")
    await expect(gap.locator(".badge")).to_have_class(re.compile(r"\bbadge-missing\b"))
    await expect(gap).to_contain_text("Coverage gap")
    available = row_of(OWN_A1)
    await expect(available.locator(".badge")).to_have_class(re.compile(r"\bbadge-available\b"))
    await expect(available.get_by_role("link", name="Download")).to_have_count(1)
    # Neither the commercial version nor the gap has anything to download.
    await expect(page.get_by_role("link", name="Download")).to_have_count(1)

    shown = await available.locator(".hash[title^='SHA-256 of the whole file']").inner_text()
    shown_sha256 = shown.removeprefix("file ").strip()
    assert shown_sha256 == published.file_sha256
    async with page.expect_download() as started:
        await available.get_by_role("link", name="Download").click()
    download = await started.value
    saved = tmp_path / "downloaded.zigbee"
    await download.save_as(saved)
    assert sha256_of(saved) == shown_sha256
    assert download.suggested_filename == download_name(published)
    assert re.fullmatch(rf"10B2-[0-9A-F]{{4}}-01000000-{shown_sha256}\.zigbee", download.suggested_filename)

    await tab.sign_out()
    await page.goto("/")
    await expect(page).to_have_url("/login?next=%2F")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
