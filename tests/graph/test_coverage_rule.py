"""The coverage rule is written once (issue 14, R12): every door counts the same versions as certified,
commercial, available and missing for the same snapshot (the graph, the coverage page and its export,
the manufacturer page, the model pages, the gap list and the consistency report), and the rule for one
version in hand (`catalogue.availability`, the pages') answers as the SQL rule (`version_is_gap`) does
for every version of the snapshot.

The world's CPL holds every case: versions published, held (by a hash the CPL changed), withdrawn,
drafted, declared commercial, listed as withdrawn, and device types outside the library (a comms hub, a
gas proxy) with versions nobody will ever publish.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from cfl_graph.catalogue.coverage import Availability, availability, model_join, version_is_gap
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.database import Database
from cfl_graph.keys import VersionKey
from cfl_graph.tables import CommercialDeclaration, CplCertifiedFirmware, CplDeviceModel, LibraryImage
from tests.fixtures.library import (
    CPL,
    OWN_A1,
    OWN_A2,
    OWN_A3,
    OWN_B_HW1,
    OWN_B_HW2,
    Version,
    World,
    make_world,
)
from tests.fixtures.parties import OWN_MANUFACTURER_ID

pytestmark = pytest.mark.postgres

HUB = Version(OWN_MANUFACTURER_ID, "00C0", "0001", "0A000000")
HUB_2 = Version(OWN_MANUFACTURER_ID, "00C0", "0001", "0A010000")
PROXY = Version(OWN_MANUFACTURER_ID, "00D0", "0001", "0B000000")
EVERY_CASE = [*CPL, HUB, HUB_2, PROXY]


def rows() -> list[Any]:
    kinds = {HUB: "CHF", HUB_2: "CHF", PROXY: "GPF"}
    return [v.as_row(device_type=kinds[v]) if v in kinds else v for v in EVERY_CASE]


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    world = await make_world(db, tmp_path)
    assert (await world.sync(rows())).outcome.value == "applied"
    principal = await world.principal(world.tokens.manufacturer)
    for version in (OWN_A1, OWN_A2, OWN_B_HW1):
        image = await world.upload(world.image(version))
        await world.publish(image.id)
    await world.upload(world.image(OWN_A3))  # a draft: the version is still a gap
    withdrawn = (await world.upload(world.image(OWN_B_HW2))).id
    await world.publish(withdrawn)
    await world.library.withdraw(principal, withdrawn, "a defect found in the field after publication")
    await world.library.declare_commercial(principal, VersionKey(*HUB_2.key), "built for one supplier only")
    # The CPL lists another hash for A2: its image is held, and the version is a gap again.
    moved = [r if r is not OWN_A2 else OWN_A2.as_row(image_hash="ee" * 32) for r in rows()]
    assert (await world.sync(moved)).followed.held  # type: ignore[union-attr]
    return world


async def _get(world: World, path: str, token: str) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path, headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})


async def _graph(world: World, query: str) -> dict[str, Any]:
    transport = httpx2.ASGITransport(app=world.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {world.tokens.panel}"}
        )
    body = answer.json()
    assert "errors" not in body, body
    return dict(body["data"])


def _counts(attributes: str) -> tuple[int, int, int, int]:
    found = dict(re.findall(r'data-(certified|commercial|available|missing)="(\d+)"', attributes))
    return (int(found["certified"]), int(found["commercial"]), int(found["available"]), int(found["missing"]))


async def test_every_door_counts_coverage_the_same_way(world: World) -> None:
    # What the rule says for this world, version by version.
    expected = (5, 0, 2, 3)  # A1, A2 (held), A3 (draft), B_HW1, B_HW2 (withdrawn) due; A1 and B_HW1 available
    total = await _graph(
        world, "{ coverageSummary(groupBy: MANUFACTURER) { key certified commercial available missing } }"
    )
    ours = next(g for g in total["coverageSummary"] if g["key"] == OWN_MANUFACTURER_ID)
    assert (ours["certified"], ours["commercial"], ours["available"], ours["missing"]) == expected
    by_type = await _graph(world, "{ coverageSummary(groupBy: DEVICE_TYPE) { key certified } }")
    assert {g["key"] for g in by_type["coverageSummary"]} == {"ESME"}  # CHF and GPF are not counted

    export = (await _get(world, "/reports/coverage.csv", world.tokens.panel)).content.decode("utf-8-sig")
    line = next(line for line in csv.reader(io.StringIO(export)) if line[0] == OWN_MANUFACTURER_ID)
    assert tuple(map(int, line[2:6])) == expected

    coverage_page = (await _get(world, "/coverage", world.tokens.panel)).text
    row = re.search(rf'<tr data-group="{OWN_MANUFACTURER_ID}"([^>]*)>', coverage_page)
    assert row is not None and _counts(row.group(1)) == expected

    maker_page = (await _get(world, f"/manufacturers/{OWN_MANUFACTURER_ID}", world.tokens.panel)).text
    per_model = [
        _counts(attrs) for attrs in re.findall(r'<tr data-model="[^"]+"([^>]*)>', maker_page) if attrs
    ]
    assert tuple(map(sum, zip(*per_model, strict=True))) == expected
    assert "Not in the library&#39;s scope" in maker_page or "Not in the library's scope" in maker_page

    badges: Counter[str] = Counter()
    for model in ("0001/0100", "0002/0100", "0002/0200", "00C0/0001", "00D0/0001"):
        page = (await _get(world, f"/models/{OWN_MANUFACTURER_ID}/{model}", world.tokens.panel)).text
        badges.update(re.findall(r'<tr class="state-([a-z-]+)" data-version=', page))
    assert badges == Counter(
        {
            "available": 2,
            "held": 1,
            "missing": 1,
            "withdrawn": 1,
            "not-active": 1,
            "out-of-scope": 2,
            "commercial": 1,
        }
    )
    available, gaps = badges["available"], badges["held"] + badges["missing"] + badges["withdrawn"]
    assert (available, gaps) == (expected[2], expected[3])

    gap_list = await _graph(
        world, f'{{ coverageGaps(filter: {{manufacturerId: "{OWN_MANUFACTURER_ID}"}}) {{ totalCount }} }}'
    )
    assert gap_list["coverageGaps"]["totalCount"] == expected[3]
    report = await _graph(
        world, f'{{ consistencyReport(manufacturerId: "{OWN_MANUFACTURER_ID}") {{ findings {{ kind }} }} }}'
    )
    kinds = Counter(f["kind"] for f in report["consistencyReport"]["findings"])
    assert kinds["MISSING_IMAGE"] == expected[3] and kinds["HASH_MISMATCH"] == 1


async def test_the_rule_in_hand_answers_as_the_sql_rule_for_every_version(world: World) -> None:
    cf = CplCertifiedFirmware
    async with world.db.sessions() as session:
        snapshot = await current_snapshot_id(session)
        versions = (
            await session.execute(
                select(cf, CplDeviceModel.device_type, version_is_gap().label("gap"))
                .join(CplDeviceModel, model_join())
                .where(cf.snapshot_id == snapshot)
            )
        ).all()
        images = {
            (i.manufacturer_id, i.model_id, i.hardware_version, i.firmware_version): i.state
            for i in (await session.execute(select(LibraryImage))).scalars()
        }
        declared = {
            (d.manufacturer_id, d.model_id, d.hardware_version, d.firmware_version)
            for d in (await session.execute(select(CommercialDeclaration))).scalars()
        }
    seen: set[Availability] = set()
    for certified, device_type, gap in versions:
        key = (
            certified.manufacturer_id,
            certified.model_id,
            certified.hardware_version,
            certified.firmware_version,
        )
        found = availability(certified.status, device_type, images.get(key), declared=key in declared)
        assert found.is_gap == bool(gap), (key, found)
        seen.add(found)
    assert seen == set(Availability), "the world holds every kind of version"
