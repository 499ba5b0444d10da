"""Diffs between any two snapshots, by key: what the CPL added, removed and changed (R6, R7)."""

from __future__ import annotations

from pathlib import Path

from cfl_graph.database import Database
from cpl_sync.columns import Column
from cpl_sync.diff import diff_snapshots
from cpl_sync.sync import sync_cpl
from tests.fixtures.cpl_files import versions, write_csv


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
