"""The GraphQL schemas: the `cpl` and `cfl` subgraphs (Apollo Federation v2) and the combined graph
that `/graphql` serves to clients, all built from the same types.

Every field carries the subgraph that owns it in its `metadata` (see `cfl_graph/doors/graph/node.py`): `cpl`,
`cfl`,
`both` (keys and ids) or `combined` (only on the single-node graph). A subgraph's schema keeps its own
fields and `both`; the combined schema keeps everything. Fields without a tag belong to types that only
one subgraph reaches, and are kept wherever their type is. Root fields must be tagged: a new root field
cannot land in a subgraph by accident.

The combined graph is the clients' graph: a plain GraphQL schema, without federation's fields
(`_service`, `_entities`), types (`_Any`, `_Entity`, `_Service`, `link__*`) or directives (`@key`,
`@shareable`), which belong to the subgraph endpoints a federation router reads. Its SDL is printed by
graphql-core, so any GraphQL tool builds it as it is.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import strawberry
from graphql import GraphQLError, print_schema
from strawberry import Schema
from strawberry.federation import Schema as FederationSchema
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key
from strawberry.types import ExecutionContext, Info
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from cfl_graph.access.policy import AccessDenied
from cfl_graph.cursors import after_problem
from cfl_graph.doors.graph.cpl import CplQuery
from cfl_graph.doors.graph.graph import CatalogueQuery
from cfl_graph.doors.graph.images import ImageMutation, ImageQuery
from cfl_graph.doors.graph.node import id_problem
from cfl_graph.doors.graph.plans import PlanMode, executor_class
from cfl_graph.doors.graph.protection import ArgumentChecks, QueryLimits, log_refusals, protection_extensions
from cfl_graph.doors.graph.scalars import SCALAR_OVERRIDES
from cfl_graph.errors import InvalidInput, Refusal

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


class _Filtered(Schema):
    """A schema that keeps only the fields its graph owns (every field, on the combined graph)."""

    def __init__(self, graph: Graph, **kwargs: Any) -> None:
        self.graph = graph
        super().__init__(**kwargs)

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        kept = []
        for field in type_definition.fields:
            metadata: dict[str, Any] = dict(field.metadata or {})
            owner = metadata.get("subgraph")
            if owner is None:
                # Federation's own root fields (`_service`, `_entities`) belong to every subgraph.
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


class _ClientGraph(_Filtered):
    """The combined graph, for clients: plain GraphQL. The types carry federation's directives for the
    subgraphs (`@key`, `@shareable`); this schema neither serves nor prints them."""

    def __init__(self, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            # strawberry warns that the types carry federation directives: on purpose, for the subgraphs.
            warnings.filterwarnings("ignore", "Federation directive found in schema", UserWarning)
            super().__init__(Graph.COMBINED, **kwargs)

    def _collect_schema_directives(self, explicit: Any, graphql_types: Any) -> list[type]:
        """None: the directives the types carry (`@key`, `@shareable`) are the subgraphs', so neither
        they nor their argument types (`_FieldSet`) join this schema."""
        self._schema_directives_in_use = []
        self._schema_graphql_directives = {}
        return []

    def as_str(self) -> str:
        """The SDL as graphql-core prints it: no applied directive but `@deprecated` and `@specifiedBy`,
        so graphql-js `buildSchema`, Code Generator and schema linters read it without definitions."""
        return print_schema(self._schema)

    __str__ = as_str


class _Subgraph(_Filtered, FederationSchema):
    """A federation subgraph: its own fields, `_service` and `_entities` with checked representations."""

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


def build_schema(
    limits: QueryLimits | None = None, graph: Graph = Graph.COMBINED, plans: PlanMode = PlanMode.ON
) -> Schema:
    """One of the three schemas, with query limits and error masking; access and library refusals are
    shown to the client as they are. Queries run from compiled plans unless `plans` is off."""
    extensions = protection_extensions(
        limits or QueryLimits(), user_errors=USER_ERRORS, argument_checks=ARGUMENT_CHECKS
    )
    schema: Schema
    if graph is Graph.COMBINED:
        schema = _ClientGraph(
            query=Query, mutation=Mutation, extensions=extensions, scalar_overrides=dict(SCALAR_OVERRIDES)
        )
    else:
        schema = _Subgraph(
            graph,
            query=Query,
            mutation=None if graph is Graph.CPL else Mutation,
            extensions=extensions,
            scalar_overrides=dict(SCALAR_OVERRIDES),
            federation_version=FEDERATION_VERSION,
        )
    # Resolvers are called directly only where strawberry would call them bare: no exception handler.
    handlers = getattr(schema.schema_converter, "_exception_handler_specs", True)
    schema.execution_context_class = executor_class(plans, direct_calls=not handlers)
    return schema
