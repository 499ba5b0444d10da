"""DataLoaders: one batched SQL statement per entity kind per request, never one per row."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loaders.cpl import CplLoaders


@dataclass
class Loaders:
    cpl: CplLoaders

    @classmethod
    def for_request(cls, sessions: async_sessionmaker[AsyncSession]) -> Loaders:
        return cls(cpl=CplLoaders(sessions))
