"""The GraphQL schema (strawberry, Apollo Federation v2)."""

from __future__ import annotations

import strawberry
from strawberry.federation import Schema

from schema.cpl import CplQuery
from schema.errors import MaskUnexpectedErrors


@strawberry.type
class Query(CplQuery):
    pass


def build_schema() -> Schema:
    return Schema(query=Query, extensions=[MaskUnexpectedErrors])
