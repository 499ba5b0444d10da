"""Protection of the GraphQL endpoint (R8): query limits checked before anything executes, and errors
masked so that a client sees our refusals as they are and nothing else of a failure.

Limits (`QueryLimits`), each refused with a message naming the limit and what was measured, and with
`extensions.code`:

- tokens (`TOO_MANY_TOKENS`): the parser stops at the first token over the limit, comments counted,
  so a huge document costs a few thousand tokens of work and never becomes an AST;
- depth (`QUERY_TOO_DEEP`): fields on the deepest path, fragments expanded (`{ a { b } }` is 2);
- aliases (`TOO_MANY_ALIASES`): aliased fields in the whole document, fragments expanded where spread;
- root fields (`TOO_MANY_ROOT_FIELDS`): top-level fields of an operation, fragments on the root included;
- page size (`PAGE_TOO_LARGE`): `first` (or `last`) above `max_page_size` or below zero, with its path;
- cost (`QUERY_TOO_COSTLY`), estimated as follows. Every field costs 1. A field that takes a `first`
  argument (a Relay connection or a list) multiplies the cost of its sub-selection by `first`: a
  literal, or the request's value of the variable (or the variable's default), or `default_page_size`
  when the argument is absent; `last` counts the same way, the larger of the two when both are given.
  Multipliers compound with nesting (`a(first: 10) { b(first: 10) { c } }` costs 1 + 10 + 100), and
  fragments are expanded where they are spread. `@skip` and `@include` are not evaluated: a field
  counts whether or not it will be skipped. A list-typed argument multiplies the same way by its length
  (a literal list's, or the request's variable's; a single value counts 1): each of `_entities`'
  representations is answered by the selection below it, so 9,000 representations cost 9,000 times it;
  with `first` too, the larger of the two counts;
- list items (`LIST_TOO_LONG`): the items of every list-typed argument of the operation, multiplied
  like the cost by the lists and pages above them, at most `max_list_items` (500) in all: a federation
  router batches a page's entities into `_entities` calls of a few hundred at most.

Introspection (`__schema`, `__type` and everything below them, and `__typename`) is left out of depth
and cost: the standard introspection query alone is deeper than any honest data query. It is bounded
instead by graphql-core's `MaxIntrospectionDepthRule` when introspection is on, and by a chain of at
most `max_of_type_depth` nested `ofType` fields (the standard query nests 9; `QUERY_TOO_DEEP`), and
refused (`INTROSPECTION_DISABLED`) when it is off; `__typename` is always answered. Off means off: the
federation field `_service { sdl }` (the whole schema as text) is refused the same way, and error
messages lose graphql-core's "Did you mean ...?" suggestions, which name the schema's fields, arguments,
types and enum values one guess at a time.

Argument values that the schema's types cannot describe are checked before execution too, by checks
the schema passes in (`ArgumentChecks`: by the argument's type, such as `ID`, or by its name, such as
`after`); a value refused is `BAD_USER_INPUT` naming the argument and the field.

Requests are refused before they execute, too, when a document holds several operations and the
request names none (`OPERATION_NAME_REQUIRED`: strawberry would quietly run the first), and when a
string literal or variable holds a NUL or a lone surrogate (`INVALID_TEXT`: no field takes such text,
and PostgreSQL cannot store it).

The measurement is one pass over each definition plus one combination per fragment spread: a fragment
is measured once however often it is spread, so neither a fragment cycle (reported by graphql-core's
`NoFragmentCyclesRule`; a spread that closes a cycle adds nothing here) nor a fragment "bomb" that
doubles at each level makes it slow, and it never recurses. Counts saturate at 10^18.

The cost rule reads the request's variables, so validation results must not be cached by document
alone: do not combine these extensions with strawberry's `ValidationCache`.

Errors: an exception raised while answering reaches the client only as "Internal server error
(reference <hex>)" with code `INTERNAL_ERROR`; the whole exception is logged at ERROR on
`cfl_graph.doors.graph.errors` under the same reference. Refusals the service meant (`log_refusals`: syntax,
validation and limit errors, user errors with their code, bad variables) are logged at INFO, one line
without a traceback: they are the client's mistake, not the service's. `UserError` (and any types
passed as `user_errors`) are written for the client and are shown as they are, with their `code`; so
are syntax, validation and variable errors, which are about the request itself, each with the code
Apollo gives it (`GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`, `BAD_USER_INPUT`) where no rule of
ours named a more precise one, so that clients can branch on every refusal. A GraphQLError raised
while resolving a field is masked like any other exception: graphql-core's own (a value a scalar
cannot serialise) quote data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from graphql import (
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_introspection_type,
    is_list_type,
    validate,
)
from graphql.language import SKIP, VisitorAction
from graphql.validation import ASTValidationRule, MaxIntrospectionDepthRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaskErrors, MaxTokensLimiter, SchemaExtension
from strawberry.schema.schema import validate_document

from cfl_graph.bounded import Bounded
from cfl_graph.database import database_unavailable
from cfl_graph.doors.web import unavailable
from cfl_graph.observability import note_error_reference

__all__ = [
    "ArgumentChecks",
    "QueryLimits",
    "UserError",
    "log_refusals",
    "protection_extensions",
    "request_error_code",
]

log = logging.getLogger("cfl_graph.doors.graph.errors")

# Arguments that set how many items a list field returns.
PAGE_ARGUMENTS = ("first", "last")
# Counts stop growing here: enough to compare with any limit, small enough to print and serialise.
CEILING = 10**18


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int = 12  # deepest selection path, fragments expanded
    max_aliases: int = 30  # aliased fields in the whole document
    max_root_fields: int = 20  # top-level fields of the operation (fragments on the root included)
    max_cost: int = 50_000  # estimated cost, see the module docstring
    max_tokens: int = 5_000  # lexer tokens in the document, comments included
    default_page_size: int = 50  # what a list field with no `first` argument is assumed to return
    max_page_size: int = 500  # `first` above this (or below zero) is refused, with the field's path
    max_of_type_depth: int = 10  # nested `ofType` fields in introspection (the standard query has 9)
    max_list_items: int = 500  # items of list arguments (`_entities`' representations) per operation
    introspection: bool = True


# Why a value of an argument is refused, or None; given the value as the request holds it (a string for
# an `ID` or a `String`).
ArgumentCheck = Callable[[object], str | None]


@dataclass(frozen=True)
class ArgumentChecks:
    """Checks of argument values the schema's types cannot express, run before execution, on literals
    and on the request's variables alike (each item of a list): by the argument's named type and by the
    argument's name."""

    by_type: Mapping[str, ArgumentCheck] = field(default_factory=dict)
    by_name: Mapping[str, ArgumentCheck] = field(default_factory=dict)


