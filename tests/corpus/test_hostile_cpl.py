"""Every hostile CPL file of the generated corpus is refused with a specific error and changes nothing
(issue 9): the first error names the row and column (or the file) and why, the current snapshot stays
current, no snapshot and no CPL row is added, and each attempt is recorded as a rejected run. A file
whose one odd row merely disagrees with the rest of its device model, or has an unreadable optional
cell, is applied instead, with a warning that says the same (issue 14): one odd row never stops the
library following the CPL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cfl_graph.database import Database
from cfl_graph.tables import (
    CplCertifiedFirmware,
    CplCurrent,
    CplDeviceModel,
    CplSnapshot,
    CplSyncRun,
    SyncOutcome,
)
from cpl_sync.sync import SyncLimits, sync_cpl
from tests.corpus.hostile_cpl import Case, cases, write
from tests.fixtures.cpl_files import row, write_csv

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Case, Path]]:
    """The corpus written once for both databases (the million-row workbook takes a second or two)."""
    folder = tmp_path_factory.mktemp("hostile-cpl")
    return [(case, write(case, folder, index)) for index, case in enumerate(cases())]


async def _state(db: Database) -> tuple[int | None, int, int, int, int]:
    async with db.sessions() as session:
        current = await session.scalar(select(CplCurrent.snapshot_id))
        counts = [
            int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (CplSnapshot, CplDeviceModel, CplCertifiedFirmware, CplSyncRun)
        ]
    return current, *counts  # type: ignore[return-value]


async def test_every_hostile_cpl_file_is_refused_with_a_specific_error_and_changes_nothing(
    db: Database, tmp_path: Path, corpus: list[tuple[Case, Path]]
) -> None:
    good = await sync_cpl(db, str(write_csv(tmp_path / "good.csv", [row()])), work_dir=tmp_path / "work")
    assert good.outcome is SyncOutcome.APPLIED
    assert len(corpus) >= 200, len(corpus)
    failures = []
    for case, path in corpus:
        before = await _state(db)
        limits = SyncLimits(max_rows=case.max_rows) if case.max_rows is not None else None
        result = await sync_cpl(db, str(path), work_dir=tmp_path / "work", limits=limits)
        after = await _state(db)
        first = str(result.errors[0]) if result.errors else (result.message or "")
        if case.warns:
            warning = str(result.warnings[0]) if result.warnings else ""
            if result.outcome not in (SyncOutcome.APPLIED, SyncOutcome.UNCHANGED):
                failures.append(f"{case.name}: {result.outcome.value}, not applied: {first}")
            elif missing := [word for word in case.expect if word not in warning.lower()]:
                failures.append(f"{case.name}: the first warning does not say {missing}: {warning}")
            elif after[4] != before[4] + 1:
                failures.append(f"{case.name}: no sync run was recorded")
            continue
        if result.outcome is not SyncOutcome.REJECTED:
            failures.append(f"{case.name}: {result.outcome.value} ({result.message})")
        elif missing := [word for word in case.expect if word not in first.lower()]:
            failures.append(f"{case.name}: the first error does not say {missing}: {first}")
        elif case.errors is not None and result.error_count != case.errors:
            failures.append(f"{case.name}: {result.error_count} errors, not {case.errors}: {result.message}")
        elif after[:4] != before[:4] or after[4] != before[4] + 1:
            failures.append(f"{case.name}: the state changed: {before} -> {after}")
    assert not failures, f"{len(failures)} of {len(corpus)} cases mishandled:\n" + "\n".join(failures)
    async with db.sessions() as session:
        runs = (await session.execute(select(CplSyncRun.outcome).order_by(CplSyncRun.id))).scalars().all()
    assert [run for run in runs if run == "rejected"] == ["rejected"] * sum(not c.warns for c, _ in corpus)
    assert sum(c.warns for c, _ in corpus) >= 40
