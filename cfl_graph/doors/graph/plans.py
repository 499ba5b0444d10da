"""Execution plans: a query's answer written by walking a plan compiled once per document, instead of
graphql-core's general executor resolving every field through the same generic steps (issue 17).

graphql-core, for each field of each object, builds a resolve info and a path, looks the field up,
coerces its arguments, calls strawberry's resolver wrapper (which converts arguments and builds an
`Info`), then completes the value by dispatching on its type. A page of 100 device models and their
1,000 versions is about 12,000 such fields. A plan does the type-level work once, when it is compiled
from the selection set (fragments, aliases and `@include`/`@skip` resolved, fields grouped as
graphql-core groups them, completion chosen per return type), and per object does only what the
object needs:

- a field without a resolver reads its attribute with strawberry's default resolver (`BASIC`);
- a field whose resolver takes no GraphQL argument is called directly with an `Info` that builds its
  graphql-core resolve info only if the resolver looks at it (`DIRECT`);
- any other field (arguments, field extensions, introspection) goes through its own resolver, with a
  resolve info and arguments coerced exactly as graphql-core does it (`GENERAL`).

The plan answers exactly as the reference executor does, or not at all: anything it is not built for
(a mutation, `@defer`, middleware, fragment arguments) runs the reference executor, and so does any
request during which anything goes wrong (an error raised in a subtree, a refusal, a null in a
non-null field): the plan's partial work is dropped and graphql-core executes the request from the
start, so errors, their paths and the nulls they leave are graphql-core's own. It starts with loaders
that have read nothing but the current snapshot (a context's `afresh`), as it would alone: which of two
failing root fields graphql-core reports depends on which had to wait for a read. Such a request reads
again what the plan had read; it is one that fails, or one of a shape the plans are not built for.

`PlanMode.CHECK` runs both on every query and fails the request if their answers differ by a byte;
the test suite runs in that mode (tests/graph/test_plans.py, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from keyword import iskeyword
from operator import attrgetter
from typing import Any

from graphql import (
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    OperationType,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetails, collect_fields, collect_subfields
from graphql.execution.executor import CollectedErrors
from graphql.execution.values import get_argument_values
from graphql.language import DirectiveNode, FieldNode, OperationDefinitionNode, VariableNode, visit
from graphql.language.visitor import Visitor
from graphql.pyutils import Path, Undefined, is_iterable
from graphql.type.introspection import TypeNameMetaFieldDef
from graphql.type.scalars import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    serialize_boolean,
    serialize_id,
    serialize_int,
    serialize_string,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.schema.types.base_scalars import isoformat as strawberry_isoformat
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE as _TYPE_CAST
from strawberry.types.field import StrawberryField
from strawberry.types.info import Info

from cfl_graph.bounded import Bounded

log = logging.getLogger(__name__)

CHECK_ATTEMPTS = 3  # in CHECK mode, executions of both before a difference counts (data may move between)
PLAN_CACHE_ENTRIES = 500  # compiled plans kept per process (an LRU), keyed by document and operation
STRAWBERRY_FIELD = "strawberry-definition"  # where strawberry keeps its field on a GraphQLField
STRAWBERRY_TYPE = GraphQLCoreConverter.DEFINITION_BACKREF  # and its type on a GraphQLObjectType


class PlanMode(StrEnum):
    ON = "on"  # plans answer what they can; the reference executor the rest
    OFF = "off"  # graphql-core's executor answers everything
    CHECK = "check"  # both answer every query, and a difference fails the request (tests)


_COMPARING: ContextVar[bool] = ContextVar("cfl_graph_plans_comparing", default=True)


@contextmanager
def without_comparison() -> Iterator[None]:
    """Within this block `CHECK` answers from the plan alone, as `ON` does: for a test that counts the
    statements one answer costs, which a second execution would add to."""
    token = _COMPARING.set(False)
    try:
        yield
    finally:
        _COMPARING.reset(token)


class PlanMismatch(AssertionError):
    """The plan and the reference executor answered a query differently: a bug in the plans."""


class _Bail(Exception):
    """The plan cannot answer this request as the reference executor would; the reference answers."""


class Kind(IntEnum):
    TYPENAME = 0
    BASIC = 1
    READ = 2  # its reader first, the direct call when the reader cannot tell
    DIRECT = 3
    GENERAL = 4


# A field may say how its value is read from the object at hand (its `metadata[READ]`: a function of the
# object returning the value the resolver would, or UNREAD when only the resolver can tell, such as a
# fact not loaded with the object). A plan then calls the resolver only for UNREAD.
READ = "cfl_graph.plans.read"


class _Unread:
    def __repr__(self) -> str:
        return "UNREAD"


UNREAD: Any = _Unread()


@dataclass(frozen=True)
class RowFact:
    """A `READ` that is one attribute of a row the object holds (`holder`), which a plan's walker reads
    inline instead of calling a reader and its pick for every object (a page reads thousands). As a
    function of the object it is the field's reader: UNREAD where the holder is `unloaded` (the row was
    not read with the object), null where it is None, else `pick` of the row. `pick` is the column's
    value; with `enum`, its member looked up by value (the enum's own error for a value it lacks); with
    `convert`, the value made into the field's object (null stays null); with `present`, whether the
    value is there at all. The field's resolver uses the same `pick`."""

    holder: str
    column: str
    unloaded: type
    enum: type[Enum] | None = None
    convert: Callable[[Any], Any] | None = None
    present: bool = False
    members: Mapping[Any, Enum] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if sum((self.enum is not None, self.convert is not None, self.present)) > 1:
            raise ValueError("a row fact is a column, a member, a conversion or a presence, not two")
        for name in (self.holder, self.column):
            if not name.isidentifier() or iskeyword(name):
                raise ValueError(f"a row fact reads attributes by name: {name!r} is not one")
        members = {} if self.enum is None else {member.value: member for member in self.enum}
        object.__setattr__(self, "members", members)

    def pick(self, row: Any) -> Any:
        value = getattr(row, self.column)
        if self.present:
            return value is not None
        if self.enum is not None:
            member = self.members.get(value)
            return self.enum(value) if member is None else member
        if self.convert is not None and value is not None:
            return self.convert(value)
        return value

    def __call__(self, entity: Any) -> Any:
        held = getattr(entity, self.holder)
        if isinstance(held, self.unloaded):
            return UNREAD
        return None if held is None else self.pick(held)


# --- compiling -------------------------------------------------------------------------------------

Complete = Callable[["_Run", Any, "_Site"], Any]


@dataclass(eq=False)
class FieldPlan:
    """One response key of one object type: how its value is found, and how it is completed."""

    key: str
    kind: Kind
    parent_type: GraphQLObjectType
    field_def: GraphQLField
    details: list[FieldDetails]
    nodes: list[FieldNode]
    complete: Complete = field(repr=False)
    python_name: str = ""
    default_resolver: Callable[[Any, str], Any] | None = None
    strawberry_field: StrawberryField | None = None
    call: Callable[..., Any] | None = None
    read: Callable[[Any], Any] | None = None
    passes_self: bool = False
    info_name: str | None = None
    source_names: tuple[str, ...] = ()
    needs_site: bool = True  # whether completing the value needs the field's path and resolve info
    # A field read straight off the object (`_read_inline`): how it is read, whether it may be null, and
    # for a leaf how its value is coerced.
    reader: Callable[[Any], Any] | None = None
    row_fact: RowFact | None = None  # a reader that is a column of a row the object holds: read inline
    nullable: bool = True
    coerce: Callable[[Any], Any] | None = None


# One object's fields read and completed (`_walker`): their dict, or its awaitable. The object's path is
# its parent's path and, for a list's item, its index: the path itself is built only where a field needs
# it (an error's, a resolver's), not for every item of a list.
Walk = Callable[["_Run", Any, Path | None, int | None], Any]


@dataclass(eq=False)
class Plan:
    walk: Walk  # the operation's root fields, on the root value


class _Compiler:
    """Compiles the plan of one operation, as graphql-core would collect its fields for these
    variables (only those `@include`/`@skip` read decide the plan, and key its cache)."""

    def __init__(self, executor: PlannedExecutor, direct_calls: bool) -> None:
        self.executor = executor
        self.direct_calls = direct_calls

    def root(self, root_type: GraphQLObjectType, operation: OperationDefinitionNode) -> list[FieldPlan]:
        executor = self.executor
        collected = collect_fields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            root_type,
            operation,
            executor.hide_suggestions,
        )
        return self.fields(root_type, collected)

    def subfields(self, object_type: GraphQLObjectType, details: list[FieldDetails]) -> list[FieldPlan]:
        executor = self.executor
        collected = collect_subfields(
            executor.schema,
            executor.fragments,
            executor.variable_values,
            executor.operation,
            object_type,
            details,
            executor.hide_suggestions,
        )
        return self.fields(object_type, collected)

    def fields(self, parent_type: GraphQLObjectType, collected: Any) -> list[FieldPlan]:
        grouped, new_defer_usages, _forbidden = collected
        if new_defer_usages:
            raise _Bail("@defer")
        return [self.field(parent_type, key, details) for key, details in grouped.items()]

    def field(self, parent_type: GraphQLObjectType, key: str, details: list[FieldDetails]) -> FieldPlan:
        if any(d.fragment_variable_values is not None or d.defer_usage is not None for d in details):
            raise _Bail("fragment arguments or @defer")
        node = details[0].node
        field_def = self.executor.schema.get_field(parent_type, node.name.value)
        if field_def is None:  # validation let through a field the type lacks: the reference says why
            raise _Bail(f"no field {parent_type.name}.{node.name.value}")
        nodes = [d.node for d in details]
        complete = self.completion(field_def.type, details)
        plan = FieldPlan(key, Kind.GENERAL, parent_type, field_def, details, nodes, complete)
        plan.needs_site = not _is_leaf_completion(field_def.type)
        if field_def is TypeNameMetaFieldDef:
            plan.kind = Kind.TYPENAME
            return plan
        strawberry_field = (field_def.extensions or {}).get(STRAWBERRY_FIELD)
        if not isinstance(strawberry_field, StrawberryField):
            return plan  # graphql-core's own (introspection): GENERAL
        plan.strawberry_field = strawberry_field
        if getattr(field_def.resolve, "_is_default", False) and not field_def.args:
            plan.kind = Kind.BASIC
            plan.python_name = strawberry_field.python_name
            plan.default_resolver = strawberry_field.default_resolver
        elif self.direct_calls and _directly_callable(strawberry_field, field_def):
            resolver = strawberry_field.base_resolver
            assert resolver is not None
            read = dict(strawberry_field.metadata or {}).get(READ)
            plan.kind = Kind.DIRECT if read is None else Kind.READ
            plan.read = read
            plan.row_fact = read if isinstance(read, RowFact) else None
            plan.call = resolver  # its __call__, exactly as strawberry calls it
            plan.passes_self = resolver.self_parameter is not None
            plan.info_name = None if resolver.info_parameter is None else resolver.info_parameter.name
            plan.source_names = tuple(
                parameter.name
                for parameter in (resolver.parent_parameter, resolver.root_parameter)
                if parameter is not None
            )
        _read_inline(plan)
        return plan

    def completion(self, type_: GraphQLOutputType, details: list[FieldDetails]) -> Complete:
        """How a value of this type is completed, decided once (graphql-core decides it per value)."""
        if is_non_null_type(type_):
            assert isinstance(type_, GraphQLNonNull)
            if is_leaf_type(type_.of_type):  # the commonest field of all, in one step
                return _leaf(type_.of_type, nullable=False)
            return _non_null(self.completion(type_.of_type, details))
        if is_list_type(type_):
            assert isinstance(type_, GraphQLList)
            item_type = type_.of_type
            object_type = item_type.of_type if is_non_null_type(item_type) else item_type
            if is_object_type(object_type):  # a list of objects, each completed in the list's own loop
                assert isinstance(object_type, GraphQLObjectType)
                fields = self.subfields(object_type, details)
                return _nullable(
                    _object_list(object_type, fields, item_nullable=not is_non_null_type(item_type))
                )
            return _nullable(_list(self.completion(item_type, details)))
        if is_leaf_type(type_):
            assert isinstance(type_, GraphQLLeafType)
            return _leaf(type_, nullable=True)
        if is_abstract_type(type_):
            assert isinstance(type_, GraphQLAbstractType)
            return _nullable(_abstract(type_, details, self))
        if is_object_type(type_):
            assert isinstance(type_, GraphQLObjectType)
            return _nullable(_object(type_, self.subfields(type_, details)))
        raise _Bail(f"an output type the plans do not know: {type_}")


