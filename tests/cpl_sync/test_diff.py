"""Diffs between any two snapshots, by key: what the CPL added, removed and changed (R6, R7)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from cfl_graph.database import Database
from cpl_sync.columns import Column
from cpl_sync.diff import _changed, _changed_listed, _Side, compared_counts, diff_counts, diff_snapshots
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import row, versions, write_csv


async def test_diff_names_added_removed_and_changed_rows_with_fields(db: Database, tmp_path: Path) -> None:
    before = versions(4)
    after = [dict(r) for r in before[1:]] + versions(1, model_id="0009", device_type="GSME")
    after[0][Column.STATUS] = "Withdrawn"
    after[2][Column.MODEL_NAME] = "NM-E470 Single Phase (rev B)"  # on the newest listing
    a = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", before)), work_dir=tmp_path)
    b = await sync_cpl(db, str(write_csv(tmp_path / "b.csv", after)), work_dir=tmp_path)
    assert a.snapshot_id is not None and b.snapshot_id is not None

    async with db.sessions() as session:
        diff = await diff_snapshots(session, a.snapshot_id, b.snapshot_id)

    assert (diff.counts.added, diff.counts.removed, diff.counts.changed) == (1, 1, 3)
    assert [r.key for r in diff.added] == [("10B2", "0009", "0100", "00010000")]
    assert diff.added[0].device_type == "GSME"
    assert [r.key for r in diff.removed] == [("10B2", "0001", "0100", "00010000")]
    changes = {c.key[3]: {(f.field, f.old, f.new) for f in c.fields} for c in diff.changed}
    # A model name belongs to the device model, so every remaining version of it shows the rename.
    rename = ("model_name", "NM-E470 Single Phase", "NM-E470 Single Phase (rev B)")
    assert changes == {
        "00020000": {("status", "active", "withdrawn"), rename},
        "00030000": {rename},
        "00040000": {rename},
    }
    assert not diff.truncated


async def test_diff_lists_are_capped_but_counts_are_exact(db: Database, tmp_path: Path) -> None:
    a = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(2))), work_dir=tmp_path)
    b = await sync_cpl(db, str(write_csv(tmp_path / "b.csv", versions(30))), work_dir=tmp_path)
    assert a.snapshot_id is not None and b.snapshot_id is not None
    async with db.sessions() as session:
        diff = await diff_snapshots(session, a.snapshot_id, b.snapshot_id, limit=5)
        backwards = await diff_snapshots(session, b.snapshot_id, a.snapshot_id, limit=5)
    assert (diff.counts.added, len(diff.added), diff.truncated) == (28, 5, True)
    assert (backwards.counts.removed, backwards.counts.added) == (28, 0)


async def test_a_snapshot_has_no_difference_from_itself(db: Database, tmp_path: Path) -> None:
    a = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    assert a.snapshot_id is not None
    async with db.sessions() as session:
        diff = await diff_snapshots(session, a.snapshot_id, a.snapshot_id)
    assert (diff.counts.added, diff.counts.removed, diff.counts.changed) == (0, 0, 0)


def _listing(rnd: random.Random, models: int) -> list[dict[Column, Any]]:
    """A small CPL of a few device models, each with a few versions; optional cells blank at random."""
    rows = []
    for m in range(models):
        for v in range(rnd.randint(1, 6)):
            rows.append(
                row(
                    model_id=f"{m + 1:04X}",
                    model_name=f"Model {m}",
                    firmware_version=f"{v + 1:04X}0000",
                    image_hash=f"{rnd.getrandbits(256):064x}",
                    gbcs_version=rnd.choice(["v3.2", "v4.0", ""]),
                    cpa_reference=rnd.choice(["CPA-1", "CPA-2", ""]),
                    cpa_expiry=rnd.choice(["2029-01-31", "2030-06-30", ""]),
                    status=rnd.choice(["Active", "Active", "Withdrawn", "Suspended"]),
                )
            )
    return rows


def _moved(rnd: random.Random, before: list[dict[Column, Any]]) -> tuple[list[dict[Column, Any]], bool]:
    """The next CPL: some versions dropped, some added, some of their cells changed or blanked, and some
    device models renamed or retyped on every row, so that only their models' facts changed (and whether
    one was)."""
    renamed = {f"{m + 1:04X}" for m in range(8) if rnd.random() < 0.25}
    retyped = {f"{m + 1:04X}" for m in range(8) if rnd.random() < 0.15}
    after = []
    for cells in before:
        if rnd.random() < 0.15:
            continue
        cells = dict(cells)
        if cells[Column.MODEL_ID] in renamed:
            cells[Column.MODEL_NAME] += " (rev B)"
        if cells[Column.MODEL_ID] in retyped:
            cells[Column.DEVICE_TYPE] = "GSME"
        if rnd.random() < 0.3:
            column = rnd.choice(
                [
                    Column.STATUS,
                    Column.IMAGE_HASH,
                    Column.GBCS_VERSION,
                    Column.CPA_REFERENCE,
                    Column.CPA_EXPIRY,
                    Column.SMETS_VERSION,
                    Column.DATE_ADDED,
                ]
            )
            cells[column] = {
                Column.STATUS: rnd.choice(["Active", "Withdrawn", "Expired"]),
                Column.IMAGE_HASH: f"{rnd.getrandbits(256):064x}",
                Column.GBCS_VERSION: rnd.choice(["v3.2", ""]),
                Column.CPA_REFERENCE: rnd.choice(["CPA-3", ""]),
                Column.CPA_EXPIRY: rnd.choice(["2031-01-01", ""]),
                Column.SMETS_VERSION: rnd.choice(["SMETS2", "SMETS1"]),
                Column.DATE_ADDED: "2025-02-03",
            }[column]
        after.append(cells)
    for extra in range(rnd.randint(0, 4)):
        after.append(
            row(model_id="00FF", firmware_version=f"{extra + 1:04X}0000", image_hash=f"{extra:064x}")
        )
    return after, any(c[Column.MODEL_ID] in renamed | retyped for c in after)


async def test_the_counts_and_changes_found_first_answer_as_the_comparisons(
    db: Database, tmp_path: Path
) -> None:
    """`diff_counts` (one statement, each model's facts compared once) against `compared_counts` (three
    comparisons), and the changed rows `diff_snapshots` lists (found first, then joined to their models)
    against `_changed`, both ways round, over generated pairs of snapshots."""
    compared, models_changed = [], 0
    for seed in range(12):
        rnd = random.Random(seed)
        before = _listing(rnd, rnd.randint(1, 8))
        after, model_changed = _moved(rnd, before)
        models_changed += model_changed
        a = await sync_cpl(db, str(write_csv(tmp_path / f"{seed}a.csv", before)), work_dir=tmp_path)
        b = await sync_cpl(db, str(write_csv(tmp_path / f"{seed}b.csv", after)), work_dir=tmp_path)
        assert a.snapshot_id is not None and b.outcome in ("applied", "unchanged"), b
        assert b.snapshot_id is not None
        async with db.sessions() as session:
            for old, new in ((a.snapshot_id, b.snapshot_id), (b.snapshot_id, a.snapshot_id)):
                one_pass = await diff_counts(session, old, new)
                assert one_pass == await compared_counts(session, old, new), (seed, old, new)
                compared.append(one_pass)
                for limit in (2, 1000):  # the first few, and all
                    this, that = _Side(old), _Side(new)
                    reference = _changed(this, that).order_by(*this.order()).limit(limit)
                    listed = (await session.execute(_changed_listed(this, that, limit))).all()
                    assert listed == (await session.execute(reference)).all(), (seed, old, new, limit)
    # The pairs did differ, in each way a diff counts.
    assert all(any(getattr(c, kind) for c in compared) for kind in ("added", "removed", "changed"))
    assert models_changed >= 3, models_changed