class UserError(Exception):
    """A refusal written for the client: its message is shown as it is, with `code` in the extensions."""

    code: ClassVar[str] = "BAD_REQUEST"


def protection_extensions(
    limits: QueryLimits,
    *,
    user_errors: tuple[type[Exception], ...] = (),
    argument_checks: ArgumentChecks | None = None,
) -> list[Callable[[], SchemaExtension]]:
    """What to pass to strawberry's `Schema(extensions=...)`: one fresh set of extensions per request.

    `user_errors` are further exception types whose message is meant for the client (shown with their
    `code` attribute, if any), for refusals that cannot derive from `UserError`.
    """
    validated = ValidatedDocuments()  # one per schema, shared by its requests
    return [
        # First in the list, so last to see the result: it masks what every other step produced.
        functools.partial(
            _MaskUnexpectedErrors, (UserError, *user_errors), hide_suggestions=not limits.introspection
        ),
        functools.partial(_TokenLimit, limits.max_tokens),
        functools.partial(_QueryLimitsExtension, limits, argument_checks or ArgumentChecks(), validated),
    ]


VALIDATED_DOCUMENTS = 2_000  # document texts remembered as valid, per schema
PARSED_DOCUMENTS_BYTES = 16 * 1024 * 1024  # their parsed documents kept, per schema, by estimated size
PARSED_BYTES_PER_CHARACTER = 100  # a parsed document's size, about 90 bytes a character of its text
PASSED_REQUESTS = 20_000  # (document, operation named, variables) remembered as passing the request's rules


class ValidatedDocuments:
    """The texts of documents that passed every rule reading the document alone (graphql-core's and
    strawberry's rules, the introspection and `ofType` bounds), most recently used last. Those rules
    give the same answer for the same text every time, so a document seen valid is checked again only
    by the rules that read the request's variables: the limits, the arguments, the operation's name.
    The most recent ones are kept parsed too (graphql-core never changes a parsed document), so that a
    text seen valid is not parsed again. The request's rules answer the same for the same text, variables
    and whether an operation was named (the limits and the checks are the schema's, and each check is a
    function of the value alone): a request seen passing them is remembered too, by a digest of the three,
    so that a dashboard asking the same page again is not walked through them again (a visit of the whole
    document with its types, a few percent of a page's CPU)."""

    def __init__(
        self,
        entries: int = VALIDATED_DOCUMENTS,
        parsed_bytes: int = PARSED_DOCUMENTS_BYTES,
        requests: int = PASSED_REQUESTS,
    ) -> None:
        self._known = Bounded[str, bool](entries)
        self._parsed = Bounded[str, tuple[DocumentNode, int]](parsed_bytes, lambda entry: entry[1])
        self._requests = Bounded[str, bool](requests)

    def request_passed(self, key: str) -> bool:
        return self._requests.get(key) is not None

    def add_request(self, key: str) -> None:
        self._requests.put(key, True)

    def passed(self, key: str) -> bool:
        return self._known.get(key) is not None

    def parsed(self, key: str) -> DocumentNode | None:
        """The document of a text seen valid, as it was parsed then; None if not kept."""
        entry = self._parsed.get(key)
        return None if entry is None else entry[0]

    def add(self, key: str, document: DocumentNode, characters: int) -> None:
        self._known.put(key, True)
        self._parsed.put(key, (document, characters * PARSED_BYTES_PER_CHARACTER))