def _read_inline(plan: FieldPlan) -> None:
    """Marks a field whose value is read from the object alone, without an `Info` (a plain attribute, a
    `READ`, a resolver of the object alone such as `id`): its object's walker reads it without the
    general steps, completing inline a null or, for a leaf, a plain value; anything else is completed
    from the value read, as `execute_field` would."""
    if plan.kind is Kind.BASIC and plan.default_resolver is getattr:
        plan.reader = attrgetter(plan.python_name)
    elif plan.kind is Kind.READ:
        plan.reader = plan.read
    elif (
        plan.kind is Kind.DIRECT
        and plan.passes_self
        and plan.info_name is None
        and not plan.source_names
        and plan.call is not None
    ):
        plan.reader = plan.call  # its resolver wants the object and nothing else (`id`)
    else:
        return
    type_ = plan.field_def.type
    plan.nullable = not is_non_null_type(type_)
    leaf = type_ if plan.nullable else type_.of_type  # type: ignore[union-attr]
    if is_leaf_type(leaf):
        plan.coerce = _enum_names(leaf) or leaf.coerce_output_value


def _enum_members(type_: GraphQLLeafType) -> tuple[type[Enum], dict[Any, Any]] | None:
    """For a strawberry enum, its Python enum and each member's name as the enum's own coercion gives it
    (found once per member: strawberry compares a member with every value of the enum, each time)."""
    wrapped = getattr(type_, "wrapped_cls", None)
    if not isinstance(wrapped, type) or not issubclass(wrapped, Enum):
        return None
    coerce = type_.coerce_output_value
    return wrapped, {member: coerce(member) for member in wrapped}


