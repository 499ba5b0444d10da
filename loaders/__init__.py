"""DataLoaders: one batched SQL statement per entity kind per request, never one per row."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph.access.principal import Principal
from loaders.catalogue import CatalogueLoaders
from loaders.cpl import CplLoaders


@dataclass
class Loaders:
    cpl: CplLoaders
    catalogue: CatalogueLoaders

    @classmethod
    def for_request(cls, sessions: async_sessionmaker[AsyncSession], principal: Principal | None) -> Loaders:
        cpl = CplLoaders(sessions)
        return cls(cpl=cpl, catalogue=CatalogueLoaders(sessions, principal, cpl.current_snapshot_id))
