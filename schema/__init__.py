"""The GraphQL schemas (strawberry, Apollo Federation v2): the `cpl` and `cfl` subgraphs and the
combined graph that `/graphql` serves, all built from the same types.

Every field carries the subgraph that owns it in its `metadata` (see `schema/node.py`): `cpl`, `cfl`,
`both` (keys and ids) or `combined` (only on the single-node graph). A subgraph's schema keeps its own
fields and `both`; the combined schema keeps everything. Fields without a tag belong to types that only
one subgraph reaches, and are kept wherever their type is. Root fields must be tagged: a new root field
cannot land in a subgraph by accident.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.federation import Schema
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key
from strawberry.types import ExecutionContext, Info
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from cfl_graph.access.policy import AccessDenied
from cfl_graph.cursors import after_problem
from cfl_graph.errors import InvalidInput, Refusal
from schema.cpl import CplQuery
from schema.graph import CatalogueQuery
from schema.images import ImageMutation, ImageQuery
from schema.node import id_problem
from schema.protection import ArgumentChecks, QueryLimits, log_refusals, protection_extensions

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
# Refusals written for the client: shown with their code, logged at INFO.
USER_ERRORS: tuple[type[Exception], ...] = (AccessDenied, Refusal)
# Values no type of the schema describes: ids are ASCII, and cursors are what a list wrote.
ARGUMENT_CHECKS = ArgumentChecks(by_type={"ID": id_problem}, by_name={"after": after_problem})
# The longest value a representation's key field may hold (ids are 4 or 8 hex digits).
MAX_KEY_FIELD_LENGTH = 64


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

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Refusals at INFO without a traceback; the error masking logs the unexpected ones."""
        log_refusals(errors, USER_ERRORS)

    @functools.cached_property
    def entity_keys(self) -> Mapping[str, list[frozenset[str]]]:
        """Each entity type of this schema and the field sets of its keys."""
        found: dict[str, list[frozenset[str]]] = {}
        for name, type_ in self.schema_converter.type_map.items():
            directives = getattr(type_.definition, "directives", None) or ()
            keys = [frozenset(d.fields.split()) for d in directives if isinstance(d, Key)]
            if keys:
                found[name] = keys
        return found

    def entities_resolver(self, info: Info, representations: list[FederationAny]) -> list[FederationAny]:
        """Federation's `_entities`, with each representation checked first: an object naming an entity
        of this graph and holding exactly one of its keys, each key field text. A representation that is
        not is a `BAD_USER_INPUT` error at its place in the list; the others are resolved."""
        results: list[Any] = []
        for index, representation in enumerate(representations):
            problem = self._representation_problem(representation)
            if problem is None:
                results.extend(super().entities_resolver(info, [representation]))
            else:
                results.append(InvalidInput(f"representations[{index}]: {problem}"))
        return results

    def _representation_problem(self, representation: object) -> str | None:
        entities = ", ".join(sorted(self.entity_keys))
        if not isinstance(representation, dict):
            return f"a representation is an object with `__typename` ({entities}) and its key fields"
        typename = representation.get("__typename")
        keys = self.entity_keys.get(typename) if isinstance(typename, str) else None
        if "__typename" not in representation:
            return f"a representation names its type in `__typename` ({entities})"
        if keys is None:
            return f"`__typename` {str(typename)[:40]!r} is not an entity of this graph ({entities})"
        given = frozenset(representation) - {"__typename"}
        if given not in keys:
            wanted = " or ".join(", ".join(sorted(key)) for key in keys)
            missing = ", ".join(sorted(min(keys, key=len) - given))
            unknown = ", ".join(name[:40] for name in sorted(given - frozenset().union(*keys))[:5])
            found = "; ".join(
                [f"{missing} missing"] * bool(missing) + [f"{unknown} not among them"] * bool(unknown)
            )
            return f"a {typename} is found by {wanted}, exactly: {found}"
        for name in sorted(given):
            value = representation[name]
            if not isinstance(value, str) or len(value) > MAX_KEY_FIELD_LENGTH:
                return f"{typename}.{name} is text of at most {MAX_KEY_FIELD_LENGTH} characters"
        return None


def build_schema(limits: QueryLimits | None = None, graph: Graph = Graph.COMBINED) -> Schema:
    """One of the three schemas, with query limits and error masking; access and library refusals are
    shown to the client as they are."""
    return _Subgraph(
        graph,
        query=Query,
        mutation=None if graph is Graph.CPL else Mutation,
        extensions=protection_extensions(
            limits or QueryLimits(), user_errors=USER_ERRORS, argument_checks=ARGUMENT_CHECKS
        ),
        federation_version=FEDERATION_VERSION,
    )