def _enum_names(type_: GraphQLLeafType) -> Callable[[Any], Any] | None:
    """For a strawberry enum, its coercion with each member's name looked up instead of searched for;
    any other value is coerced by the enum as before."""
    members = _enum_members(type_)
    if members is None:
        return None
    wrapped, names = members
    coerce = type_.coerce_output_value

    def coerce_member(value: Any) -> Any:
        if value.__class__ is wrapped:
            return names[value]
        return coerce(value)

    return coerce_member


# Values a leaf field completes inline: what a resolver of a plain fact returns. Anything else (an
# awaitable, an error, a value of another type) is completed the general way.
_PLAIN = frozenset({str, int, float, bool, dt.date, dt.datetime})


def _is_leaf_completion(type_: GraphQLOutputType) -> bool:
    while is_non_null_type(type_):
        type_ = type_.of_type
    return is_leaf_type(type_)


def _directly_callable(strawberry_field: StrawberryField, field_def: GraphQLField) -> bool:
    """A resolver strawberry would call with nothing but its source and its info: no GraphQL argument to
    convert, no field extension (permissions are extensions) to run around it."""
    resolver = strawberry_field.base_resolver
    if resolver is None or strawberry_field.extensions or field_def.args:
        return False
    return len(resolver.arguments) == 0


# --- completions -----------------------------------------------------------------------------------


def _nullable(inner: Complete) -> Complete:
    def complete(run: _Run, value: Any, site: _Site) -> Any:
        if not _present(value, nullable=True):
            return None
        return inner(run, value, site)

    return complete


def _present(value: Any, *, nullable: bool) -> bool:
    """Whether a field's value is there to complete: False for a null where a null may stand; a null where
    none may, or an error a resolver returned, is for the reference executor to report."""
    if value is None or value is Undefined:
        if nullable:
            return False
        raise _Bail("null in a non-null field")
    if isinstance(value, Exception):
        raise _Bail("a resolver returned an error")
    return True


def _non_null(inner: Complete) -> Complete:
    def complete(run: _Run, value: Any, site: _Site) -> Any:
        if isinstance(value, Exception):
            raise _Bail("a resolver returned an error")
        completed = inner(run, value, site)
        if completed is None:
            raise _Bail("null in a non-null field")
        if run.is_awaitable(completed):
            return _checked_non_null(completed)
        return completed

    return complete


async def _checked_non_null(completed: Awaitable[Any]) -> Any:
    value = await completed
    if value is None:
        raise _Bail("null in a non-null field")
    return value


