"""The GraphQL schemas (strawberry, Apollo Federation v2): the `cpl` and `cfl` subgraphs and the
combined graph that `/graphql` serves, all built from the same types.

Every field carries the subgraph that owns it in its `metadata` (see `schema/node.py`): `cpl`, `cfl`,
`both` (keys and ids) or `combined` (only on the single-node graph). A subgraph's schema keeps its own
fields and `both`; the combined schema keeps everything. Fields without a tag belong to types that only
one subgraph reaches, and are kept wherever their type is. Root fields must be tagged: a new root field
cannot land in a subgraph by accident.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import strawberry
from strawberry.federation import Schema
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from cfl_graph.access.policy import AccessDenied
from cfl_graph.images.errors import LibraryError
from schema.cpl import CplQuery
from schema.graph import CatalogueQuery
from schema.images import ImageMutation, ImageQuery
from schema.protection import QueryLimits, protection_extensions

FEDERATION_VERSION = "2.5"


class Graph(StrEnum):
    COMBINED = "combined"
    CPL = "cpl"
    CFL = "cfl"


@strawberry.type
class Query(CplQuery, CatalogueQuery, ImageQuery):
    pass


@strawberry.type
class Mutation(ImageMutation):
    pass


_ROOTS = {"Query", "Mutation"}


class _Subgraph(Schema):
    """A federation schema that keeps only the fields its subgraph owns."""

    def __init__(self, graph: Graph, **kwargs: Any) -> None:
        self.graph = graph
        super().__init__(**kwargs)

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        kept = []
        for field in type_definition.fields:
            metadata: dict[str, Any] = dict(field.metadata or {})
            owner = metadata.get("subgraph")
            if owner is None:
                # Federation's own root fields (`_service`, `_entities`) belong to every schema.
                if type_definition.name in _ROOTS and not field.name.startswith("_"):
                    raise TypeError(f"root field {type_definition.name}.{field.name} names no subgraph")
                kept.append(field)
            elif self.graph is Graph.COMBINED or owner in (self.graph.value, "both"):
                kept.append(field)
        return kept


def build_schema(limits: QueryLimits | None = None, graph: Graph = Graph.COMBINED) -> Schema:
    """One of the three schemas, with query limits and error masking; access and library refusals are
    shown to the client as they are."""
    return _Subgraph(
        graph,
        query=Query,
        mutation=None if graph is Graph.CPL else Mutation,
        extensions=protection_extensions(limits or QueryLimits(), user_errors=(AccessDenied, LibraryError)),
        federation_version=FEDERATION_VERSION,
    )
