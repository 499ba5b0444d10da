"""What the web handlers reach the domain through: built once by the composition root (`app.py`) and
kept on the application, so every handler is a plain module-level function of its request, as
Starlette's own code is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from cfl_graph.images.library import ImageLibrary

if TYPE_CHECKING:
    from cfl_graph.doors.web.catalogue import SignedCatalogue


@dataclass(frozen=True)
class Services:
    sessions: async_sessionmaker[AsyncSession]
    library: ImageLibrary
    catalogue: SignedCatalogue
    # The feeds' links start with this (`CFL_PUBLIC_BASE_URL`), or are relative to the site when it is
    # empty: never built from the request's Host header, which the client writes.
    public_base_url: str


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found