def _leaf(type_: GraphQLLeafType, *, nullable: bool) -> Complete:
    """A scalar or enum, coerced for output; null, in a non-null field, or a value that does not coerce
    is an error the reference executor reports."""
    coerce = type_.coerce_output_value

    def complete(run: _Run, value: Any, site: _Site) -> Any:
        if not _present(value, nullable=nullable):
            return None
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Bail("a leaf value that does not coerce")
        return coerced

    return complete


def _list(item: Complete) -> Complete:
    def complete(run: _Run, value: Any, site: _Site) -> Any:
        if run.is_async_iterable(value) or not is_iterable(value):
            raise _Bail("not a list, or an async iterable")
        is_awaitable = run.is_awaitable
        completed: list[Any] = []
        pending: list[int] = []
        for index, entry in enumerate(value):
            if is_awaitable(entry):
                raise _Bail("an awaitable list item")
            done = item(run, entry, site.item(index))  # a null item: null, or refused if non-null
            if is_awaitable(done):
                pending.append(index)
            completed.append(done)
        if not pending:
            return completed
        return _settle_list(completed, pending)

    return complete


async def _settle_list(completed: list[Any], pending: list[int]) -> list[Any]:
    settled = await _gather(completed[index] for index in pending)
    for index, value in zip(pending, settled, strict=True):
        completed[index] = value
    return completed


def _object_list(object_type: GraphQLObjectType, fields: list[FieldPlan], *, item_nullable: bool) -> Complete:
    """A list of objects of one type (a page's edges, a model's versions): each item completed as
    `_object` completes it, in the list's own loop, without a site or a wrapper call per item. An item of
    the type's own class (`_plain_class`) needs none of the checks: it is there, not awaitable, and of
    the type."""
    check_type = _type_check(object_type)
    walk = _walker(object_type, fields)
    plain = _plain_class(object_type)

    def complete(run: _Run, value: Any, site: _Site) -> Any:
        if run.is_async_iterable(value) or not is_iterable(value):
            raise _Bail("not a list, or an async iterable")
        is_awaitable = run.is_awaitable
        path = site.path()
        completed: list[Any] = []
        pending: list[int] = []
        for index, entry in enumerate(value):
            if (
                entry.__class__ is plain
                and _TYPE_CAST not in (attributes := entry.__dict__)
                and "__await__" not in attributes
            ):
                done = walk(run, entry, path, index)
                if done.__class__ is not dict and is_awaitable(done):
                    pending.append(index)
                completed.append(done)
                continue
            if is_awaitable(entry):
                raise _Bail("an awaitable list item")
            if not _present(entry, nullable=item_nullable):
                completed.append(None)
                continue
            if check_type is not None:
                check_type(run, entry, site)
            done = walk(run, entry, path, index)
            if is_awaitable(done):  # an object's fields, never null: nothing for a non-null item to check
                pending.append(index)
            completed.append(done)
        if not pending:
            return completed
        return _settle_list(completed, pending)

    return complete


class _NoClass:
    """No value is of this class: the type has no plain class (`_plain_class`)."""


def _plain_class(object_type: GraphQLObjectType) -> type:
    """The class whose instances the type's checks all pass, so that a list's item of it needs none: the
    strawberry type's own class, when its `is_type_of` is strawberry's (an isinstance check, here of an
    exact class, unless the instance carries a strawberry cast) and its instances are neither awaitable
    nor errors (`_present`). An item's own `__await__` attribute or cast is looked for in the loop."""
    definition = (object_type.extensions or {}).get(STRAWBERRY_TYPE)
    origin = getattr(definition, "origin", None)
    is_type_of = object_type.is_type_of
    if (
        not isinstance(origin, type)
        or (is_type_of is not None and not _ignores_info(is_type_of))
        or issubclass(origin, BaseException)
        or hasattr(origin, "__await__")
        or hasattr(origin, _TYPE_CAST)
        or not origin.__dictoffset__  # no instance dict: the item's own attributes cannot be looked at
    ):
        return _NoClass
    return origin


def _object(object_type: GraphQLObjectType, fields: list[FieldPlan]) -> Complete:
    check_type = _type_check(object_type)
    walk = _walker(object_type, fields)

    def complete(run: _Run, value: Any, site: _Site) -> Any:
        if check_type is not None:
            check_type(run, value, site)
        return walk(run, value, site.path(), None)

    return complete


def _type_check(object_type: GraphQLObjectType) -> Callable[[_Run, Any, _Site], None] | None:
    """The object type's `is_type_of`, run on a value as the reference executor runs it (None when the type
    has none); a value it refuses, or a verdict given asynchronously, is for the reference to report."""
    is_type_of = object_type.is_type_of
    if is_type_of is None:
        return None
    reads_info = not _ignores_info(is_type_of)

    def check(run: _Run, value: Any, site: _Site) -> None:
        verdict = is_type_of(value, site.info() if reads_info else None)  # type: ignore[arg-type]
        if run.is_awaitable(verdict) or not verdict:
            raise _Bail("is_type_of refused the value, or is asynchronous")

    return check


def _ignores_info(is_type_of: Callable[..., Any]) -> bool:
    """Whether this is strawberry's own `is_type_of` (an isinstance check whose info parameter, `_info`,
    it never reads): then no resolve info is built for it, once per object."""
    code = getattr(is_type_of, "__code__", None)
    return (
        getattr(is_type_of, "__module__", None) == "strawberry.schema.schema_converter"
        and code is not None
        and code.co_varnames[1:2] == ("_info",)
    )


