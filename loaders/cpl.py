"""Batched reads of the CPL side: snapshots and the current pointer."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from cfl_graph.tables import CplSnapshot
from cpl_sync.snapshot import current_snapshot_id


class CplLoaders:
    """Per-request loaders; each kind of entity costs one statement per request, however many asked."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.snapshot = DataLoader[int, CplSnapshot | None](self._load_snapshots)
        self._current_id: int | None = None
        self._current_known = False

    async def _load_snapshots(self, ids: Sequence[int]) -> list[CplSnapshot | None]:
        async with self._sessions() as session:
            rows = (await session.execute(select(CplSnapshot).where(CplSnapshot.id.in_(ids)))).scalars()
            found = {row.id: row for row in rows}
        return [found.get(i) for i in ids]

    def pin_current_snapshot(self, snapshot_id: int | None) -> None:
        """Answer for this snapshot as the current one: the one the request's cache key was read with."""
        self._current_id = snapshot_id
        self._current_known = True

    async def current_snapshot_id(self) -> int | None:
        if not self._current_known:
            async with self._sessions() as session:
                self._current_id = await current_snapshot_id(session)
            self._current_known = True
        return self._current_id
