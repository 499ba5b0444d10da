"""What every resolver receives: who is asking, the request's loaders, and the image library."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from cfl_graph.access.principal import Principal
from cfl_graph.images.library import ImageLibrary
from cfl_graph.loaders import Loaders


@dataclass
class Context:
    principal: Principal | None
    loaders: Loaders
    library: ImageLibrary
    # For the few resolvers that call a service with a session (reports, diffs); reads go through loaders.
    sessions: async_sessionmaker[AsyncSession]


Info = StrawberryInfo[Context, None]