def _abstract(type_: GraphQLAbstractType, details: list[FieldDetails], compiler: _Compiler) -> Complete:
    """An interface or union: the selection compiled for each of its possible types with the rest of the
    plan; a runtime type outside them (or one resolved asynchronously) makes the reference answer."""
    by_type: dict[str, Complete] = {}
    schema = compiler.executor.schema
    for possible in schema.get_possible_types(type_):
        by_type[possible.name] = _object(possible, compiler.subfields(possible, details))

    def complete(run: _Run, value: Any, site: _Site) -> Any:
        resolve_type = type_.resolve_type or run.executor.type_resolver
        runtime = resolve_type(value, site.info(), type_)
        if run.is_awaitable(runtime) or not isinstance(runtime, str) or runtime not in by_type:
            raise _Bail("a runtime type the plan cannot complete")
        return by_type[runtime](run, value, site)

    return complete


# --- walkers ---------------------------------------------------------------------------------------
#
# An object's fields are read and completed by a function written for its selection, once per plan
# (graphql-jit's idea): a field read off the object is a few lines of its own, and its leaf's commonest
# value (a `str` for a String, a member for an enum) is answered where it is read; anything else takes
# the general steps (`_Run.execute_field`, `_finish_read`). Nothing from the request is written into the
# source but the response keys, as Python string literals (`repr` of a GraphQL name) and attribute names
# that are identifiers; every other value the function uses is a name bound in its namespace.

# The values a built-in scalar's output coercion returns as they are: (the test, what is answered).
_AS_IS: dict[Callable[[Any], Any], tuple[str, str]] = {
    serialize_string: ("value.__class__ is str", "value"),
    serialize_id: ("value.__class__ is str", "value"),
    serialize_boolean: ("value.__class__ is bool", "value"),
    serialize_int: (f"value.__class__ is int and {GRAPHQL_MIN_INT} <= value <= {GRAPHQL_MAX_INT}", "value"),
    # strawberry's Date (and DateTime, whose values are not of the class `date`: they are coerced)
    strawberry_isoformat: ("value.__class__ is date", "(DATES.get(value) or _iso_date(value))"),
}


# Dates as strawberry's Date writes them (`isoformat`), kept: `date.isoformat` formats with printf, a few
# thousand instructions a call, and a page's versions share a few hundred dates. Emptied when full.
_ISO_DATES: dict[dt.date, str] = {}
ISO_DATES_KEPT = 20_000


def _iso_date(value: dt.date) -> str:
    text = value.isoformat()
    if len(_ISO_DATES) >= ISO_DATES_KEPT:
        _ISO_DATES.clear()
    _ISO_DATES[value] = text
    return text


def _walker(parent_type: GraphQLObjectType, fields: Sequence[FieldPlan]) -> Walk:
    """The walk of these fields on an object of `parent_type`: as `_Run.execute_field` would answer each
    in turn, their awaitables settled together, and any started left to finish when one fails."""
    namespace: dict[str, Any] = {
        "_Bail": _Bail,
        "_finish_read": _finish_read,
        "_settle_fields": _settle_fields,
        "_settle_in_background": _settle_in_background,
        "date": dt.date,
        "DATES": _ISO_DATES,
        "_iso_date": _iso_date,
        "Path": Path,
    }
    # Each row the object holds for its `RowFact`s is read, and checked as at hand, once per object, not
    # once per fact (a page's version holds its CPL row for four facts, its library's for two).
    holders: dict[tuple[str, type], int] = {}
    for plan in fields:
        if plan.row_fact is not None:
            holders.setdefault((plan.row_fact.holder, plan.row_fact.unloaded), len(holders))
    body: list[str] = []
    for (holder, unloaded), number in holders.items():
        namespace[f"HU{number}"] = unloaded
        body += [
            f"H{number} = source.{holder}",
            f"A{number} = H{number} is not None and not isinstance(H{number}, HU{number})",
        ]
    for index, plan in enumerate(fields):
        namespace[f"P{index}"] = plan
        body += _field_source(plan, index, namespace, holders)
    source = "\n".join(
        [
            "def walk(run, source, parent, index):",
            "    results = {}",
            "    pending = []",
            "    is_awaitable = run.is_awaitable",
            "    try:",
            *(f"        {line}" for line in body or ["pass"]),
            "    except Exception:",
            "        _settle_in_background(results[key] for key in pending)",
            "        raise",
            "    if not pending:",
            "        return results",
            "    return _settle_fields(results, pending)",
        ]
    )
    exec(compile(source, f"<plan walk of {parent_type.name}>", "exec"), namespace)  # noqa: S102
    walk: Walk = namespace["walk"]
    return walk


# The object's path, where a field needs it (see `Walk`).
_PATH = "(parent if index is None else Path(parent, index, None))"


def _field_source(
    plan: FieldPlan, index: int, namespace: dict[str, Any], holders: Mapping[tuple[str, type], int]
) -> list[str]:
    key = repr(plan.key)
    store = [f"results[{key}] = completed", "if is_awaitable(completed):", f"    pending.append({key})"]
    if plan.reader is None:
        return [f"completed = run.execute_field(P{index}, source, {_PATH})", *store]
    if plan.kind is Kind.BASIC and plan.python_name.isidentifier() and not iskeyword(plan.python_name):
        read = f"source.{plan.python_name}"  # its reader is `attrgetter(python_name)`
    else:
        namespace[f"R{index}"] = plan.reader
        read = f"R{index}(source)"
    lines = []
    as_is = _answered_as_is(plan, index, namespace)
    if as_is is not None:
        test, answer = as_is
        lines += [f"if {test}:", f"    results[{key}] = {answer}", "elif value is None:"]
    else:
        lines += ["if value is None:"]
    lines += [
        f"    results[{key}] = None" if plan.nullable else '    raise _Bail("null in a non-null field")'
    ]
    lines += ["else:", f"    completed = _finish_read(run, P{index}, source, {_PATH}, value)"]
    lines += [f"    {line}" for line in store]
    if plan.row_fact is None:
        return [f"value = {read}", *lines]
    holder = holders[plan.row_fact.holder, plan.row_fact.unloaded]
    return _row_fact_source(plan, plan.row_fact, index, namespace, holder, read, lines)


