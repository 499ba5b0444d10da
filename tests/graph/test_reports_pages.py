"""The Panel's history and a manufacturer's findings in pages (issue 19): `coverageHistory` per
snapshot, and `consistencyReport(kinds:, first:, after:)` whose findings carry their `LibraryImage`; both
in a number of SQL statements that does not grow with the data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cfl_graph.catalogue import reports
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.database import Database
from cfl_graph.keys import VersionKey
from cfl_graph.scheduler import sync_library
from cfl_graph.tables import LibraryImage
from cpl_sync.columns import Column
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import CPL, OTHER_C1, OWN_A1, OWN_A2, OWN_A3, World, make_world
from tests.fixtures.sql import counting
from tests.graph.test_catalogue import ask, data, publish

pytestmark = pytest.mark.postgres

HISTORY = """query($last: Int!) { coverageHistory(groupBy: MANUFACTURER, last: $last) {
  snapshotId currentFrom currentUntil total { certified commercial available missing coverage }
  groups { key certified available missing } } }"""

REPORT = """query($m: String!, $kinds: [FindingKind!], $first: Int, $after: String) {
  consistencyReport(manufacturerId: $m, kinds: $kinds, first: $first, after: $after) {
    totalCount counts { kind count } pageInfo { hasNextPage endCursor }
    findings { kind firmwareVersion cursor libraryImageId libraryImage { imageId state firmwareVersion } }
  } }"""


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def _next_cpl(world: World, tmp_path: Path, name: str, rows: list[dict[Column, Any]]) -> None:
    result = await sync_library(
        world.db, str(write_csv(tmp_path / f"{name}.csv", rows)), work_dir=tmp_path / name
    )
    assert result.outcome.value == "applied", result


async def test_coverage_history_judges_each_snapshot_by_the_library_of_its_time(
    world: World, tmp_path: Path
) -> None:
    await publish(world, OWN_A1)
    # The next list withdraws A1's version: its image no longer counts (nor is due) from then on.
    await _next_cpl(
        world,
        tmp_path,
        "second",
        [v.as_row() for v in CPL if v != OWN_A1] + [OWN_A1.as_row() | {Column.STATUS: "Withdrawn"}],
    )
    await publish(world, OWN_A2)
    points = data(await ask(world, HISTORY, token=world.tokens.panel, last=20))["coverageHistory"]
    assert [p["snapshotId"] for p in points] == [1, 2]
    first, second = points
    assert first["currentUntil"] == second["currentFrom"] and second["currentUntil"] is None
    own = {p["snapshotId"]: next(g for g in p["groups"] if g["key"] == "10B2") for p in points}
    # Snapshot 1: A1 published while it was current; A2 was published only under snapshot 2.
    assert own[1]["available"] == 1 and own[2]["available"] == 1
    assert own[2]["certified"] == own[1]["certified"] - 1
    # The current snapshot's point is today's coverage summary.
    summary = data(
        await ask(world, "{ coverageSummary(groupBy: MANUFACTURER) { key certified available missing } }")
    )["coverageSummary"]
    assert second["groups"] == summary
    assert second["total"]["available"] == sum(g["available"] for g in summary)
    assert [
        p["snapshotId"]
        for p in data(await ask(world, HISTORY, token=world.tokens.panel, last=1))["coverageHistory"]
    ] == [2]


@pytest.mark.parametrize(
    ("last", "code", "said"),
    [
        (0, "BAD_USER_INPUT", "last must be between 1 and 100 snapshots"),
        (101, "BAD_USER_INPUT", "last must be between 1 and 100 snapshots"),
        (-1, "PAGE_TOO_LARGE", "last"),  # the query limits refuse any negative count before it runs
    ],
)
async def test_coverage_history_refuses_a_count_of_snapshots_out_of_range(
    world: World, last: int, code: str, said: str
) -> None:
    body = await ask(world, HISTORY, token=world.tokens.panel, last=last)
    error = body["errors"][0]
    assert error["extensions"]["code"] == code
    assert said in error["message"]


async def test_coverage_history_costs_the_same_statements_however_many_snapshots(
    world: World, tmp_path: Path
) -> None:
    counts = []
    for name in ("second", "third"):
        await _next_cpl(world, tmp_path, name, [v.as_row() for v in CPL if v != OTHER_C1 or name == "third"])
        with counting(world.db) as statements:
            points = data(await ask(world, HISTORY, token=world.tokens.panel, last=20))["coverageHistory"]
        counts.append((len(points), len(statements)))
    assert [n for n, _ in counts] == [2, 3]
    assert counts[0][1] == counts[1][1], counts


async def _disagreeing(world: World, tmp_path: Path) -> dict[str, int]:
    """The consistency test's library: A1's hash changed, A2 withdrawn and A3 dropped by the next CPL."""
    ids = {
        "A1": await publish(world, OWN_A1),
        "A2": await publish(world, OWN_A2),
        "A3": await publish(world, OWN_A3),
    }
    changed = [v.as_row() for v in CPL if v not in (OWN_A1, OWN_A2, OWN_A3)]
    changed.append(OWN_A1.as_row() | {Column.IMAGE_HASH: "cd" * 32})
    changed.append(OWN_A2.as_row() | {Column.STATUS: "Withdrawn"})
    await _next_cpl(world, tmp_path, "next", changed)
    return ids


async def test_findings_filter_by_kind_page_by_cursor_and_carry_their_image(
    world: World, tmp_path: Path
) -> None:
    ids = await _disagreeing(world, tmp_path)
    everything = data(await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2"))[
        "consistencyReport"
    ]
    assert everything["totalCount"] == len(everything["findings"]) == 8
    counts = {c["kind"]: c["count"] for c in everything["counts"]}
    assert counts == {
        "MISSING_IMAGE": 3,  # two never published, and A1 held: its version is a gap
        "HASH_MISMATCH": 1,
        "DELISTED_FROM_CPL": 1,
        "NOT_ON_CPL": 1,
        "LATE_PUBLICATION": 2,
    }
    late = data(
        await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2", kinds=["LATE_PUBLICATION"])
    )["consistencyReport"]
    assert [f["kind"] for f in late["findings"]] == ["LATE_PUBLICATION"] * 2
    assert late["totalCount"] == 2 and {c["kind"]: c["count"] for c in late["counts"]} == counts
    by_image = {f["libraryImageId"]: f["libraryImage"] for f in everything["findings"] if f["libraryImageId"]}
    assert by_image[ids["A1"]] == {"imageId": ids["A1"], "state": "HELD", "firmwareVersion": "01000000"}
    assert all(f["libraryImage"] is None for f in everything["findings"] if f["kind"] == "MISSING_IMAGE")
    # Two at a time, the pages add up to the whole report, in its order.
    seen, after = [], None
    while True:
        page = data(
            await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2", first=2, after=after)
        )["consistencyReport"]
        assert len(page["findings"]) <= 2 and page["totalCount"] == 8
        seen.extend(page["findings"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == everything["findings"]


async def test_bad_kinds_pages_and_cursors_are_refused_with_what_is_expected(world: World) -> None:
    kind = await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2", kinds=["LATE"])
    assert kind["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "LATE" in kind["errors"][0]["message"]
    big = await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2", first=501)
    assert big["errors"][0]["extensions"]["code"] == "PAGE_TOO_LARGE"
    cursor = await ask(
        world, REPORT, token=world.tokens.manufacturer, m="10B2", first=2, after="bm90IGEgY3Vyc29y"
    )
    assert cursor["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "cursor" in cursor["errors"][0]["message"]


async def test_findings_with_their_images_cost_the_same_statements_for_any_page(
    world: World, tmp_path: Path
) -> None:
    await _disagreeing(world, tmp_path)
    counts = {}
    for first in (2, 8):  # each page holds findings with images
        with counting(world.db) as statements:
            page = data(await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2", first=first))
        assert len(page["consistencyReport"]["findings"]) == first
        counts[first] = len(statements)
    assert counts[2] == counts[8], counts


PLAN = """query($from: String!, $first: Int!) { deviceModels(first: $first) { edges { node {
  modelId hardwareVersion
  upgradePlan(from: $from) { fromVersion targetVersion blocked blockedAt detail
    steps { fromVersion toVersion libraryImage { imageId state releaseNotes { text } } } } } } } }"""


async def _pathways(world: World, *steps: tuple[str, str]) -> None:
    principal = await world.principal(world.tokens.manufacturer)
    for start, end in steps:
        model = VersionKey(OWN_A1.manufacturer_id, OWN_A1.model_id, OWN_A1.hardware_version, start)
        await world.library.record_upgrade_pathway(principal, model, start, end)


async def test_an_upgrade_plan_takes_the_fewest_pathways_to_the_newest_installable_version(
    world: World, tmp_path: Path
) -> None:
    ids = {
        v.firmware_version: i
        for v, i in zip(
            (OWN_A1, OWN_A2, OWN_A3), [await publish(world, v) for v in (OWN_A1, OWN_A2, OWN_A3)], strict=True
        )
    }
    await _pathways(world, ("01000000", "01010000"), ("01010000", "01020000"), ("01000000", "01020000"))
    edges = data(await ask(world, PLAN, first=10, **{"from": "1.0.0.0"}))["deviceModels"]["edges"]
    plan = next(e["node"]["upgradePlan"] for e in edges if e["node"]["modelId"] == "0001")
    assert (
        plan["fromVersion"] == "01000000" and plan["targetVersion"] == "01020000" and plan["blocked"] is None
    )
    [step] = plan["steps"]
    assert (step["fromVersion"], step["toVersion"]) == ("01000000", "01020000")
    assert step["libraryImage"]["imageId"] == ids["01020000"] and step["libraryImage"]["state"] == "PUBLISHED"
    assert "tariff" in step["libraryImage"]["releaseNotes"]["text"]
    # The newest version's image is held by the next CPL: the plan stops at the version before it.
    changed = [v.as_row() for v in CPL if v != OWN_A3] + [OWN_A3.as_row() | {Column.IMAGE_HASH: "cd" * 32}]
    await _next_cpl(world, tmp_path, "held", changed)
    model = """{ deviceModel(manufacturerId: "10B2", modelId: "0001", hardwareVersion: "0100") {
      upgradePlan(from: "01000000") { targetVersion blocked steps { toVersion } } } }"""
    held = data(await ask(world, model))["deviceModel"]["upgradePlan"]
    assert held == {"targetVersion": "01010000", "blocked": None, "steps": [{"toVersion": "01010000"}]}
    # From the newest installable version itself: up to date, said as such.
    blocked = data(await ask(world, model.replace("01000000", "01010000")))["deviceModel"]["upgradePlan"]
    assert blocked["blocked"] == "UP_TO_DATE" and blocked["steps"] == []


async def test_upgrade_plans_cost_the_same_statements_for_any_page_of_models(world: World) -> None:
    for version in (OWN_A1, OWN_A2):
        await publish(world, version)
    await _pathways(world, ("01000000", "01010000"))
    counts = {}
    for first in (1, 4):
        with counting(world.db) as statements:
            edges = data(await ask(world, PLAN, first=first, **{"from": "01000000"}))["deviceModels"]["edges"]
        assert len(edges) == first
        counts[first] = len(statements)
    assert counts[1] == counts[4], counts


@pytest.mark.parametrize("start", ["", "01.02", "GG000000", "0100000000"])
async def test_an_upgrade_plan_from_what_is_no_firmware_version_is_refused_saying_what_one_is(
    world: World, start: str
) -> None:
    body = await ask(world, PLAN, first=1, **{"from": start})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("from: ") and "firmware version" in error["message"]


async def test_each_finding_says_what_disagrees_and_comes_in_the_report_order(
    world: World, tmp_path: Path
) -> None:
    """The report's words (what the pages, the exports and the graph show) and its order: by version,
    then by kind."""
    ids = await _disagreeing(world, tmp_path)
    today = dt.date(2026, 1, 1)
    async with world.db.sessions() as session:
        snapshot = await current_snapshot_id(session)
        assert snapshot is not None
        found = await reports.consistency_report(session, snapshot, "10B2", today=today)
        images = {
            image.id: image
            for image in (
                await session.scalars(select(LibraryImage).where(LibraryImage.id.in_(ids.values())))
            )
        }
    a1, a2, a3 = (images[ids[name]] for name in ("A1", "A2", "A3"))
    assert a1.held_at and a2.held_at and a3.held_at and a1.published_at and a2.published_at

    def late(image: LibraryImage) -> str:
        assert image.published_at is not None
        days = (image.published_at.date() - dt.date(2024, 1, 15)).days
        return (
            f"image {image.id} was published {days} days after the CPL listed the version (2024-01-15); "
            "the aim is 30"
        )

    missing = "certified on the CPL since 2024-01-15 (sheet row {}), 717 days without a published image"
    assert [
        (f.kind.value, f.model_id, f.hardware_version, f.firmware_version, f.detail, f.image_id)
        for f in found
    ] == [
        ("MISSING_IMAGE", "0001", "0100", "01000000", missing.format(6), None),
        (
            "HASH_MISMATCH",
            "0001",
            "0100",
            "01000000",
            f"image {a1.id} is held since {a1.held_at:%Y-%m-%d} and not served: its Manufacturer Image SHA-256 "
            f"is {a1.manufacturer_image_sha256}; the CPL lists {'cd' * 32} (sheet row 6)",
            a1.id,
        ),
        ("LATE_PUBLICATION", "0001", "0100", "01000000", late(a1), a1.id),
        (
            "DELISTED_FROM_CPL",
            "0001",
            "0100",
            "01010000",
            f"image {a2.id} is held since {a2.held_at:%Y-%m-%d} and not served: the CPL now lists the version "
            "as withdrawn (sheet row 7)",
            a2.id,
        ),
        ("LATE_PUBLICATION", "0001", "0100", "01010000", late(a2), a2.id),
        (
            "NOT_ON_CPL",
            "0001",
            "0100",
            "01020000",
            f"image {a3.id} is held since {a3.held_at:%Y-%m-%d} and not served: the current CPL does not "
            "list this version",
            a3.id,
        ),
        ("MISSING_IMAGE", "0002", "0100", "02000000", missing.format(2), None),
        ("MISSING_IMAGE", "0002", "0200", "02000000", missing.format(3), None),
    ]
    graph = data(await ask(world, REPORT, token=world.tokens.manufacturer, m="10B2"))["consistencyReport"]
    assert [(f["kind"], f["firmwareVersion"], f["libraryImageId"]) for f in graph["findings"]] == [
        (f.kind.value, f.firmware_version, f.image_id) for f in found
    ]
