"""The GraphQL schema (strawberry, Apollo Federation v2)."""

from __future__ import annotations

import strawberry
from strawberry.federation import Schema

from cfl_graph.access.policy import AccessDenied
from cfl_graph.images.errors import LibraryError
from schema.cpl import CplQuery
from schema.images import ImageMutation, ImageQuery
from schema.protection import QueryLimits, protection_extensions


@strawberry.type
class Query(CplQuery, ImageQuery):
    pass


@strawberry.type
class Mutation(ImageMutation):
    pass


def build_schema(limits: QueryLimits | None = None) -> Schema:
    """The combined schema, with query limits and error masking; access refusals pass through."""
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=protection_extensions(limits or QueryLimits(), user_errors=(AccessDenied, LibraryError)),
    )
