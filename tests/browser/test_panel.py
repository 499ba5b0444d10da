"""A Panel user, in Chromium: reads coverage as a chart drawn on the server and as a table that agree,
takes the spreadsheet export by its link, and reads the audit trail of what manufacturers did (R8, R12)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from cpl_sync.sync import sync_cpl
from tests.browser.conftest import LOOP, OpenTab, declare_commercial
from tests.fixtures.cpl_files import row, write_csv
from tests.fixtures.library import CPL, OTHER_C1, OWN_A1, OWN_A2, World

pytestmark = [LOOP, pytest.mark.timeout(60)]

# (id, name, certified, commercial, available, missing, coverage) per manufacturer, as the world makes it:
# 10B2 has five active versions, one declared commercial and one published; 2C4F one, published.
EXPECTED = [
    ("10B2", "Northfield Metering Ltd", 5, 1, 1, 3, "25%"),
    ("2C4F", "Harrow Instruments plc", 1, 0, 1, 0, "100%"),
]
EXPORTS = [
    "/reports/coverage.csv?groupBy=MANUFACTURER",
    "/reports/coverage.xlsx?groupBy=MANUFACTURER",
    "/reports/coverage.csv?groupBy=DEVICE_TYPE",
    "/reports/gaps.csv",
    "/reports/gaps.xlsx",
    "/reports/timeliness.csv?groupBy=MANUFACTURER",
]


async def test_the_panel_reads_coverage_as_chart_and_table_exports_it_and_reads_the_audit_trail(
    world: World, open_tab: OpenTab, tmp_path: Path
) -> None:
    own = await world.publish((await world.upload(world.image(OWN_A1))).id)
    other = await world.upload(world.image(OTHER_C1), token=world.tokens.other_manufacturer)
    await world.publish(other.id, token=world.tokens.other_manufacturer)
    await declare_commercial(world, OWN_A2)
    tab = await open_tab()
    page = tab.page
    await tab.sign_in(world.tokens.panel)

    await page.get_by_role("link", name="Coverage").click()
    await expect(page).to_have_url("/coverage")
    chart = page.get_by_role("img", name="Coverage by manufacturer")
    await expect(chart).to_be_visible()
    bars = chart.locator("g")
    await expect(bars).to_have_count(len(EXPECTED))
    for bar, (mid, name, certified, commercial, available, missing, percent) in zip(
        await bars.all(), EXPECTED, strict=True
    ):
        label = bar.locator("text.chart-label")
        assert await label.text_content() == f"{name} ({mid})"
        # Drawn whole: a label right-aligned to the bar must not run off the chart's left edge.
        assert await label.evaluate("text => text.getBBox().x") >= 0, await label.text_content()
        assert await bar.locator("text.chart-value").text_content() == percent
        assert await bar.locator("title").text_content() == (
            f"{name} ({mid}): {available} of {certified - commercial} available, "
            f"{missing} missing, {commercial} commercial"
        )
        track = float(await bar.locator("rect.chart-track").get_attribute("width") or "nan")
        filled = float(await bar.locator("rect.chart-bar").get_attribute("width") or "nan")
        assert filled / track == pytest.approx(available / (certified - commercial), abs=0.01)
    table = page.locator("table").first
    for line, (mid, name, *numbers) in zip(await table.locator("tbody tr").all(), EXPECTED, strict=True):
        cells = [cell.strip() for cell in await line.locator("td").all_inner_texts()]
        assert cells == [f"{name} {mid}", *(str(n) for n in numbers)]

    for href in EXPORTS:
        await expect(page.locator(f"a[href='{href}']")).to_have_count(1)
    async with page.expect_download() as started:
        await page.get_by_role("link", name="coverage by manufacturer (CSV)").click()
    download = await started.value
    assert download.url.endswith(EXPORTS[0])
    saved = tmp_path / "coverage.csv"
    await download.save_as(saved)
    text = saved.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == "Manufacturer id,Name,Certified,Commercial,Available,Missing,Coverage"
    rows = list(csv.reader(text.splitlines()[1:]))
    assert [r[:6] for r in rows] == [[mid, name, *map(str, n[:4])] for mid, name, *n in EXPECTED]

    await page.get_by_role("link", name="Audit trail").click()
    await expect(page).to_have_url("/audit")
    events = page.locator("tbody tr")
    for image in (own, other):
        for action in ("image.uploaded", "image.published"):
            event = events.filter(has=page.locator("code", has_text=re.compile(rf"^{re.escape(action)}$")))
            await expect(event.filter(has_text=f"image {image.id} ({image.dcc_file_name}")).to_have_count(1)


async def test_a_long_manufacturer_name_is_drawn_whole_in_the_coverage_chart(
    world: World, open_tab: OpenTab
) -> None:
    # 34 characters with its id, like several manufacturers of the demo CPL.
    name = "Tamarside Meter Systems plc"
    listed = [
        *(v.as_row() for v in CPL),
        row(manufacturer_id="1010", manufacturer_name=name, model_id="0003"),
    ]
    source = write_csv(world.tmp_path / "cpl-with-tamarside.csv", listed)
    result = await sync_cpl(world.db, str(source), work_dir=world.tmp_path / "sync-again")
    assert result.outcome.value == "applied", result
    tab = await open_tab()
    await tab.sign_in(world.tokens.panel)
    await tab.page.goto("/coverage")
    label = tab.page.get_by_role("img", name="Coverage by manufacturer").locator("text.chart-label")
    await expect(label.filter(has_text=name)).to_have_text(f"{name} (1010)")
    assert await label.filter(has_text=name).evaluate("text => text.getBBox().x") >= 0
