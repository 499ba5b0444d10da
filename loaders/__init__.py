"""DataLoaders: one batched SQL statement per entity kind per request, never one per row."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cfl_graph.access.principal import Principal
from loaders.catalogue import CatalogueLoaders
from loaders.cpl import CplLoaders


class Unknown(enum.Enum):
    UNKNOWN = enum.auto()


UNKNOWN = Unknown.UNKNOWN


@dataclass
class Loaders:
    cpl: CplLoaders
    catalogue: CatalogueLoaders

    @classmethod
    def for_request(
        cls,
        sessions: async_sessionmaker[AsyncSession],
        principal: Principal | None,
        *,
        current_snapshot: int | Unknown | None = UNKNOWN,
    ) -> Loaders:
        """The request's loaders; `current_snapshot`, when the caller has read it already, is the
        snapshot the whole request answers for (else the first loader that needs it reads it once)."""
        cpl = CplLoaders(sessions)
        if not isinstance(current_snapshot, Unknown):
            cpl.pin_current_snapshot(current_snapshot)
        return cls(cpl=cpl, catalogue=CatalogueLoaders(sessions, principal, cpl.current_snapshot_id))

    def afresh(self) -> Loaders:
        """The request's loaders as they stood before anything but the current snapshot was read: for
        executing the request again from the start (a compiled plan's fallback, which then reads, and so
        answers, as it would have alone)."""
        cpl = self.cpl.afresh()
        return Loaders(cpl=cpl, catalogue=self.catalogue.afresh(cpl.current_snapshot_id))