def _row_fact_source(
    plan: FieldPlan,
    fact: RowFact,
    index: int,
    namespace: dict[str, Any],
    holder: int,
    read: str,
    answer: list[str],
) -> list[str]:
    """A `RowFact` read inline where its row is at hand (as `RowFact.__call__` reads it), its reader
    called where it is not; `answer` completes the value either way. The row is the walk's `H{holder}`,
    at hand where `A{holder}` is true. An enum's member is answered by its name, looked up from the
    column's value at once."""
    at_hand = f"A{holder}"
    column = f"H{holder}.{fact.column}"
    if fact.enum is not None:
        names = _enum_names_by_value(plan, fact)
        if names is not None:
            namespace[f"V{index}"] = names
            return [
                f"if {at_hand} and (value := V{index}.get({column})) is not None:",
                f"    results[{plan.key!r}] = value",
                "else:",
                f"    value = {read}",
                *(f"    {line}" for line in answer),
            ]
        namespace[f"M{index}"] = fact.members
        inline = [f"value = M{index}.get({column})", "if value is None:", f"    value = {read}"]
    elif fact.convert is not None:
        namespace[f"C{index}"] = fact.convert
        inline = [f"value = {column}", "if value is not None:", f"    value = C{index}(value)"]
    elif fact.present:
        inline = [f"value = {column} is not None"]
    else:
        inline = [f"value = {column}"]
    return [f"if {at_hand}:", *(f"    {line}" for line in inline), "else:", f"    value = {read}", *answer]


def _enum_names_by_value(plan: FieldPlan, fact: RowFact) -> dict[Any, Any] | None:
    """For a fact of an enum that is the field's own type: each column value's answer, the name its
    member's coercion gives (None where the field's type is another, so the value is coerced as read)."""
    type_ = plan.field_def.type
    leaf = type_.of_type if is_non_null_type(type_) else type_
    members = _enum_members(leaf) if isinstance(leaf, GraphQLEnumType) else None
    if members is None or members[0] is not fact.enum:
        return None
    names = members[1]
    return {value: names[member] for value, member in fact.members.items()}


def _answered_as_is(plan: FieldPlan, index: int, namespace: dict[str, Any]) -> tuple[str, str] | None:
    """For a leaf read off the object, the test of a value its coercion would answer without asking, and
    the answer: a `str` for a String or an ID, a `bool`, an `int` in range, an enum's own member, a `date`
    for strawberry's Date."""
    if plan.coerce is None:
        return None
    type_ = plan.field_def.type
    leaf = type_.of_type if is_non_null_type(type_) else type_
    assert isinstance(leaf, GraphQLScalarType | GraphQLEnumType)  # `coerce` is set for leaves alone
    members = _enum_members(leaf)
    if members is not None:
        namespace[f"E{index}"], namespace[f"N{index}"] = members
        return f"value.__class__ is E{index}", f"N{index}[value]"
    return _AS_IS.get(leaf.coerce_output_value)


def _finish_read(run: _Run, plan: FieldPlan, source: Any, path: Path | None, value: Any) -> Any:
    """A value read off the object that its walker did not answer where it read it: a plain leaf coerced,
    a fact the object could not tell asked of its resolver, anything else completed."""
    coerce = plan.coerce
    if coerce is not None and (value.__class__ in _PLAIN or isinstance(value, Enum)):
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Bail("a leaf value that does not coerce")
        return coerced
    if value is UNREAD:  # a `READ` the object cannot answer: its resolver will
        return run.execute_field(plan, source, path)
    return run.complete_value(plan, value, path)


# --- running ---------------------------------------------------------------------------------------


class _Site:
    """Where a value is completed: its path, and its field's resolve info, each built when first asked
    (most values are leaves, which need neither)."""

    __slots__ = ("_info", "_path", "field", "parent", "run")

    def __init__(
        self, run: _Run, field: FieldPlan | None, parent: Path | None, path: Path | None = None
    ) -> None:
        self.run = run
        self.field = field
        self.parent = parent
        self._path = path
        self._info: GraphQLResolveInfo[Any] | None = None

    def path(self) -> Path:
        if self._path is None:
            assert self.field is not None
            self._path = Path(self.parent, self.field.key, self.field.parent_type.name)
        return self._path

    def info(self) -> GraphQLResolveInfo[Any]:
        if self._info is None:
            field = self.field
            assert field is not None
            self._info = self.run.executor.build_resolve_info(
                field.field_def, field.nodes, field.parent_type, self.path()
            )
        return self._info

    def item(self, index: int) -> _Site:
        """The site of a list's item: the item's path, the list field's info (as graphql-core has it)."""
        return _ItemSite(self, index)


class _ItemSite(_Site):
    __slots__ = ("_list",)

    def __init__(self, list_site: _Site, index: int) -> None:
        super().__init__(list_site.run, list_site.field, None, Path(list_site.path(), index, None))
        self._list = list_site

    def info(self) -> GraphQLResolveInfo[Any]:
        return self._list.info()


