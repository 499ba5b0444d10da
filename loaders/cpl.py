"""Batched reads of the CPL side: snapshots and the current pointer."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.tables import CplSnapshot
from loaders.weak import weak_loader


class CplLoaders:
    """Per-request loaders; each kind of entity costs one statement per request, however many asked."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._current: asyncio.Future[int | None] | None = None

    @functools.cached_property
    def snapshot(self) -> DataLoader[int, CplSnapshot | None]:
        return weak_loader(self._load_snapshots)  # made when first asked for, as the catalogue's

    def afresh(self) -> CplLoaders:
        """Loaders that have read nothing but this request's current snapshot (read, or being read): the
        request goes on answering for the one snapshot."""
        fresh = CplLoaders(self._sessions)
        fresh._current = self._current
        return fresh

    async def _load_snapshots(self, ids: Sequence[int]) -> list[CplSnapshot | None]:
        async with self._sessions() as session:
            rows = (await session.execute(select(CplSnapshot).where(CplSnapshot.id.in_(ids)))).scalars()
            found = {row.id: row for row in rows}
        return [found.get(i) for i in ids]

    def pin_current_snapshot(self, snapshot_id: int | None) -> None:
        """Answer for this snapshot as the current one: the one the request's cache key was read with."""
        pinned: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        pinned.set_result(snapshot_id)
        self._current = pinned

    async def current_snapshot_id(self) -> int | None:
        """The current snapshot as this request sees it: read once, whoever asks first and however many
        ask at the same moment (a query's root fields resolve concurrently), so that every part of one
        answer reads the same snapshot even while a sync moves the pointer."""
        if self._current is None:
            self._current = asyncio.get_running_loop().create_task(self._read_current())
        return await asyncio.shield(self._current)

    async def _read_current(self) -> int | None:
        async with self._sessions() as session:
            return await current_snapshot_id(session)
