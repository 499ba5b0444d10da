"""Who is asking: the party behind a verified token, as every door (GraphQL, HTTP, CLI, pages) sees it."""

from __future__ import annotations

from dataclasses import dataclass

from cfl_graph.tables.access import Role


@dataclass(frozen=True)
class Principal:
    party_id: int
    party_name: str
    role: Role
    manufacturer_ids: frozenset[str]
    read_only: bool
    download_granted: bool
    token_public_id: str | None = None
