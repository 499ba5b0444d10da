"""Breaking changes caught before clients see them: what changed from an older client SDL (the last
release's, `schema/sdl/baseline/client.graphql`) to today's client graph, by graphql-core's
`find_breaking_changes` and `find_dangerous_changes`.

The policy (docs/graphql.md): a field, argument, input field or enum value is deprecated
(`@deprecated(reason:)`) in a release before it is removed or retyped. A breaking change to something
the older SDL already marks deprecated is a retirement, listed and allowed; any other breaking change
fails the check, until the baseline is moved on purpose. Dangerous changes (an enum value or an
optional argument added, a default changed) are listed and never fail it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    find_breaking_changes,
    find_dangerous_changes,
)
from graphql import build_schema as build_sdl

from cfl_graph.doors.graph import Graph, build_schema

# The first schema coordinate a change's description names: `Type.field` or `Type.field(argument:)`.
_COORDINATE = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?:\(([A-Za-z_]\w*):\))?")


class SdlUnreadable(Exception):
    """The older SDL cannot be read or built; says which file and why."""


@dataclass(frozen=True)
class Change:
    kind: str  # graphql-core's name of the change (FIELD_REMOVED, VALUE_ADDED_TO_ENUM, ...)
    description: str  # graphql-core's sentence, naming the schema coordinate
    deprecation: str | None = None  # the older SDL's deprecation reason of what changed, if any

    def __str__(self) -> str:
        said = f' (deprecated: "{self.deprecation}")' if self.deprecation else ""
        return f"{self.kind}: {self.description}{said}"


@dataclass(frozen=True)
class Comparison:
    breaking: list[Change]  # fail the check
    retired: list[Change]  # breaking changes to what was deprecated first: allowed
    dangerous: list[Change]

    @property
    def ok(self) -> bool:
        return not self.breaking

    def lines(self) -> list[str]:
        lines = []
        for title, changes in [
            ("breaking", self.breaking),
            ("removed or changed after deprecation", self.retired),
            ("dangerous", self.dangerous),
        ]:
            lines.append(f"{title}: {len(changes)}")
            lines.extend(f"  {change}" for change in changes)
        return lines


def read_sdl(path: Path) -> GraphQLSchema:
    try:
        return build_sdl(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SdlUnreadable(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SdlUnreadable(f"{path}: cannot be read (not UTF-8 text)") from None
    except (GraphQLError, TypeError) as exc:  # graphql-core reports an invalid SDL as a TypeError
        problems = list(dict.fromkeys(str(exc).split("\n\n")))  # one per line of the file; once each
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise SdlUnreadable(
            f"{path}: not a GraphQL schema graphql-core can build: {' '.join(problems[:3])}{more}"
        ) from None


def deprecation_of(schema: GraphQLSchema, description: str) -> str | None:
    """The deprecation reason, in `schema`, of the field, argument, input field or enum value a change's
    description names first; None if it names none, or what it names is not deprecated there."""
    found = _COORDINATE.search(description)
    if found is None:
        return None
    type_name, member, argument = found.groups()
    owner = schema.get_type(type_name)
    if isinstance(owner, GraphQLEnumType):
        value = owner.values.get(member)
        return value.deprecation_reason if value is not None and argument is None else None
    if not isinstance(owner, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
        return None
    field: GraphQLField | GraphQLInputField | None = owner.fields.get(member)
    if field is None:
        return None
    if argument is None:
        return field.deprecation_reason
    taken = field.args.get(argument) if isinstance(field, GraphQLField) else None  # input fields take none
    return taken.deprecation_reason if taken is not None else None


def check_against(path: Path) -> Comparison:
    """Today's client graph (what `/graphql` serves) against the older client SDL in `path`."""
    return compare(read_sdl(path), build_schema(graph=Graph.COMBINED)._schema)


def compare(old: GraphQLSchema, new: GraphQLSchema) -> Comparison:
    breaking: list[Change] = []
    retired: list[Change] = []
    for change in find_breaking_changes(old, new):
        reason = deprecation_of(old, change.description)
        (retired if reason else breaking).append(Change(change.type.name, change.description, reason))
    dangerous = [Change(change.type.name, change.description) for change in find_dangerous_changes(old, new)]
    return Comparison(breaking, retired, dangerous)
