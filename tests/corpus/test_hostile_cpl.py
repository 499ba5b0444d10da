"""Every hostile CPL file of the generated corpus is refused with a specific error and changes nothing
(issue 9): the current snapshot stays current, no snapshot is added, and each attempt is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import CplCurrent, CplSnapshot, CplSyncRun, SyncOutcome
from cpl_sync.sync import sync_cpl
from tests.corpus.hostile_cpl import cases, write
from tests.fixtures.cpl_files import row, write_csv

pytestmark = pytest.mark.postgres


async def _state(db: Database) -> tuple[int | None, int, int]:
    async with db.sessions() as session:
        current = await session.scalar(select(CplCurrent.snapshot_id))
        snapshots = int(await session.scalar(select(func.count()).select_from(CplSnapshot)) or 0)
        runs = int(await session.scalar(select(func.count()).select_from(CplSyncRun)) or 0)
    return current, snapshots, runs


async def test_every_hostile_cpl_file_is_refused_with_a_specific_error_and_changes_nothing(
    db: Database, tmp_path: Path
) -> None:
    good = await sync_cpl(db, str(write_csv(tmp_path / "good.csv", [row()])), work_dir=tmp_path / "work")
    assert good.outcome is SyncOutcome.APPLIED
    corpus = list(cases())
    assert len(corpus) >= 100, len(corpus)
    failures = []
    for index, case in enumerate(corpus):
        before = await _state(db)
        result = await sync_cpl(db, str(write(case, tmp_path, index)), work_dir=tmp_path / "work")
        current, snapshots, runs = await _state(db)
        first = str(result.errors[0]) if result.errors else (result.message or "")
        if result.outcome is not SyncOutcome.REJECTED:
            failures.append(f"{case.name}: {result.outcome.value} ({result.message})")
        elif case.expect and case.expect not in first.lower():
            failures.append(f"{case.name}: the first error does not say {case.expect!r}: {first}")
        elif (current, snapshots) != before[:2] or runs != before[2] + 1:
            failures.append(f"{case.name}: the state changed: {before} -> {(current, snapshots, runs)}")
    assert not failures, f"{len(failures)} of {len(corpus)} cases mishandled:\n" + "\n".join(failures)