def _limit_error(
    message: str, code: str, nodes: Node | list[Node] | None = None, **facts: int
) -> GraphQLError:
    return GraphQLError(message, nodes, extensions={"code": code, **facts})


# --- tokens ---------------------------------------------------------------------------------------------


class _TokenLimit(MaxTokensLimiter):
    """strawberry's token limit (graphql-core's parser stops at the first token over it), with our code."""

    def on_parse(self) -> Iterator[None]:
        yield
        # graphql-core reports the limit as a plain syntax error; give it the same shape as the others.
        aborted = f"Document contains more than {self.max_token_count} tokens. Parsing aborted."
        for error in self.execution_context.pre_execution_errors or ():
            if isinstance(error, GraphQLSyntaxError) and error.message.endswith(aborted):
                error.message = (
                    f"document token count exceeds the limit of {self.max_token_count:,} "
                    f"(parsing stopped at token {self.max_token_count + 1:,})"
                )
                error.extensions = {"code": "TOO_MANY_TOKENS", "limit": self.max_token_count}


# --- introspection --------------------------------------------------------------------------------------


class _IntrospectionDisabled(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule (it lets `__typename` through), with our code; and federation's `_service`,
    whose `sdl` is the whole schema, refused alike."""

    def enter_field(self, node: FieldNode, *args: Any) -> None:
        super().enter_field(node, *args)
        parent = self.context.get_parent_type()
        query = self.context.schema.query_type
        if (
            node.name.value == "_service"
            and parent is query
            and query is not None
            and "_service" in query.fields
        ):
            self.report_error(
                GraphQLError(
                    "GraphQL introspection has been disabled, and `_service` is introspection: "
                    "it would print the whole schema",
                    node,
                )
            )

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(_limit_error(error.message, "INTROSPECTION_DISABLED", list(error.nodes or ())))


class _IntrospectionDepth(MaxIntrospectionDepthRule):
    """graphql-core's bound on nested introspection lists (`fields { type { fields ... } }`), coded."""

    def report_error(self, error: GraphQLError) -> None:
        message = "introspection nests `fields`, `interfaces`, `possibleTypes` or `inputFields` too deeply"
        super().report_error(_limit_error(message, "QUERY_TOO_DEEP", list(error.nodes or ())))


@functools.cache
def _of_type_rule(limit: int) -> type[ValidationRule]:
    class OfTypeDepthRule(ValidationRule):
        """Chains of `ofType` below `__schema` or `__type`, fragments followed (each once per depth)."""

        def enter_field(self, node: FieldNode, *_args: Any) -> VisitorAction:
            if node.name.value not in ("__schema", "__type"):
                return None
            deepest = 0
            seen: dict[str, int] = {}
            stack: list[tuple[SelectionSetNode | None, int]] = [(node.selection_set, 0)]
            while stack and deepest <= limit:
                selections, depth = stack.pop()
                for selection in selections.selections if selections is not None else ():
                    if isinstance(selection, FragmentSpreadNode):
                        name = selection.name.value
                        fragment = self.context.get_fragment(name)
                        if fragment is not None and seen.get(name, -1) < depth:
                            seen[name] = depth
                            stack.append((fragment.selection_set, depth))
                    elif isinstance(selection, InlineFragmentNode):
                        stack.append((selection.selection_set, depth))
                    elif isinstance(selection, FieldNode):
                        below = depth + (selection.name.value == "ofType")
                        deepest = max(deepest, below)
                        stack.append((selection.selection_set, below))
            if deepest > limit:
                self.report_error(
                    _limit_error(
                        f"introspection nests `ofType` more than {limit} deep (no type wraps that deeply)",
                        "QUERY_TOO_DEEP",
                        node,
                        limit=limit,
                    )
                )
                return SKIP
            return None

    return OfTypeDepthRule


def _request_rule(operation_named: bool, variables: Mapping[str, Any]) -> type[ValidationRule]:
    class RequestRule(ValidationRule):
        """What the request as a whole must be: one operation to run, and text that is text."""

        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            names = [
                d.name.value if d.name else "(anonymous)"
                for d in node.definitions
                if isinstance(d, OperationDefinitionNode)
            ]
            if len(names) > 1 and not operation_named:
                self.report_error(
                    _limit_error(
                        f"the document holds {len(names)} operations ({', '.join(names[:5])}); "
                        "name the one to run with `operationName`",
                        "OPERATION_NAME_REQUIRED",
                    )
                )
            if (found := _bad_text(variables)) is not None:
                where, code_point = found
                message = f"variable ${where} holds U+{code_point:04X}, which no text may hold"
                self.report_error(_limit_error(message, "INVALID_TEXT"))

        def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
            if (found := _bad_text(node.value)) is not None:
                message = f"a string literal holds U+{found[1]:04X}, which no text may hold"
                self.report_error(_limit_error(message, "INVALID_TEXT", node))

    return RequestRule


def _bad_text(value: Any) -> tuple[str, int] | None:
    """Where a NUL or a lone surrogate hides in a value (lists and objects walked), and which, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            for ch in item:
                if ch == "\x00" or "\ud800" <= ch <= "\udfff":
                    return where.lstrip("."), ord(ch)
        elif isinstance(item, Mapping):
            stack.extend((f"{where}.{key}", inner) for key, inner in item.items())
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", inner) for index, inner in enumerate(item))
    return None


def _argument_rule(checks: ArgumentChecks, variables: Mapping[str, Any]) -> type[ValidationRule]:
    class ArgumentRule(ValidationRule):
        """Each argument's values (a literal, or the request's variable; each item of a list) through
        the checks for its type and its name."""

        owner = ""  # the field (`Query.node`) or directive (`@include`) whose arguments are visited
        field_owner = ""

        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            parent = self.context.get_parent_type()
            self.field_owner = self.owner = f"{parent.name if parent else '?'}.{node.name.value}"

        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            self.owner = f"@{node.name.value}"

        def leave_directive(self, node: DirectiveNode, *_args: Any) -> None:
            self.owner = self.field_owner

        def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
            definition = self.context.get_argument()
            if definition is None:
                return
            name = node.name.value
            found = [
                check
                for check in (
                    checks.by_type.get(get_named_type(definition.type).name),
                    checks.by_name.get(name),
                )
                if check is not None
            ]
            for value in _argument_values(node.value, variables) if found else ():
                problem = next((p for check in found if (p := check(value)) is not None), None)
                if problem is not None:
                    message = f"argument `{name}` of `{self.owner}`: {problem}"
                    self.report_error(_limit_error(message, "BAD_USER_INPUT", node))
                    return

    return ArgumentRule


def _argument_values(node: ValueNode, variables: Mapping[str, Any]) -> list[object]:
    """The values an argument node stands for: a literal's (strings only), a list's items, or the
    variable's value (or items); variables the request lacks are left to graphql-core."""
    if isinstance(node, StringValueNode):
        return [node.value]
    if isinstance(node, ListValueNode):
        return [value for item in node.values for value in _argument_values(item, variables)]
    if isinstance(node, VariableNode):
        value = variables.get(node.name.value)
        return list(value) if isinstance(value, list) else [] if value is None else [value]
    return []