class _LazyInfo(Info[Any, Any]):
    """strawberry's `Info` for a resolver the plan calls directly: the graphql-core resolve info behind
    it is built only if the resolver reads it (its context, its selections, its path)."""

    def __init__(self, site: _Site, strawberry_field: StrawberryField) -> None:  # not the dataclass's
        self._site = site
        self._field = strawberry_field

    @property  # a dataclass field in strawberry's Info; read-only here
    def _raw_info(self) -> GraphQLResolveInfo[Any]:  # type: ignore[override]
        return self._site.info()


class _Run:
    """One execution of a plan for one request."""

    __slots__ = ("args", "executor", "is_async_iterable", "is_awaitable")

    def __init__(self, executor: PlannedExecutor) -> None:
        self.executor = executor
        self.is_awaitable = executor.is_awaitable
        self.is_async_iterable = executor.is_async_iterable
        self.args: dict[int, dict[str, Any]] = {}

    def arguments(self, plan: FieldPlan) -> dict[str, Any]:
        """A field's arguments depend on its node and the request's variables, never on the object:
        coerced once per request and plan node (graphql-core coerces them per object)."""
        found = self.args.get(id(plan))
        if found is None:
            node = plan.nodes[0]
            found = (
                get_argument_values(
                    plan.field_def,
                    node,
                    self.executor.variable_values,
                    None,
                    self.executor.hide_suggestions,
                )
                if plan.field_def.args or node.arguments
                else {}
            )
            self.args[id(plan)] = found
        if any(isinstance(value, (list, dict)) for value in found.values()):
            # A resolver may change what it is given (federation's `_entities` pops each
            # representation's `__typename`): each call its own copy, so the reference executor, if it
            # answers instead, is given what the request sent.
            return copy.deepcopy(found)
        return found

    def execute_field(self, plan: FieldPlan, source: Any, path: Path | None) -> Any:
        kind = plan.kind
        site = _Site(self, plan, path) if plan.needs_site or kind >= Kind.DIRECT else None
        if kind is Kind.BASIC:
            assert plan.default_resolver is not None
            value = plan.default_resolver(source, plan.python_name)
        elif kind is Kind.READ:
            assert plan.read is not None
            value = plan.read(source)
            if value is UNREAD:
                value = self.call(plan, source, site or _Site(self, plan, path))
        elif kind is Kind.DIRECT:
            assert site is not None
            value = self.call(plan, source, site)
        elif kind is Kind.TYPENAME:
            value = plan.parent_type.name
        else:
            assert site is not None
            resolve = plan.field_def.resolve or self.executor.field_resolver
            value = resolve(source, site.info(), **self.arguments(plan))
        if self.is_awaitable(value):
            return _complete_later(self, plan, value, site)
        return plan.complete(self, value, site)  # type: ignore[arg-type]

    def complete_value(self, plan: FieldPlan, value: Any, path: Path | None) -> Any:
        """A field's value, read already, completed as `execute_field` completes what it resolves."""
        site = _Site(self, plan, path) if plan.needs_site else None
        if self.is_awaitable(value):
            return _complete_later(self, plan, value, site)
        return plan.complete(self, value, site)  # type: ignore[arg-type]

    def call(self, plan: FieldPlan, source: Any, site: _Site) -> Any:
        """The field's resolver, called as strawberry would call it (no arguments to convert)."""
        assert plan.call is not None and plan.strawberry_field is not None
        kwargs: dict[str, Any] = {name: source for name in plan.source_names}
        if plan.info_name is not None:
            kwargs[plan.info_name] = _LazyInfo(site, plan.strawberry_field)
        return plan.call(source, **kwargs) if plan.passes_self else plan.call(**kwargs)


async def _complete_later(run: _Run, plan: FieldPlan, value: Awaitable[Any], site: _Site | None) -> Any:
    resolved = await value
    completed = plan.complete(run, resolved, site)  # type: ignore[arg-type]
    if run.is_awaitable(completed):
        return await completed
    return completed


async def _settle_fields(results: dict[str, Any], pending: list[str]) -> dict[str, Any]:
    if len(pending) == 1:
        results[pending[0]] = await results[pending[0]]
        return results
    settled = await _gather(results[key] for key in pending)
    results.update(zip(pending, settled, strict=True))
    return results


