"""Query limits, enforced before execution (R8): depth, aliases, root fields, page size, estimated cost
and document size, each refused with a specific message and code.

Cost model: every field costs 1; a field with a `first` argument (a connection or list) multiplies
the cost of everything below it by `first` (a literal, or the request's variable), or by the default
page size when `first` is not given; multipliers compound with nesting; fragments are expanded where
they are spread. Introspection fields (`__schema`, `__type`) are not counted: the schema bounds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension

# Stop walking a document that expands to more fields than any honest query has (fragment bombs).
MAX_EXPANDED_FIELDS = 100_000


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 30
    max_root_fields: int = 20
    max_cost: int = 50_000
    max_tokens: int = 5_000
    default_page_size: int = 50
    max_page_size: int = 500
    introspection: bool = True


@dataclass
class _Tally:
    depth: int = 0
    aliases: int = 0
    cost: int = 0
    visited: int = 0
    pages: list[tuple[str, int]] | None = None
    unknown_page: list[str] | None = None


def _error(message: str, code: str, node: Any = None) -> GraphQLError:
    return GraphQLError(message, nodes=node, extensions={"code": code})


def _limits_rule(limits: QueryLimits, variables: Mapping[str, Any]) -> type[ValidationRule]:
    class QueryLimitsRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments = {
                d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            schema = self.context.schema
            root = {
                OperationType.QUERY: schema.query_type,
                OperationType.MUTATION: schema.mutation_type,
                OperationType.SUBSCRIPTION: schema.subscription_type,
            }[node.operation]
            tally = _Tally(pages=[], unknown_page=[])
            roots = sum(1 for _ in self._fields(node.selection_set, set()))
            try:
                self._walk(node.selection_set, root, 1, 1, "", tally, frozenset())
            except _TooBig:
                self.report_error(
                    _error(
                        f"the query expands to more than {MAX_EXPANDED_FIELDS:,} fields",
                        "QUERY_TOO_COSTLY",
                        node,
                    )
                )
                return
            checks = [
                (
                    roots > limits.max_root_fields,
                    f"{roots:,} root fields exceed the limit of {limits.max_root_fields}",
                    "TOO_MANY_ROOT_FIELDS",
                ),
                (
                    tally.depth > limits.max_depth,
                    f"query depth {tally.depth} exceeds the limit of {limits.max_depth}",
                    "QUERY_TOO_DEEP",
                ),
                (
                    tally.aliases > limits.max_aliases,
                    f"{tally.aliases:,} aliases exceed the limit of {limits.max_aliases}",
                    "TOO_MANY_ALIASES",
                ),
            ]
            for failed, message, code in checks:
                if failed:
                    self.report_error(_error(message, code, node))
            for path, size in tally.pages or []:
                self.report_error(
                    _error(
                        f"first: {size} at {path} is outside 0-{limits.max_page_size}", "PAGE_TOO_LARGE", node
                    )
                )
            for path in tally.unknown_page or []:
                self.report_error(_error(f"first at {path} must be a whole number", "PAGE_TOO_LARGE", node))
            if tally.cost > limits.max_cost:
                self.report_error(
                    _error(
                        f"estimated cost {tally.cost:,} exceeds the limit of {limits.max_cost:,}; "
                        "ask for smaller pages or fewer nested lists",
                        "QUERY_TOO_COSTLY",
                        node,
                    )
                )

        def _fields(self, selections: SelectionSetNode, seen: set[str]) -> Iterator[FieldNode]:
            """The fields of one level, looking through fragments (each fragment once: cycles end here)."""
            for selection in selections.selections:
                if isinstance(selection, FieldNode):
                    yield selection
                elif isinstance(selection, InlineFragmentNode):
                    yield from self._fields(selection.selection_set, seen)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is not None and name not in seen:
                        seen.add(name)
                        yield from self._fields(fragment.selection_set, seen)

        def _page(self, field: FieldNode) -> int | str | None:
            for argument in field.arguments or ():
                if argument.name.value != "first":
                    continue
                value = argument.value
                if isinstance(value, IntValueNode):
                    return int(value.value)
                if isinstance(value, VariableNode):
                    given = variables.get(value.name.value)
                    return (
                        given
                        if isinstance(given, int) and not isinstance(given, bool)
                        else (None if given is None else "bad")
                    )
                return "bad"
            return None

        def _walk(
            self,
            selections: SelectionSetNode,
            parent: Any,
            depth: int,
            multiplier: int,
            path: str,
            tally: _Tally,
            spreading: frozenset[str],
        ) -> None:
            for field in self._fields(selections, set(spreading)):
                name = field.name.value
                if name.startswith("__"):
                    continue
                tally.visited += 1
                if tally.visited > MAX_EXPANDED_FIELDS:
                    raise _TooBig()
                if field.alias is not None:
                    tally.aliases += 1
                tally.depth = max(tally.depth, depth)
                tally.cost += multiplier
                here = f"{path}.{field.alias.value if field.alias else name}".lstrip(".")
                definition = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
                child_multiplier = multiplier
                if definition is not None and "first" in definition.args:
                    page = self._page(field)
                    if page == "bad":
                        assert tally.unknown_page is not None
                        tally.unknown_page.append(here)
                        page = limits.max_page_size
                    elif page is None:
                        page = limits.default_page_size
                    assert isinstance(page, int)
                    if not 0 <= page <= limits.max_page_size:
                        assert tally.pages is not None
                        tally.pages.append((here, page))
                        page = limits.max_page_size
                    child_multiplier = multiplier * max(page, 1)
                if field.selection_set is not None:
                    child = get_named_type(definition.type) if definition is not None else None
                    self._walk(
                        field.selection_set, child, depth + 1, child_multiplier, here, tally, spreading
                    )

    return QueryLimitsRule


class _TooBig(Exception):
    pass


def query_limits_extension(limits: QueryLimits) -> Callable[[], SchemaExtension]:
    """An extension factory for strawberry's Schema: one instance per request, seeing its variables."""

    class QueryLimitsExtension(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            context = self.execution_context
            context.parse_options["max_tokens"] = limits.max_tokens
            rules = [_limits_rule(limits, context.variables or {})]
            if not limits.introspection:
                rules.append(NoSchemaIntrospectionCustomRule)
            context.validation_rules = context.validation_rules + tuple(rules)
            yield

    return QueryLimitsExtension