# --- depth, aliases, root fields, page size, cost -------------------------------------------------------


@dataclass
class _Shape:
    """What a selection set measures, relative to where it stands (its own fields are at depth 1)."""

    depth: int = 0
    aliases: int = 0
    root_fields: int = 0
    cost: int = 0  # with a multiplier of 1 where the selection set stands
    list_items: int = 0  # items of list arguments, multiplied like the cost
    largest_list: tuple[int, str] = (0, "")  # the list argument that holds the most items, and where


@dataclass(frozen=True)
class _Spread:
    fragment: str
    above: int  # fields above the spread: 0 when it is spread among the definition's own fields
    multiplier: int


@dataclass
class _Measured:
    shape: _Shape = field(default_factory=_Shape)
    spreads: list[_Spread] = field(default_factory=list)


@dataclass(frozen=True)
class _Frame:
    selections: SelectionSetNode
    parent: GraphQLNamedType | None
    above: int
    multiplier: int
    path: tuple[str, ...]
    introspection: bool


def _capped(value: int) -> int:
    return min(value, CEILING)


def _shown(value: int) -> str:
    return f"{value:,}" if value < CEILING else f"more than {CEILING:,}"


class _QueryLimitsExtension(SchemaExtension):
    """Adds the limits rule for this request: it needs the request's variables to know `first`.

    The request's rules are classes made for its variables (graphql-core's rules are classes), made only
    when a rule runs: a document and variables seen valid before run none, and making the four classes
    cost a fifth of the CPU of `{ __typename }`."""

    def __init__(self, limits: QueryLimits, checks: ArgumentChecks, validated: ValidatedDocuments) -> None:
        self.limits = limits
        self.checks = checks
        self.validated = validated
        self.document_rules: tuple[type[ASTValidationRule], ...] = ()  # the rules of graphql-core et al.
        self.digest: str | None = None  # of the request's text, once read
        self.request: tuple[bool, Mapping[str, Any]] = (False, {})  # an operation named; the variables

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        # graphql-core's recommended rules (strawberry runs them) bound introspection; ours adds the code.
        rules = [rule for rule in context.validation_rules if rule is not MaxIntrospectionDepthRule]
        rules.append(_IntrospectionDepth if self.limits.introspection else _IntrospectionDisabled)
        rules.append(_of_type_rule(self.limits.max_of_type_depth))
        self.document_rules = tuple(rules)
        # strawberry fills `operation_name` in with the first operation's; only the request's counts here.
        named = getattr(context, "_provided_operation_name", None) is not None
        self.request = (named, context.variables or {})
        yield

    def request_rules(self) -> tuple[type[ValidationRule], ...]:
        """The rules for this request's variables and operation name."""
        named, variables = self.request
        rules: list[type[ValidationRule]] = [_request_rule(named, variables)]
        if self.checks.by_type or self.checks.by_name:
            rules.append(_argument_rule(self.checks, variables))
        rules.append(_query_limits_rule(self.limits, variables))
        return tuple(rules)

    def on_parse(self) -> Iterator[None]:
        """A text seen valid is not parsed again: its document, kept when it passed, is the request's."""
        context = self.execution_context
        if context.graphql_document is None and context.query is not None:
            self.digest = hashlib.sha256(context.query.encode()).hexdigest()
            context.graphql_document = self.validated.parsed(self.digest)
        yield

    def on_validate(self) -> Iterator[None]:
        """Every rule on a document first seen (as strawberry would run them: in one pass, so the errors
        come in the same order), remembered if it passed; only the request's rules on one seen valid."""
        context = self.execution_context
        document, query = context.graphql_document, context.query
        if document is not None and query is not None and context.pre_execution_errors is None:
            key = self.digest or hashlib.sha256(query.encode()).hexdigest()
            schema = context.schema._schema
            if self.validated.passed(key):
                request = self._request_key(key)
                if request is not None and self.validated.request_passed(request):
                    context.pre_execution_errors = []
                else:
                    context.pre_execution_errors = validate(schema, document, self.request_rules())
                    if request is not None and not context.pre_execution_errors:
                        self.validated.add_request(request)
            else:
                rules = (*self.document_rules, *self.request_rules())
                context.pre_execution_errors = validate_document(schema, document, rules)
                if not context.pre_execution_errors:
                    self.validated.add(key, document, len(query))
                    if (request := self._request_key(key)) is not None:  # the request's rules ran too
                        self.validated.add_request(request)
        else:  # strawberry validates, if anything is left to (a document that did not parse is not)
            context.validation_rules = (*self.document_rules, *self.request_rules())
        yield

    def _request_key(self, digest: str) -> str | None:
        """The digest of the text with the request's variables (as JSON, keys sorted: 1, 1.0, "1" and
        true stay apart) and whether it named its operation; None for variables JSON cannot hold."""
        named, variables = self.request
        try:
            encoded = json.dumps([digest, named, variables], sort_keys=True, allow_nan=True)
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


