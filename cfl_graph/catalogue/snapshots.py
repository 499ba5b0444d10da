"""The library's copies of the CPL as readers see them: the current snapshot, earlier ones, sync runs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.tables import CplCurrent, CplSnapshot, CplSyncRun


async def current_snapshot_id(session: AsyncSession) -> int | None:
    """The id of the current snapshot (one indexed read of a single-row table), or None before any."""
    return (await session.execute(select(CplCurrent.snapshot_id))).scalar_one_or_none()


async def current_snapshot(session: AsyncSession, *, lock: bool = False) -> CplSnapshot | None:
    """The current snapshot. `lock`: a writer that decides by it holds it until commit (PostgreSQL
    `FOR SHARE` of the pointer), so a sync cannot make another snapshot current in between, and a sync
    that has just moved it is waited for and seen (SQLite writers hold the write lock already)."""
    if not lock:
        query = select(CplSnapshot).join(CplCurrent, CplCurrent.snapshot_id == CplSnapshot.id)
        return (await session.execute(query)).scalar_one_or_none()
    # The pointer alone is locked and read, then its snapshot: locked in a join, a pointer a sync moved
    # while this waited would be re-checked against the snapshot row first joined, and the answer would
    # be no snapshot at all (PostgreSQL re-reads only the locked row of a join after the wait).
    pointer = select(CplCurrent.snapshot_id).with_for_update(read=True)
    snapshot_id = (await session.execute(pointer)).scalar_one_or_none()
    return None if snapshot_id is None else await session.get(CplSnapshot, snapshot_id)


async def recent_snapshots(session: AsyncSession, limit: int) -> list[CplSnapshot]:
    """Snapshots, newest first."""
    return list(
        (await session.execute(select(CplSnapshot).order_by(CplSnapshot.id.desc()).limit(limit))).scalars()
    )


async def recent_runs(session: AsyncSession, limit: int) -> list[CplSyncRun]:
    """Sync runs with their outcomes, newest first."""
    return list(
        (await session.execute(select(CplSyncRun).order_by(CplSyncRun.id.desc()).limit(limit))).scalars()
    )


async def snapshot(session: AsyncSession, snapshot_id: int) -> CplSnapshot | None:
    return await session.get(CplSnapshot, snapshot_id)


async def sync_run(session: AsyncSession, run_id: int) -> CplSyncRun | None:
    return await session.get(CplSyncRun, run_id)
