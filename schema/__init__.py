"""The GraphQL schema (strawberry, Apollo Federation v2)."""

from __future__ import annotations

import strawberry
from strawberry.federation import Schema

from schema.cpl import CplQuery
from schema.errors import MaskUnexpectedErrors
from schema.limits import QueryLimits, query_limits_extension


@strawberry.type
class Query(CplQuery):
    pass


def build_schema(limits: QueryLimits | None = None) -> Schema:
    return Schema(
        query=Query, extensions=[query_limits_extension(limits or QueryLimits()), MaskUnexpectedErrors]
    )