def _query_limits_rule(limits: QueryLimits, variables: Mapping[str, Any]) -> type[ValidationRule]:
    class QueryLimitsRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            try:
                _DocumentMeasure(limits, variables, self.context.schema, node, self.report_error).check()
            except GraphQLError:
                raise  # graphql-core's "too many validation errors": it ends the validation on purpose
            except Exception as exc:
                # A fault here must not turn into an unmasked message (strawberry shows exceptions raised
                # during validation as they are), nor let the document through.
                reference = uuid.uuid4().hex
                log.error("query limits check failed (reference %s)", reference, exc_info=exc)
                note_error_reference(reference)
                self.report_error(
                    _limit_error(f"Internal server error (reference {reference})", "INTERNAL_ERROR")
                )

    return QueryLimitsRule


class _DocumentMeasure:
    """Measures every operation of one document against the limits and reports what exceeds them."""

    def __init__(
        self,
        limits: QueryLimits,
        variables: Mapping[str, Any],
        schema: GraphQLSchema,
        document: DocumentNode,
        report: Callable[[GraphQLError], None],
    ) -> None:
        self.limits = limits
        self.variables = variables
        self.schema = schema
        self.report = report
        self.operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        # A variable missing from the request takes its default; several operations may declare it.
        self.defaults: dict[str, int] = {}
        self.list_defaults: dict[str, int] = {}
        for operation in self.operations:
            for definition in operation.variable_definitions or ():
                name = definition.variable.name.value
                if isinstance(definition.default_value, IntValueNode):
                    value = self._literal(definition.default_value)
                    self.defaults[name] = max(value, self.defaults.get(name, value))
                elif isinstance(definition.default_value, ListValueNode):
                    count = len(definition.default_value.values)
                    self.list_defaults[name] = max(count, self.list_defaults.get(name, count))

    def check(self) -> None:
        fragments = self._fragment_shapes()
        aliases = 0
        for operation in self.operations:
            shape = self._combine(
                self._measure(operation.selection_set, self._root(operation), None), fragments
            )
            aliases = _capped(aliases + shape.aliases)
            named = f"operation {operation.name.value}: " if operation.name else ""
            limits = self.limits
            if shape.depth > limits.max_depth:
                self.report(
                    _limit_error(
                        f"{named}query depth {shape.depth:,} exceeds the limit of {limits.max_depth:,}",
                        "QUERY_TOO_DEEP",
                        operation,
                        limit=limits.max_depth,
                        measured=shape.depth,
                    )
                )
            if shape.root_fields > limits.max_root_fields:
                self.report(
                    _limit_error(
                        f"{named}root field count {_shown(shape.root_fields)} exceeds the limit of "
                        f"{limits.max_root_fields:,}",
                        "TOO_MANY_ROOT_FIELDS",
                        operation,
                        limit=limits.max_root_fields,
                        measured=shape.root_fields,
                    )
                )
            if shape.cost > limits.max_cost:
                self.report(
                    _limit_error(
                        f"{named}estimated cost {_shown(shape.cost)} exceeds the limit of "
                        f"{limits.max_cost:,}: ask for smaller pages (`first`) or fewer nested lists",
                        "QUERY_TOO_COSTLY",
                        operation,
                        limit=limits.max_cost,
                        measured=shape.cost,
                    )
                )
            if shape.list_items > limits.max_list_items:
                count, where = shape.largest_list
                self.report(
                    _limit_error(
                        f"{named}list arguments hold {_shown(shape.list_items)} items in all (the largest, "
                        f"{where}, {_shown(count)}), more than the limit of {limits.max_list_items:,} "
                        "per request: send them in several requests",
                        "LIST_TOO_LONG",
                        operation,
                        limit=limits.max_list_items,
                        measured=shape.list_items,
                    )
                )
        if aliases > self.limits.max_aliases:
            self.report(
                _limit_error(
                    f"alias count {_shown(aliases)} exceeds the limit of {self.limits.max_aliases:,}",
                    "TOO_MANY_ALIASES",
                    None,
                    limit=self.limits.max_aliases,
                    measured=aliases,
                )
            )

    def _root(self, operation: OperationDefinitionNode) -> GraphQLNamedType | None:
        return self.schema.get_root_type(operation.operation)

    def _fragment_shapes(self) -> dict[str, _Shape]:
        """Each fragment's shape with its spreads expanded, in dependency order, without recursion."""
        measured = {
            name: self._measure(
                fragment.selection_set, self.schema.get_type(fragment.type_condition.name.value), name
            )
            for name, fragment in self.fragments.items()
        }
        shapes: dict[str, _Shape] = {}
        for start in measured:
            if start in shapes:
                continue
            path = [(start, iter(measured[start].spreads))]
            on_path = {start}
            while path:
                name, spreads = path[-1]
                for spread in spreads:
                    target = spread.fragment
                    if target in measured and target not in shapes and target not in on_path:
                        path.append((target, iter(measured[target].spreads)))
                        on_path.add(target)
                        break
                else:
                    path.pop()
                    on_path.discard(name)
                    # A spread closing a cycle finds no shape yet and adds nothing.
                    shapes[name] = self._combine(measured[name], shapes)
        return shapes

    @staticmethod
    def _combine(measured: _Measured, fragments: Mapping[str, _Shape]) -> _Shape:
        shape = replace(measured.shape)
        for spread in measured.spreads:
            inner = fragments.get(spread.fragment)
            if inner is None:
                continue
            shape.depth = max(shape.depth, spread.above + inner.depth)
            shape.aliases = _capped(shape.aliases + inner.aliases)
            shape.cost = _capped(shape.cost + spread.multiplier * inner.cost)
            shape.list_items = _capped(shape.list_items + spread.multiplier * inner.list_items)
            shape.largest_list = max(shape.largest_list, inner.largest_list)
            if spread.above == 0:
                shape.root_fields = _capped(shape.root_fields + inner.root_fields)
        return shape

    def _measure(
        self, selections: SelectionSetNode, parent: GraphQLNamedType | None, fragment: str | None
    ) -> _Measured:
        """One definition's own fields; its fragment spreads are noted, to be combined later."""
        result = _Measured()
        shape = result.shape
        stack = [_Frame(selections, parent, 0, 1, (), _is_introspection(parent))]
        while stack:
            frame = stack.pop()
            for selection in frame.selections.selections:
                if isinstance(selection, FieldNode):
                    name = selection.name.value
                    path = (*frame.path, selection.alias.value if selection.alias else name)
                    if selection.alias is not None:
                        shape.aliases += 1
                    if frame.above == 0:
                        shape.root_fields += 1
                    definition = _field(frame.parent, name)
                    child = get_named_type(definition.type) if definition is not None else None
                    introspection = frame.introspection or name.startswith("__") or _is_introspection(child)
                    multiplier = frame.multiplier
                    if not (frame.introspection or name.startswith("__")):
                        shape.depth = max(shape.depth, frame.above + 1)
                        shape.cost = _capped(shape.cost + multiplier)
                        page = self._page(selection, definition, path, fragment)
                        items = self._list_items(selection, definition)
                        if items is not None:
                            argument, count = items
                            shape.list_items = _capped(shape.list_items + multiplier * count)
                            where = ".".join(path) + (f" (in fragment {fragment})" if fragment else "")
                            shape.largest_list = max(shape.largest_list, (count, f"`{argument}` at {where}"))
                            page = max(page or 0, count)
                        if page is not None:
                            multiplier = _capped(multiplier * page)
                    if selection.selection_set is not None:
                        stack.append(
                            _Frame(
                                selection.selection_set,
                                child,
                                frame.above + 1,
                                multiplier,
                                path,
                                introspection,
                            )
                        )
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    parent = self.schema.get_type(condition.name.value) if condition else frame.parent
                    stack.append(
                        _Frame(
                            selection.selection_set,
                            parent,
                            frame.above,
                            frame.multiplier,
                            frame.path,
                            frame.introspection or _is_introspection(parent),
                        )
                    )
                elif isinstance(selection, FragmentSpreadNode):
                    result.spreads.append(_Spread(selection.name.value, frame.above, frame.multiplier))
        return result

    def _page(
        self,
        selection: FieldNode,
        definition: GraphQLField | None,
        path: tuple[str, ...],
        fragment: str | None,
    ) -> int | None:
        """The page size a list field is assumed to return, or None when it takes no page argument."""
        given = {argument.name.value: argument for argument in selection.arguments or ()}
        takes = definition.args if definition is not None else given
        if not any(name in takes for name in PAGE_ARGUMENTS):
            return None
        sizes: list[int] = []
        for name in PAGE_ARGUMENTS:
            argument = given.get(name)
            size = None if argument is None else self._value(argument.value)
            if size is None:
                continue
            if not 0 <= size <= self.limits.max_page_size:
                where = ".".join(path) + (f" (in fragment {fragment})" if fragment else "")
                problem = (
                    "is negative"
                    if size < 0
                    else f"exceeds the page size limit of {self.limits.max_page_size:,}"
                )
                self.report(
                    _limit_error(
                        f"{name}: {_shown(size)} at {where} {problem}",
                        "PAGE_TOO_LARGE",
                        argument,
                        limit=self.limits.max_page_size,
                        measured=size,
                    )
                )
            sizes.append(min(max(size, 0), self.limits.max_page_size))
        return max(sizes) if sizes else self.limits.default_page_size

    def _list_items(self, selection: FieldNode, definition: GraphQLField | None) -> tuple[str, int] | None:
        """The list-typed argument holding the most items and how many (a single value given where a
        list is expected counts 1), or None when the field takes no list argument."""
        if definition is None:
            return None
        largest: tuple[str, int] | None = None
        for argument in selection.arguments or ():
            argument_def = definition.args.get(argument.name.value)
            if argument_def is None or not is_list_type(get_nullable_type(argument_def.type)):
                continue
            count = self._length(argument.value)
            if largest is None or count > largest[1]:
                largest = (argument.name.value, count)
        return largest

    def _length(self, node: ValueNode) -> int:
        if isinstance(node, ListValueNode):
            return len(node.values)
        if isinstance(node, VariableNode):
            name = node.name.value
            if name not in self.variables:
                return self.list_defaults.get(name, 0)
            value = self.variables[name]
            return len(value) if isinstance(value, list) else 0 if value is None else 1
        return 1

    def _value(self, node: ValueNode) -> int | None:
        """An integer argument's value, or None when absent, null or not an integer (validation says so)."""
        if isinstance(node, IntValueNode):
            return self._literal(node)
        if isinstance(node, VariableNode):
            name = node.name.value
            value = self.variables[name] if name in self.variables else self.defaults.get(name)
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return max(-CEILING, _capped(value))
            if isinstance(value, float) and value.is_integer():
                return max(-CEILING, _capped(int(value)))
        return None

    @staticmethod
    def _literal(node: IntValueNode) -> int:
        # Python refuses to convert very long digit strings; anything that long is over every limit.
        digits = node.value.lstrip("-")
        if len(digits) > len(str(CEILING)):
            return -CEILING if node.value.startswith("-") else CEILING
        return int(node.value)


