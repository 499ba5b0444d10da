"""What the pages show (issue 19), without a browser: model names beside hex ids, coverage over time and
timeliness as charts with a legend, an axis and their values in tables, the consistency findings by kind
and by page, and a styled page for an unknown path (the machine doors answer it in JSON)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cfl_graph.database import Database
from cfl_graph.doors.web.pages.reports import FINDINGS_PER_PAGE
from cfl_graph.keys import VersionKey
from cfl_graph.scheduler import sync_library
from cpl_sync.columns import Column
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import CPL, OWN_A1, OWN_A2, OWN_A3, World, make_world
from tests.web.test_pages import get

pytestmark = pytest.mark.postgres


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def _publish(world: World, *versions: object) -> list[int]:
    ids = []
    for version in versions:
        image = await world.upload(world.image(version))  # type: ignore[arg-type]
        await world.publish(image.id)
        ids.append(image.id)
    return ids


async def _model_name(world: World) -> str:
    page = (await get(world, "/models/10B2/0001/0100", world.tokens.supplier)).text
    found = re.search(r"<h1>(.*?)</h1>", page)
    assert found is not None
    return found[1]


async def test_model_names_stand_beside_the_hex_ids(world: World) -> None:
    [image_id] = await _publish(world, OWN_A1)
    name = await _model_name(world)
    home = (await get(world, "/", world.tokens.supplier)).text
    assert name in home and "10B2 · 0001 · hw 0100" in home
    image = (await get(world, f"/images/{image_id}", world.tokens.supplier)).text
    crumbs = re.search(r'<p class="crumbs">(.*?)</p>', image, re.S)
    assert crumbs is not None
    assert "Northfield Metering Ltd" in crumbs[1] and name in crumbs[1] and "0001 · hw 0100" in crumbs[1]
    model = (await get(world, "/models/10B2/0001/0100", world.tokens.supplier)).text
    crumbs = re.search(r'<p class="crumbs">(.*?)</p>', model, re.S)
    assert crumbs is not None and "Northfield Metering Ltd" in crumbs[1] and "0001 · hw 0100" in crumbs[1]
    consistency = (await get(world, "/manufacturers/10B2/consistency", world.tokens.manufacturer)).text
    assert name in consistency and "Northfield Metering Ltd" in consistency


async def test_the_coverage_page_draws_history_and_timeliness_with_legends_axes_and_tables(
    world: World, tmp_path: Path
) -> None:
    await _publish(world, OWN_A1)
    rows = [v.as_row() for v in CPL]
    result = await sync_library(
        world.db, str(write_csv(tmp_path / "next.csv", rows[:-1])), work_dir=tmp_path / "s"
    )
    assert result.outcome.value == "applied"
    page = (await get(world, "/coverage", world.tokens.panel)).text
    history = re.search(r'<svg class="chart"[^>]*aria-labelledby="history-title".*?</svg>', page, re.S)
    assert history is not None
    assert history[0].count("<polyline") == 1 + 1  # all versions, and each device type (the world's: ESME)
    for legend in ("All versions", "ESME"):
        assert f'class="chart-label">{legend}</text>' in history[0]
    assert ">0%</text>" in history[0] and ">100%</text>" in history[0]
    snapshots = re.findall(r'<tr data-snapshot="(\d+)">', page)
    assert snapshots == ["1", "2"]
    timely = re.search(r'<svg class="chart"[^>]*aria-labelledby="timeliness-title".*?</svg>', page, re.S)
    assert timely is not None
    for legend in ("median", "90th percentile", "worst"):
        assert f'class="chart-label">{legend}</text>' in timely[0]
    assert "days from listing to publication" in timely[0] and 'class="chart-late"' in timely[0]
    assert "<caption>Timeliness by manufacturer</caption>" in page
    assert re.search(
        r'<tr data-group="10B2"><td>Northfield Metering Ltd <span class="id">10B2</span></td>'
        r'<td class="num">1</td>',
        page,
    )


async def test_consistency_findings_filter_by_kind_and_page(world: World, tmp_path: Path) -> None:
    await _publish(world, OWN_A1, OWN_A2, OWN_A3)
    changed = [v.as_row() for v in CPL if v not in (OWN_A2, OWN_A3)]
    changed.append(OWN_A2.as_row() | {Column.STATUS: "Withdrawn"})
    await sync_library(world.db, str(write_csv(tmp_path / "next.csv", changed)), work_dir=tmp_path / "s")
    everything = (await get(world, "/manufacturers/10B2/consistency", world.tokens.manufacturer)).text
    kinds = re.findall(r'<tr data-kind="(\w+)">', everything)
    assert {"MISSING_IMAGE", "DELISTED_FROM_CPL", "NOT_ON_CPL", "LATE_PUBLICATION"} <= set(kinds)
    assert f'data-total="{len(kinds)}"' in everything
    late = await get(
        world, "/manufacturers/10B2/consistency?kind=late_publication", world.tokens.manufacturer
    )
    assert set(re.findall(r'<tr data-kind="(\w+)">', late.text)) == {"LATE_PUBLICATION"}
    assert '<strong aria-current="page"><code>LATE_PUBLICATION</code></strong>' in late.text
    assert len(kinds) < FINDINGS_PER_PAGE and 'rel="next"' not in everything
    bad = await get(world, "/manufacturers/10B2/consistency?kind=LATE", world.tokens.manufacturer)
    assert bad.status_code == 400
    assert "kind must be one of MISSING_IMAGE, HASH_MISMATCH" in bad.text and "&#39;LATE&#39;" in bad.text
    cursor = await get(world, "/manufacturers/10B2/consistency?after=abc", world.tokens.manufacturer)
    assert cursor.status_code == 400 and "not a cursor of this list" in cursor.text


async def test_an_unknown_path_is_a_styled_page_and_json_on_the_machine_doors(world: World) -> None:
    page = await get(world, "/no/such/page", world.tokens.supplier)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in page.text and "/static/site.css" in page.text
    assert "<code>/no/such/page</code>" in page.text and 'href="/models"' in page.text
    api = await get(world, "/api/v1/nothing", world.tokens.supplier)
    assert api.status_code == 404 and api.json()["code"] == "NOT_FOUND"
    # A page that is there but names nothing keeps its own reason.
    model = await get(world, "/models/10B2/9999/0100", world.tokens.supplier)
    assert model.status_code == 404 and "Page not found" not in model.text


async def test_the_web_search_finds_what_the_graph_finds_across_both_names(world: World) -> None:
    query = """query($s: String!) { deviceModels(first: 50, filter: {search: $s}) { edges { node {
        manufacturerId modelId hardwareVersion } } } }"""
    for text in ("Northfield Model 0002", "northfield model", "harrow 0007"):
        graph = await world_graph(world, query, s=text)
        keys = [
            (n["node"]["manufacturerId"], n["node"]["modelId"], n["node"]["hardwareVersion"]) for n in graph
        ]
        assert keys, text
        page = (await get(world, f"/models?search={text.replace(' ', '+')}", world.tokens.supplier)).text
        shown = re.findall(r'href="/models/(\w{4})/(\w{4})/(\w{4})"', page)
        assert shown == keys, text
    words = "+".join(f"w{n}" for n in range(9))
    refused = await get(world, f"/models?search={words}", world.tokens.supplier)
    assert "search takes at most 8 words, not 9" in refused.text


async def world_graph(world: World, query: str, **variables: str) -> list[dict[str, dict[str, str]]]:
    from tests.graph.test_catalogue import ask, data

    edges: list[dict[str, dict[str, str]]] = data(await ask(world, query, **variables))["deviceModels"][
        "edges"
    ]
    return edges


async def test_the_model_page_plans_an_upgrade_from_the_version_a_device_has(world: World) -> None:
    ids = await _publish(world, OWN_A1, OWN_A2)
    principal = await world.principal(world.tokens.manufacturer)
    key = VersionKey(
        OWN_A1.manufacturer_id, OWN_A1.model_id, OWN_A1.hardware_version, OWN_A1.firmware_version
    )
    await world.library.record_upgrade_pathway(
        principal, key, OWN_A1.firmware_version, OWN_A2.firmware_version
    )
    page = await get(world, "/models/10B2/0001/0100?from=01000000", world.tokens.supplier)
    assert page.status_code == 200
    steps = re.findall(r'<li data-to="(\w+)">.*?href="/images/(\d+)"', page.text, re.S)
    assert steps == [("01010000", str(ids[1]))]
    none = await get(world, "/models/10B2/0001/0100?from=01010000", world.tokens.supplier)
    assert 'data-blocked="UP_TO_DATE"' in none.text
    bad = await get(world, "/models/10B2/0001/0100?from=banana", world.tokens.supplier)
    assert bad.status_code == 400 and "from: " in bad.text
