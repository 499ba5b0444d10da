"""The pages at a phone's width (390 px) and a laptop's (1366 px), in Chromium: no text runs off the
screen or out of its box, the charts' legends and axes are drawn, names stand beside hex ids, and an
unknown path is a page of the site (issue 19)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from playwright.async_api import Browser, Error, Page, expect

from cfl_graph.scheduler import sync_library
from cpl_sync.columns import Column
from tests.browser.conftest import LOOP, new_tab
from tests.fixtures.cpl_files import row, write_csv
from tests.fixtures.library import CPL, OWN_A1, OWN_A2, OWN_A3, World

pytestmark = [LOOP, pytest.mark.timeout(90)]

# Every element whose own text is wider than its box, or that reaches past the page's right edge; and every
# SVG text that leaves its chart's viewBox.
OVERFLOWS = """() => {
  const found = [];
  const width = document.documentElement.clientWidth;
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') || el.closest('.scroll')) continue;
    const hasText = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!hasText) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (box.right > width + 1) found.push(`${el.tagName} "${el.textContent.trim().slice(0, 40)}" ends at ${box.right}`);
    const style = getComputedStyle(el);
    if (style.overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1)
      found.push(`${el.tagName} "${el.textContent.trim().slice(0, 40)}" is cut`);
  }
  for (const svg of document.querySelectorAll('svg.chart')) {
    const [, , w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
    for (const text of svg.querySelectorAll('text')) {
      const b = text.getBBox();
      if (b.x < -0.5 || b.x + b.width > w + 0.5 || b.y < -0.5 || b.y + b.height > h + 0.5)
        found.push(`chart text "${text.textContent}" leaves its chart (${b.x}, ${b.width})`);
    }
    if (svg.getBoundingClientRect().right > width + 1) found.push('a chart runs off the page');
  }
  if (document.documentElement.scrollWidth > width + 1) found.push(`the page is ${document.documentElement.scrollWidth} px wide`);
  return found;
}"""


async def _story(world: World, tmp_path: Path) -> None:
    """Published images, a second snapshot that delists one and drops another, a long manufacturer name."""
    for version in (OWN_A1, OWN_A2, OWN_A3):
        await world.publish((await world.upload(world.image(version))).id)
    rows = [v.as_row() for v in CPL if v not in (OWN_A2, OWN_A3)]
    rows.append(OWN_A2.as_row() | {Column.STATUS: "Withdrawn"})
    rows.append(
        row(manufacturer_id="1010", manufacturer_name="Ullesthorpe Energy Devices Ltd", model_id="0003")
    )
    result = await sync_library(
        world.db, str(write_csv(tmp_path / "next.csv", rows)), work_dir=tmp_path / "s"
    )
    assert result.outcome.value == "applied", result


async def _sign_in(page: Page, token: str) -> None:
    await page.goto("/login")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def _fits(page: Page, path: str) -> None:
    problems = await page.evaluate(OVERFLOWS)
    assert not problems, f"{path} at {page.viewport_size}: {problems}"


@pytest.mark.parametrize("width", [390, 1366])
async def test_every_page_fits_the_screen_and_its_charts_carry_legends(
    world: World, site: str, browser: Browser, tmp_path: Path, width: int
) -> None:
    await _story(world, tmp_path)
    panel = await new_tab(browser, site, viewport={"width": width, "height": 900})
    maker = await new_tab(browser, site, viewport={"width": width, "height": 900})
    maker.expected_statuses.add(404)
    try:
        await _sign_in(panel.page, world.tokens.panel)
        await panel.page.goto("/coverage")
        history = panel.page.get_by_role(
            "img", name="Coverage per CPL snapshot, all versions and by device type"
        )
        await expect(history.locator(".legend text")).to_have_text(["All versions", "ESME"])
        timely = panel.page.get_by_role("img", name="Days from CPL listing to publication by manufacturer")
        await expect(timely.locator(".legend text")).to_have_text(["median", "90th percentile", "worst"])
        await expect(timely.locator("text.chart-axis").last).to_contain_text(
            "days from listing to publication"
        )
        await expect(panel.page.get_by_role("table", name="Timeliness by manufacturer")).to_be_visible()
        await expect(
            panel.page.get_by_role("table", name="Coverage per snapshot").locator("tbody tr")
        ).to_have_count(2)
        await _fits(panel.page, "/coverage")

        page = maker.page
        await _sign_in(page, world.tokens.manufacturer)
        model_name = await page.goto("/models/10B2/0001/0100") and await page.locator("h1").text_content()
        assert model_name
        for path in (
            "/",
            "/models",
            "/models/10B2/0001/0100",
            "/manufacturers/10B2/consistency",
            "/images/1",
        ):
            await page.goto(path)
            await _fits(page, path)
        await page.goto("/")
        await expect(page.locator("tbody tr").first).to_contain_text(model_name)
        await page.goto("/manufacturers/10B2/consistency")
        await page.get_by_role("link", name="LATE_PUBLICATION").click()
        await expect(page.locator("tbody tr[data-kind]")).to_have_count(
            await page.locator("tbody tr[data-kind=LATE_PUBLICATION]").count()
        )
        await page.goto("/no/such/page")
        await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()  # the site's own page
        await _fits(page, "/no/such/page")
    finally:
        for tab in (panel, maker):
            with contextlib.suppress(Error):
                await tab.page.context.close()
    panel.assert_clean()
    maker.assert_clean()
