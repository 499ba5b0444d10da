"""Published images follow the CPL (issue 14, R6, R7): a snapshot that drops a version, lists it as not
active or lists another hash for it holds the published image in the same sync, and every door says so
(graph, downloads, pages, feeds, the signed catalogue, the consistency report, the audit trail, the sync
run); a later snapshot that lists it again as it was releases it the same way. What the CPL may change
without touching the image (names, device type, specification, dates) changes nothing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cfl_graph.audit import SYSTEM
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.database import Database
from cfl_graph.images import lifecycle
from cfl_graph.images.errors import LibraryError
from cfl_graph.keys import VersionKey
from cfl_graph.tables import AuditEvent, CplSyncRun, ImageState, LibraryImage
from cpl_sync.sync import sync_cpl
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import (
    CPL,
    OWN_A1,
    OWN_A2,
    OWN_A3,
    OWN_B_HW1,
    OWN_B_HW2,
    Version,
    World,
    client,
    make_world,
    serving,
)
from tests.fixtures.sql import counting

pytestmark = pytest.mark.postgres

ATOM = "{http://www.w3.org/2005/Atom}"
Rows = list[Any]


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


async def publish(world: World, version: Version) -> int:
    image = await world.upload(world.image(version))
    await world.publish(image.id)
    return image.id


def _changed(version: Version, **overrides: Any) -> Callable[[], Rows]:
    return lambda: [v.as_row(**overrides) if v == version else v for v in CPL]


# Each CPL change that takes a published image away from what the CPL certifies: the problem it is held
# with, and the consistency finding that names it (the table in docs/decisions.md).
HOLDING_CHANGES: dict[str, tuple[Callable[[], Rows], str, str]] = {
    "dropped from the CPL": (lambda: [v for v in CPL if v != OWN_A1], "not-on-cpl", "NOT_ON_CPL"),
    "listed as withdrawn": (_changed(OWN_A1, status="Withdrawn"), "not-active-on-cpl", "DELISTED_FROM_CPL"),
    "listed as suspended": (_changed(OWN_A1, status="Suspended"), "not-active-on-cpl", "DELISTED_FROM_CPL"),
    "listed as expired": (_changed(OWN_A1, status="Expired"), "not-active-on-cpl", "DELISTED_FROM_CPL"),
    "listed with another hash": (_changed(OWN_A1, image_hash="ee" * 32), "hash-mismatch", "HASH_MISMATCH"),
}

IMAGE = """query($id: ID!) { libraryImage(id: $id) {
  state problems { problem detail } hold { problem detail since cplSnapshotId } releasedAt } }"""
CONSISTENCY = """query { consistencyReport(manufacturerId: "10B2") { findings { kind firmwareVersion } } }"""


async def _doors(world: World, base: str, image_id: int) -> dict[str, Any]:
    """What each door says of the image, as a supplier (and, for its own bytes, the manufacturer) sees it."""
    seen: dict[str, Any] = {}
    async with client(base, world.tokens.supplier) as supplier:
        graph = (await supplier.post("/graphql", json={"query": IMAGE, "variables": {"id": image_id}})).json()
        seen["graph"] = graph["data"]["libraryImage"]
        download = await supplier.get(f"/api/v1/images/{image_id}/file")
        seen["download"] = (download.status_code, download.json() if download.status_code != 200 else None)
        catalogue = json.loads((await supplier.get("/api/v1/catalogue.json")).content)
        seen["catalogue"] = next(e for e in catalogue["signed"]["images"] if e["id"] == image_id)
        feed = ET.fromstring((await supplier.get("/feeds/images.atom")).content)
        entry = next(
            e for e in feed.iter(f"{ATOM}entry") if e.findtext(f"{ATOM}id", "").endswith(f"/{image_id}")
        )
        seen["feed"] = (
            entry.findtext(f"{ATOM}title", ""),
            [link.get("rel") for link in entry.iter(f"{ATOM}link")],
            entry.findtext(f"{ATOM}summary", ""),
        )
        seen["page"] = (await supplier.get(f"/images/{image_id}", headers={"Accept": "text/html"})).text
        model = "/models/{}/{}/{}".format(*OWN_A1.key[:3])
        seen["model page"] = (await supplier.get(model, headers={"Accept": "text/html"})).text
    async with client(base, world.tokens.manufacturer) as manufacturer:
        seen["own download"] = (await manufacturer.get(f"/api/v1/images/{image_id}/file")).status_code
        report = (await manufacturer.post("/graphql", json={"query": CONSISTENCY})).json()
        seen["findings"] = {
            f["kind"]
            for f in report["data"]["consistencyReport"]["findings"]
            if f["firmwareVersion"] == "01000000"
        }
    return seen


@pytest.mark.parametrize("change", sorted(HOLDING_CHANGES))
async def test_a_published_image_is_held_when_the_cpl_moves_and_released_when_it_comes_back(
    world: World, change: str
) -> None:
    rows, problem, finding = HOLDING_CHANGES[change]
    image_id = await publish(world, OWN_A1)
    untouched = await publish(world, OWN_A2)

    moved = await world.sync(rows())
    assert moved.outcome.value == "applied"
    assert moved.followed is not None and list(moved.followed.held) == [image_id]
    assert list(moved.followed.released) == []
    assert "1 image(s) held, 0 released" in (moved.message or "")

    async with serving(world.app()) as base:
        held = await _doors(world, base, image_id)
        other = await _doors(world, base, untouched)
    assert held["graph"]["state"] == "HELD"
    assert [p["problem"] for p in held["graph"]["problems"]] == [problem]
    assert held["graph"]["hold"]["problem"] == problem
    assert held["graph"]["hold"]["cplSnapshotId"] == moved.snapshot_id
    assert f"CPL snapshot {moved.snapshot_id}" in held["graph"]["hold"]["detail"]
    status, refusal = held["download"]
    assert status == 409 and refusal["code"] == "HELD"
    assert refusal["problems"][0]["problem"] == problem and "held" in refusal["error"]
    assert held["own download"] == 200  # its manufacturer keeps access, for its records
    assert held["catalogue"]["state"] == "held" and held["catalogue"]["hold"]["problem"] == problem
    title, links, summary = held["feed"]
    assert "(held)" in title and "enclosure" not in links and summary.startswith("Held since")
    assert "Held since" in held["page"] and "(the value the CPL lists)" not in held["page"]
    assert 'badge-held">Held' in held["model page"]
    assert finding in held["findings"]
    # The other published image, which the CPL still certifies as it is, is untouched everywhere.
    assert other["graph"]["state"] == "PUBLISHED" and other["download"][0] == 200
    assert "enclosure" in other["feed"][1]

    back = await world.sync(CPL)
    assert back.followed is not None and list(back.followed.released) == [image_id]
    assert list(back.followed.held) == []
    async with serving(world.app()) as base:
        released = await _doors(world, base, image_id)
    assert released["graph"]["state"] == "PUBLISHED"
    assert released["graph"]["problems"] == [] and released["graph"]["hold"] is None
    assert released["graph"]["releasedAt"] is not None
    assert released["download"][0] == 200
    assert released["catalogue"]["state"] == "published" and released["catalogue"]["hold"] is None
    assert "enclosure" in released["feed"][1] and "(published)" in released["feed"][0]
    assert finding not in released["findings"]

    async with world.db.sessions() as session:
        events = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.details)
                .where(AuditEvent.action.in_(["image.held", "image.released"]))
                .order_by(AuditEvent.id)
            )
        ).all()
        runs = (await session.execute(select(CplSyncRun).order_by(CplSyncRun.id))).scalars().all()
    assert [(action, details["image_id"], details["problem"]) for action, details in events] == [
        ("image.held", image_id, problem),
        ("image.released", image_id, None),
    ]
    assert [(r.images_held, r.images_released) for r in runs[-2:]] == [(1, 0), (0, 1)]


@pytest.mark.parametrize(
    "overrides",
    [
        {"model_name": "Model 0001 (renamed)"},
        {"manufacturer_name": "Northfield Metering Limited"},
        {"smets_version": "SMETS2 v4.1"},
        {"gbcs_version": "v4.0"},
        {"cpa_reference": "CPA-2026-0042", "cpa_expiry": "2031-01-31"},
        {"date_added": "2023-11-01"},
        {"status": "Certified"},  # read as active
    ],
)
async def test_what_the_cpl_may_change_without_touching_an_image_leaves_it_published(
    world: World, overrides: dict[str, str]
) -> None:
    image_id = await publish(world, OWN_A1)
    result = await world.sync([v.as_row(**overrides) for v in CPL])
    assert result.outcome.value == "applied"
    assert result.followed is not None and (list(result.followed.held), list(result.followed.released)) == (
        [],
        [],
    )
    async with world.db.sessions() as session:
        image = await session.get_one(LibraryImage, image_id)
    assert (image.state, image.problems) == ("published", [])


async def test_a_held_image_whose_version_comes_back_with_another_fault_stays_held_for_that(
    world: World,
) -> None:
    image_id = await publish(world, OWN_A1)
    await world.sync([v for v in CPL if v != OWN_A1])
    again = await world.sync(_changed(OWN_A1, image_hash="ee" * 32)())
    assert again.followed is not None and list(again.followed.held) == []
    async with world.db.sessions() as session:
        image = await session.get_one(LibraryImage, image_id)
    assert (image.state, image.hold_problem) == ("held", "hash-mismatch")
    assert image.held_snapshot_id == again.snapshot_id


async def test_a_held_image_may_be_withdrawn_but_not_declared_commercial_while_held(world: World) -> None:
    image_id = await publish(world, OWN_A1)
    await world.sync(_changed(OWN_A1, image_hash="ee" * 32)())
    principal = await world.principal(world.tokens.manufacturer)
    with pytest.raises(LibraryError, match=r"is held for .*withdraw it before declaring"):
        await world.library.declare_commercial(principal, VersionKey(*OWN_A1.key), "built for one supplier")
    withdrawn = await world.library.withdraw(principal, image_id, "the CPL lists a rebuilt image for it")
    assert (withdrawn.state, withdrawn.hold_problem, withdrawn.held_at) == ("withdrawn", None, None)
    await world.library.declare_commercial(principal, VersionKey(*OWN_A1.key), "built for one supplier")
    # A withdrawal is final: the CPL listing the version again releases nothing.
    back = await world.sync(CPL)
    assert back.followed is not None and list(back.followed.released) == []


async def test_the_library_follows_the_current_snapshot_even_when_the_cpl_did_not_move(
    world: World, tmp_path: Path
) -> None:
    """A snapshot applied without the library following it (by an older service, say) is put right by
    the next sync, even one that finds the CPL unchanged."""
    image_id = await publish(world, OWN_A1)
    dropped = write_csv(tmp_path / "dropped.csv", [v.as_row() for v in CPL if v != OWN_A1])
    assert (await sync_cpl(world.db, str(dropped), work_dir=tmp_path / "w")).outcome.value == "applied"
    async with world.db.sessions() as session:
        assert (await session.get_one(LibraryImage, image_id)).state == "published"
    result = await world.sync([v for v in CPL if v != OWN_A1])
    assert result.outcome.value == "unchanged"
    assert result.followed is not None and list(result.followed.held) == [image_id]


async def test_the_re_check_is_one_statement_however_many_images_are_published(world: World) -> None:
    """The re-check finds what must change in one set-based statement; each change then costs its own
    update and audit event, but images that stay as they are cost nothing."""

    async def statements_of_a_follow_that_changes_nothing() -> int:
        async with world.db.sessions.begin() as session:
            snapshot = await current_snapshot_id(session)
            assert snapshot is not None
            with counting(world.db) as statements:
                followed = await lifecycle.follow_snapshot(session, snapshot, SYSTEM)
        assert not followed.held and not followed.released
        return len(statements)

    await publish(world, OWN_A1)
    one = await statements_of_a_follow_that_changes_nothing()
    for version in (OWN_A2, OWN_A3, OWN_B_HW1, OWN_B_HW2):
        await publish(world, version)
    assert await statements_of_a_follow_that_changes_nothing() == one == 1


async def test_image_list_and_the_sync_command_say_what_was_held(world: World, tmp_path: Path) -> None:
    image_id = await publish(world, OWN_A1)
    dropped = write_csv(tmp_path / "dropped.csv", [v.as_row() for v in CPL if v != OWN_A1])
    synced = run_cli(world.db.url, "sync-cpl", str(dropped), work=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert f"library: 1 image(s) held ({image_id}); 0 image(s) released" in synced.stdout
    listed = run_cli(world.db.url, "image", "list", "--state", "held", work=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert str(image_id) in listed.stdout and "not-on-cpl" in listed.stdout
    runs = run_cli(world.db.url, "cpl", "runs", work=tmp_path)
    assert "1 image(s) held, 0 released" in runs.stdout


def test_every_state_but_draft_is_listed_and_only_published_is_served() -> None:
    assert {ImageState.PUBLISHED, ImageState.HELD, ImageState.WITHDRAWN} == lifecycle.LISTED
    assert {ImageState.PUBLISHED} == lifecycle.SERVED
    # Holds and releases are the library's own steps, taken by a CPL sync: no principal may take them.
    assert lifecycle.TRANSITIONS[lifecycle.Step.HOLD].action is None
    assert lifecycle.TRANSITIONS[lifecycle.Step.RELEASE].action is None
