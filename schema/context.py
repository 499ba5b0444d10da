"""What every resolver receives: the request's loaders."""

from __future__ import annotations

from dataclasses import dataclass

from strawberry.types import Info as StrawberryInfo

from cfl_graph.access.principal import Principal
from loaders import Loaders


@dataclass
class Context:
    principal: Principal | None
    loaders: Loaders


Info = StrawberryInfo[Context, None]