async def _gather(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    """Every awaitable run to its end, then the first failure raised. Not cancelled when a sibling
    fails, as graphql-core's gather would: they share the request's loaders, whose pending batches the
    reference executor then awaits, and a cancelled batch would fail it."""
    settled = await asyncio.gather(*awaitables, return_exceptions=True)
    for value in settled:
        if isinstance(value, BaseException):
            raise value
    return settled


def _settle_in_background(awaitables: Iterable[Any]) -> None:
    """Awaitables a failed object started: run to their end, their outcome dropped (the reference
    executor answers the request)."""
    for awaitable in awaitables:
        asyncio.ensure_future(awaitable).add_done_callback(_forget)


def _forget(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


# --- the executor ----------------------------------------------------------------------------------


@dataclass
class PlanStatistics:
    """What the plans did in this process: for the benchmarks' and the test suite's record."""

    compiled: int = 0
    answered: int = 0
    fell_back: int = 0
    compared: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def fallback(self, reason: str) -> None:
        self.fell_back += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


STATISTICS = PlanStatistics()


class PlanCache:
    """Compiled plans by (document text, operation, the variables its directives read), most recent
    last. A plan holds the document's field nodes: those of the first request that compiled it, the
    same text's nodes for every later one."""

    def __init__(self, entries: int = PLAN_CACHE_ENTRIES) -> None:
        self._plans = Bounded[tuple[str, ...], Plan](entries)
        self._directive_variables = Bounded[str, tuple[str, ...]](4 * entries)

    def key(self, executor: PlannedExecutor) -> tuple[str, ...] | None:
        operation = executor.operation
        if operation.loc is None:
            return None
        text = operation.loc.source.body
        digest = hashlib.sha256(text.encode()).hexdigest()
        names = self._directive_variables.get(digest)
        if names is None:
            names = _directive_variables(operation, executor.fragment_definitions)
            self._directive_variables.put(digest, names)
        coerced = executor.variable_values.coerced
        decided = json.dumps([coerced.get(name) for name in names], default=str)
        operation_name = operation.name.value if operation.name is not None else ""
        return (digest, operation_name, decided)

    def get(self, key: tuple[str, ...]) -> Plan | None:
        return self._plans.get(key)

    def put(self, key: tuple[str, ...], plan: Plan) -> None:
        self._plans.put(key, plan)


def _directive_variables(operation: OperationDefinitionNode, fragments: Mapping[str, Any]) -> tuple[str, ...]:
    """The variables `@include` and `@skip` read anywhere in the document: the only ones that change
    which fields a plan holds."""
    found: set[str] = set()

    class Finder(Visitor):
        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            if node.name.value in ("include", "skip"):
                for argument in node.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        found.add(argument.value.name.value)

    visit(operation, Finder())
    for fragment in fragments.values():
        visit(fragment, Finder())
    return tuple(sorted(found))


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, which answers a query from its compiled plan when it can."""

    mode: PlanMode = PlanMode.ON
    cache: PlanCache = PlanCache()
    direct_calls: bool = True  # false where strawberry wraps every resolver (exception handlers)

    def execute_operation(self, serially: bool | None = None) -> Any:
        if self.mode is PlanMode.OFF or not self._plannable():
            return super().execute_operation(serially)
        return self._planned(serially)

    def _plannable(self) -> bool:
        manager = self.middleware_manager
        return (
            self.operation.operation is OperationType.QUERY
            and self.abort_signal is None
            and self.hooks is None
            and self.error_propagation
            and (manager is None or not manager.middlewares)
        )

    async def _planned(self, serially: bool | None) -> Any:
        try:
            data = await self._run_plan()
        except _Bail as bail:
            STATISTICS.fallback(str(bail))
            return await self._reference(serially)
        except Exception as error:  # a resolver's error: graphql-core locates and reports it
            STATISTICS.fallback(type(error).__name__)
            return await self._reference(serially)
        STATISTICS.answered += 1
        answer = self.build_response(data)
        if self.mode is PlanMode.CHECK and _COMPARING.get():
            await self._check(answer, serially)
        return answer

    async def _reference(self, serially: bool | None) -> Any:
        self.collected_errors = CollectedErrors()  # each execution its own errors
        afresh = getattr(self.context_value, "afresh", None)
        if afresh is not None:
            afresh()  # nothing read before: it answers as it would alone
        result = super().execute_operation(serially)
        return await result if self.is_awaitable(result) else result

    async def _run_plan(self) -> dict[str, Any]:
        plan = self._plan()
        data = plan.walk(_Run(self), self.root_value, None, None)
        if self.is_awaitable(data):
            data = await data
        return data  # type: ignore[no-any-return]

    def _plan(self) -> Plan:
        key = self.cache.key(self)
        plan = None if key is None else self.cache.get(key)
        if plan is None:
            root_type = self.schema.get_root_type(self.operation.operation)
            if root_type is None:
                raise _Bail("no root type")
            compiler = _Compiler(self, self.direct_calls)
            plan = Plan(_walker(root_type, compiler.root(root_type, self.operation)))
            STATISTICS.compiled += 1
            if key is not None:
                self.cache.put(key, plan)
        return plan

    async def _check(self, planned: Any, serially: bool | None) -> None:
        """The reference's answer must be the plan's, byte for byte. The two executions are not one
        transaction: a write between them (a publication, a sync) can change what the second reads, so a
        difference is tried again, both executing anew, before it counts; a plan's own difference
        persists on data that has stopped moving."""
        ours = _encoded(planned)
        for attempt in range(CHECK_ATTEMPTS):
            theirs = _encoded(await self._reference(serially))
            if ours == theirs:
                STATISTICS.compared += 1
                return
            if attempt + 1 < CHECK_ATTEMPTS:
                try:
                    ours = _encoded(self.build_response(await self._run_plan()))
                except Exception:  # the data moved into an error: the plan defers to the reference
                    STATISTICS.compared += 1
                    return
        log.error("a plan answered differently: plan %s reference %s", ours[:2000], theirs[:2000])
        raise PlanMismatch(f"the plan answered {ours[:300]}, the reference {theirs[:300]}")


def _encoded(result: Any) -> str:
    errors = [error.formatted for error in result.errors or ()]
    return json.dumps({"data": result.data, "errors": errors})


def executor_class(
    mode: PlanMode, *, direct_calls: bool = True
) -> type[StrawberryGraphQLCoreExecutionContext]:
    """The executor class a schema runs with: plain graphql-core, or plans in the given mode (each
    schema its own class, so each has its own plan cache)."""
    if mode is PlanMode.OFF:
        return StrawberryGraphQLCoreExecutionContext
    return type(
        "PlannedExecutor",
        (PlannedExecutor,),
        {"mode": mode, "cache": PlanCache(), "direct_calls": direct_calls},
    )


__all__ = [
    "READ",
    "STATISTICS",
    "UNREAD",
    "PlanMismatch",
    "PlanMode",
    "PlannedExecutor",
    "executor_class",
]
