"""What every resolver receives: who is asking, the request's loaders, and the image library."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from cfl_graph import clock
from cfl_graph.access.principal import Principal
from cfl_graph.images.library import ImageLibrary
from loaders import Loaders


@dataclass
class Context:
    principal: Principal | None
    loaders: Loaders
    library: ImageLibrary
    # For the few resolvers that call a service with a session (reports, diffs); reads go through loaders.
    sessions: async_sessionmaker[AsyncSession]
    # Sessions for reads alone, as the loaders' (`Database.reads`): a page of device models.
    reads: async_sessionmaker[AsyncSession]
    # When the request is answered: every field that tells the time says this one, however many times
    # (and by however many executors, cfl_graph/doors/graph/plans.py) the request is executed.
    now: dt.datetime = field(default_factory=clock.now)

    def afresh(self) -> None:
        """Before the request is executed again from the start (cfl_graph/doors/graph/plans.py): loaders
        that have read nothing but the current snapshot."""
        self.loaders = self.loaders.afresh()

    def release(self) -> None:
        """Once the answer is made: the request's reads are let go at once. graphql-core's executor, which
        holds this context, is a reference cycle of its own (its resolve-info helpers are its bound
        methods), so without this every row a page read would live on until the cyclic collector's next
        pass, and that pass would walk them all (`loaders/weak.py`). Loaders afresh hold nothing
        the request read."""
        self.afresh()


Info = StrawberryInfo[Context, None]