def _field(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        found: GraphQLField | None = parent.fields.get(name)
        return found
    return None


def _is_introspection(type_: GraphQLNamedType | None) -> bool:
    return type_ is not None and is_introspection_type(type_)


# --- errors ---------------------------------------------------------------------------------------------

# graphql-core's suggestion, " Did you mean 'a', 'b', or 'c'?", with words between ("the enum value",
# "to use an inline fragment on") in some rules; at the end of a message, or before "Found: ..." in a
# variable's.
_SUGGESTION = re.compile(r" Did you mean (?:[a-z ]+ )?'[^']*'(?:(?:, |,? or )'[^']*')*\?")


def without_suggestions(message: str) -> str:
    """The message without graphql-core's "Did you mean ...?", which names parts of the schema."""
    return _SUGGESTION.sub("", message)


def log_refusals(errors: list[GraphQLError], user_errors: tuple[type[Exception], ...]) -> None:
    """Log the refusals among `errors` at INFO, one line each, no traceback: the request's mistakes
    (syntax, validation, limits, bad variables) and user errors with their code. Anything else is
    unexpected, and the error masking logs it once, at ERROR with its reference (WARNING when the
    database is unreachable); use this as the schema's `process_errors`."""
    known: tuple[type[Exception], ...] = (UserError, *user_errors)
    for error in errors:
        original = error.original_error
        if (
            original is None
            or isinstance(original, known)
            or (isinstance(original, GraphQLError) and error.path is None)
        ):
            code = (error.extensions or {}).get("code") or getattr(original, "code", None)
            where = ".".join(str(key) for key in error.path) if error.path else "(request)"
            log.info(
                "GraphQL refusal %s at %s: %s", code or "GRAPHQL_VALIDATION_FAILED", where, error.message
            )


def request_error_code(error: GraphQLError) -> str:
    """The code of an error graphql-core raised about the request itself, as Apollo names them: the
    document does not parse, it does not validate against the schema, or a variable's value does not
    fit its type. (Field errors are coded where they are raised, or masked.)"""
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if isinstance(error.original_error, GraphQLError) and error.path is None:
        return "BAD_USER_INPUT"  # variable coercion: "Variable '$id' has invalid value ..."
    return "GRAPHQL_VALIDATION_FAILED"


class _MaskUnexpectedErrors(MaskErrors):
    """strawberry's error masking, deciding per error whether the client may read it.

    Errors with no underlying exception (syntax, validation, our limits) are left alone. Of those raised
    by an exception, `present_error` shows a user error with its code, passes through graphql-core's
    request errors (a variable of the wrong type: a GraphQLError with no path), and masks everything else.
    """

    def __init__(self, user_errors: tuple[type[Exception], ...], *, hide_suggestions: bool = False) -> None:
        super().__init__(should_mask_error=lambda error: error.original_error is not None)
        self.user_errors = user_errors
        self.hide_suggestions = hide_suggestions

    def _process_result(self, result: object) -> None:
        """strawberry's, without `isinstance` against a runtime-checked protocol, which looks for each of
        its members on every request (3 % of `{ __typename }`'s CPU): the protocol's one member is
        `errors`, so a result that has errors has them there."""
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = super()._process_errors(errors)
        for error in processed:
            if self.hide_suggestions:
                error.message = without_suggestions(error.message)
            if error.path is None and "code" not in (error.extensions or {}):
                error.extensions = {**(error.extensions or {}), "code": request_error_code(error)}
        return processed

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return self.present_error(error)

    def present_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, self.user_errors):
            code = getattr(original, "code", None)
            extensions = error.extensions or {}
            if isinstance(code, str) and "code" not in extensions:
                extensions = {**extensions, "code": code}
            # Named problems (an image's, say) travel with the refusal, as the HTTP endpoints send them.
            problems = getattr(original, "problems", None)
            if problems and all(hasattr(p, "as_json") for p in problems):
                extensions = {**extensions, "problems": [p.as_json() for p in problems]}
            error.extensions = extensions
            return error
        if isinstance(original, GraphQLError) and error.path is None:
            return error
        if original is not None and database_unavailable(original):
            log.warning("GraphQL field %s: database unavailable: %r", error.path, original)
            return GraphQLError(
                unavailable.MESSAGE,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                extensions={"code": "SERVICE_UNAVAILABLE", "retryAfter": unavailable.RETRY_AFTER_SECONDS},
            )
        reference = uuid.uuid4().hex
        where = ".".join(str(key) for key in error.path) if error.path else "(before execution)"
        log.error(
            "GraphQL operation %s failed at %s (reference %s)",
            self.execution_context.operation_name or "(anonymous)",
            where,
            reference,
            exc_info=original,
        )
        note_error_reference(reference)
        return GraphQLError(
            f"Internal server error (reference {reference})",
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions={"code": "INTERNAL_ERROR", "reference": reference},
        )
