"""The GraphQL endpoint's protection (R8): a hostile document is refused before any resolver runs, with
an error that names the limit, the limit and what was measured, and never with a 5xx; an unexpected
failure reaches the client only as a reference, which the log files with the whole exception."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import strawberry
from graphql import get_introspection_query, parse
from graphql import validate as graphql_validate
from strawberry.asgi import GraphQL
from strawberry.schema import schema as strawberry_schema_module

from cfl_graph.doors.graph import protection as protection_module
from cfl_graph.doors.graph.protection import (
    PARSED_BYTES_PER_CHARACTER,
    ArgumentChecks,
    QueryLimits,
    UserError,
    ValidatedDocuments,
    log_refusals,
    protection_extensions,
    without_suggestions,
)


@dataclass
class Served:
    resolved: int = 0


Info = strawberry.Info[Served, None]


class UnknownManufacturer(UserError):
    code = "NOT_FOUND"


class Refusal(Exception):
    """A refusal from elsewhere in the service that cannot derive from UserError (like AccessDenied)."""

    code = "FORBIDDEN"


def _page(first: int | None) -> range:
    return range(min(first if first is not None else 2, 2))


@strawberry.type
class Version:
    number: int


@strawberry.type
class Model:
    name: str

    @strawberry.field
    def versions(self, info: Info, first: int | None = None) -> list[Version]:
        info.context.resolved += 1
        return [Version(number=n) for n in _page(first)]

    @strawberry.field
    def manufacturer(self, info: Info) -> Manufacturer:
        info.context.resolved += 1
        return Manufacturer(name="ACME")


@strawberry.type
class Manufacturer:
    name: str

    @strawberry.field
    def models(self, info: Info, first: int | None = None) -> list[Model]:
        info.context.resolved += 1
        return [Model(name=f"{self.name}-{n}") for n in _page(first)]

    @strawberry.field
    def models_named(self, info: Info, names: list[str]) -> list[Model]:
        info.context.resolved += 1
        return [Model(name=name) for name in names]


@strawberry.type
class Query:
    @strawberry.field
    def manufacturers(self, info: Info, first: int | None = None) -> list[Manufacturer]:
        info.context.resolved += 1
        return [Manufacturer(name=f"M{n}") for n in _page(first)]

    @strawberry.field
    def echo(self, info: Info, text: str | None = None) -> str | None:
        info.context.resolved += 1
        return text

    @strawberry.field
    def models_named(self, info: Info, names: list[str]) -> list[Model]:
        info.context.resolved += 1
        return [Model(name=name) for name in names]

    @strawberry.field
    def find(self, info: Info, id: strawberry.ID, after: str | None = None) -> str | None:
        info.context.resolved += 1
        return str(id)

    @strawberry.field
    def failing(self, info: Info) -> str | None:
        info.context.resolved += 1
        raise RuntimeError("SELECT secret FROM x")

    @strawberry.field
    def refused(self, info: Info) -> str | None:
        info.context.resolved += 1
        raise UnknownManufacturer("no manufacturer 0x1234 on the current CPL")

    @strawberry.field
    def forbidden(self, info: Info) -> str | None:
        info.context.resolved += 1
        raise Refusal("not allowed to read the audit trail")


class Endpoint(GraphQL[Served, None]):
    def __init__(
        self,
        limits: QueryLimits,
        user_errors: tuple[type[Exception], ...] = (),
        checks: ArgumentChecks | None = None,
    ) -> None:
        extensions = protection_extensions(limits, user_errors=user_errors, argument_checks=checks)
        super().__init__(strawberry.Schema(query=Query, extensions=extensions), graphql_ide=None)
        self.served = Served()

    async def get_context(self, request: Any, response: Any) -> Served:
        return self.served


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    text: str

    @property
    def codes(self) -> set[str]:
        return {error["extensions"]["code"] for error in self.body["errors"]}

    @property
    def messages(self) -> list[str]:
        return [error["message"] for error in self.body["errors"]]


class Client:
    def __init__(self, endpoint: Endpoint, http: httpx2.AsyncClient) -> None:
        self.endpoint = endpoint
        self.http = http

    @property
    def resolved(self) -> int:
        return self.endpoint.served.resolved

    async def post(self, query: str, variables: Mapping[str, object] | None = None) -> Answer:
        return self._answer(await self.http.post("/graphql", json={"query": query, "variables": variables}))

    async def get(self, query: str) -> Answer:
        return self._answer(await self.http.get("/graphql", params={"query": query}))

    @staticmethod
    def _answer(response: httpx2.Response) -> Answer:
        return Answer(response.status_code, json.loads(response.text), response.text)

    async def refused(
        self, query: str, variables: Mapping[str, object] | None = None, *, method: str = "POST"
    ) -> Answer:
        """Send a hostile document: it must be refused, without a 5xx and before any resolver runs."""
        answer = await (self.get(query) if method == "GET" else self.post(query, variables))
        assert answer.status < 500, answer.status
        assert answer.body.get("data") is None, answer.body
        assert self.resolved == 0
        return answer


@contextlib.asynccontextmanager
async def serve(
    limits: QueryLimits, user_errors: tuple[type[Exception], ...] = (), checks: ArgumentChecks | None = None
) -> AsyncIterator[Client]:
    endpoint = Endpoint(limits, user_errors, checks)
    transport = httpx2.ASGITransport(app=endpoint)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Client(endpoint, http)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with serve(QueryLimits()) as served:
        yield served


def nested(levels: int) -> str:
    """A query `levels` fields deep, each list asked for one item so that only the depth is at fault."""
    inner = "name"
    for position in range(levels - 1, 1, -1):
        inner = f"models(first: 1) {{ {inner} }}" if position % 2 == 0 else f"manufacturer {{ {inner} }}"
    return f"{{ manufacturers(first: 1) {{ {inner} }} }}"


async def test_a_query_within_all_limits_is_answered(client: Client) -> None:
    answer = await client.post(
        "{ manufacturers(first: 2) { name models(first: 2) { name versions(first: 2) { number } } } }"
    )
    assert answer.status == 200 and "errors" not in answer.body
    assert answer.body["data"]["manufacturers"][1]["models"][0] == {
        "name": "M1-0",
        "versions": [{"number": 0}, {"number": 1}],
    }
    assert client.resolved == 1 + 2 + 4


async def test_a_query_50_deep_is_refused(client: Client) -> None:
    answer = await client.refused(nested(50))
    assert answer.codes == {"QUERY_TOO_DEEP"}
    assert answer.messages == ["query depth 50 exceeds the limit of 12"]
    assert answer.body["errors"][0]["extensions"] == {"code": "QUERY_TOO_DEEP", "limit": 12, "measured": 50}


async def test_a_query_12_deep_is_answered(client: Client) -> None:
    answer = await client.post(nested(12))
    assert "errors" not in answer.body and client.resolved > 0


async def test_a_deep_query_sent_by_get_is_refused_too(client: Client) -> None:
    answer = await client.refused(nested(50), method="GET")
    assert answer.codes == {"QUERY_TOO_DEEP"}


async def test_1000_aliases_are_refused(client: Client) -> None:
    aliases = " ".join(f"n{n}: name" for n in range(1000))
    answer = await client.refused(f"{{ manufacturers(first: 1) {{ {aliases} }} }}")
    assert answer.codes == {"TOO_MANY_ALIASES"}
    assert answer.messages == ["alias count 1,000 exceeds the limit of 30"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "query",
    [
        "{ manufacturers { ...A } } fragment A on Manufacturer { ...B } fragment B on Manufacturer { ...A }",
        "{ manufacturers { ...A } } fragment A on Manufacturer { models { manufacturer { ...A } } }",
    ],
    ids=["spread-cycle", "cycle-through-fields"],
)
async def test_fragment_cycles_are_refused(client: Client, query: str) -> None:
    # How fast, against the real server: `python -m bench.refusals`. The timeout only stops a hang.
    answer = await client.refused(query)
    assert any("Cannot spread fragment 'A' within itself" in message for message in answer.messages)


@pytest.mark.timeout(10)
async def test_a_fragment_that_doubles_at_every_level_is_costed_without_expanding_it(client: Client) -> None:
    # 2**40 fields once expanded: walking them one by one would never finish.
    fragments = " ".join(f"fragment F{n} on Manufacturer {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, 41))
    query = f"{{ manufacturers(first: 1) {{ ...F40 }} }} fragment F0 on Manufacturer {{ name }} {fragments}"
    answer = await client.refused(query)
    assert answer.codes == {"QUERY_TOO_COSTLY"}
    assert answer.messages[0].startswith(f"estimated cost {1 + 2**40:,} exceeds the limit of 50,000")


async def test_a_page_of_a_million_is_refused_with_its_path(client: Client) -> None:
    answer = await client.refused("{ manufacturers(first: 1000000) { name } }")
    assert answer.codes == {"PAGE_TOO_LARGE"}
    assert answer.messages == ["first: 1,000,000 at manufacturers exceeds the page size limit of 500"]


async def test_a_negative_page_is_refused_with_its_path(client: Client) -> None:
    answer = await client.refused("{ manufacturers(first: 1) { all: models(first: -1) { name } } }")
    assert answer.codes == {"PAGE_TOO_LARGE"}
    assert answer.messages == ["first: -1 at manufacturers.all is negative"]


async def test_a_page_of_a_million_in_a_variable_is_refused(client: Client) -> None:
    query = "query ($n: Int) { manufacturers(first: 1) { models(first: $n) { name } } }"
    answer = await client.refused(query, {"n": 1_000_000})
    assert answer.messages == ["first: 1,000,000 at manufacturers.models exceeds the page size limit of 500"]


async def test_a_document_seen_valid_is_checked_again_against_each_request_s_variables(
    client: Client,
) -> None:
    """The rules that read the document alone remember a valid text; the limits, which read the
    variables, run on every request: the same text with a page of a million is still refused."""
    query = "query ($n: Int) { manufacturers(first: 1) { models(first: $n) { name } } }"
    assert (await client.post(query, {"n": 1})).status == 200
    assert "errors" not in (await client.post(query, {"n": 1})).body
    client.endpoint.served.resolved = 0
    answer = await client.refused(query, {"n": 1_000_000})
    assert answer.codes == {"PAGE_TOO_LARGE"}


async def test_a_document_seen_valid_is_not_parsed_again(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = "query ($n: Int) { manufacturers(first: 1) { models(first: $n) { name } } }"
    first = await client.post(query, {"n": 1})
    parsed: list[str] = []
    real_parse = strawberry_schema_module.parse  # type: ignore[attr-defined]

    def counted(source: str, **options: Any) -> Any:
        parsed.append(source)
        return real_parse(source, **options)

    monkeypatch.setattr(strawberry_schema_module, "parse", counted)
    again = await client.post(query, {"n": 1})
    other = await client.post("{ manufacturers(first: 1) { name } }")
    assert again.body == first.body and "errors" not in again.body
    assert parsed == ["{ manufacturers(first: 1) { name } }"]  # only the text not seen before
    assert "errors" not in other.body


async def test_a_request_seen_passing_the_request_s_rules_is_not_walked_through_them_again(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same text with the same variables (a dashboard asking the same page again) passed the rules
    that read the variables last time and passes them now without their walk; other variables, or the
    same number of another type, are walked through them as any new request, and a refusal is never
    remembered."""
    query = "query ($n: Int) { manufacturers(first: 1) { models(first: $n) { name } } }"
    first = await client.post(query, {"n": 1})
    sent: list[Mapping[str, Any]] = []
    walked: list[Mapping[str, Any]] = []
    real_validate = graphql_validate

    def counted(schema: Any, document: Any, rules: Any) -> Any:
        walked.append(sent[-1])
        return real_validate(schema, document, rules)

    monkeypatch.setattr(protection_module, "validate", counted)
    made: list[Mapping[str, Any]] = []  # the request's rules are classes, made only to be walked through
    real_rule = protection_module._query_limits_rule

    def making(limits: QueryLimits, variables: Mapping[str, Any]) -> Any:
        made.append(variables)
        return real_rule(limits, variables)

    monkeypatch.setattr(protection_module, "_query_limits_rule", making)
    answers = []
    for variables in ({"n": 1}, {"n": 2}, {"n": 2}, {"n": 2.0}):
        sent.append(variables)
        answers.append(await client.post(query, variables))
    assert all("errors" not in answer.body for answer in answers)
    assert answers[0].body == first.body
    client.endpoint.served.resolved = 0
    for _ in range(2):
        sent.append({"n": 1_000_000})
        assert (await client.refused(query, {"n": 1_000_000})).codes == {"PAGE_TOO_LARGE"}
    assert walked == [{"n": 2}, {"n": 2.0}, {"n": 1_000_000}, {"n": 1_000_000}]
    assert made == walked


def test_the_parsed_documents_kept_are_bounded_by_their_size() -> None:
    documents = ValidatedDocuments(entries=100, parsed_bytes=PARSED_BYTES_PER_CHARACTER * 1000)
    text = "{ " + "a " * 200 + "}"  # 403 characters: two fit in the bound, not three
    for key in ("one", "two", "three"):
        documents.add(key, parse(text), len(text))
    assert [documents.parsed(key) is not None for key in ("one", "two", "three")] == [False, True, True]
    assert all(documents.passed(key) for key in ("one", "two", "three"))  # known valid all the same


async def test_a_document_seen_invalid_is_refused_alike_every_time(client: Client) -> None:
    query = "{ manufacturers(first: 1) { colour } }"
    first, again = await client.refused(query), await client.refused(query)
    assert first.body == again.body
    assert first.codes == {"GRAPHQL_VALIDATION_FAILED"}


NESTED_LISTS = "{ manufacturers(first: 100) { models(first: 100) { versions(first: 10) { number } } } }"


async def test_nested_pages_compound_into_a_cost_that_is_refused(client: Client) -> None:
    answer = await client.refused(NESTED_LISTS)
    assert answer.codes == {"QUERY_TOO_COSTLY"}
    # 1 + 100 + 100 * 100 + 100 * 100 * 10
    assert answer.messages == [
        "estimated cost 110,101 exceeds the limit of 50,000: ask for smaller pages (`first`) or fewer nested lists"
    ]


VARIABLE_PAGES = "query Pages($n: Int) { manufacturers(first: $n) { models(first: $n) { versions(first: $n) { number } } } }"


async def test_the_cost_uses_the_page_size_given_in_a_variable(client: Client) -> None:
    answer = await client.refused(VARIABLE_PAGES, {"n": 100})
    assert answer.codes == {"QUERY_TOO_COSTLY"}
    assert answer.messages[0].startswith(
        "operation Pages: estimated cost 1,010,101 exceeds the limit of 50,000"
    )


async def test_the_cost_uses_a_variable_default_when_the_request_gives_none(client: Client) -> None:
    answer = await client.refused(VARIABLE_PAGES.replace("$n: Int)", "$n: Int = 100)"))
    assert answer.messages[0].startswith("operation Pages: estimated cost 1,010,101")


async def test_the_same_query_with_small_pages_in_the_variable_is_answered(client: Client) -> None:
    answer = await client.post(VARIABLE_PAGES, {"n": 5})
    assert "errors" not in answer.body and client.resolved > 0


async def test_a_list_without_first_counts_as_a_default_page(client: Client) -> None:
    answer = await client.refused("{ manufacturers { models { versions { number } } } }")
    assert answer.messages[0].startswith(f"estimated cost {1 + 50 + 50**2 + 50**3:,} exceeds")


async def test_21_root_fields_are_refused_counting_those_in_fragments(client: Client) -> None:
    own = " ".join(f"m{n}: manufacturers(first: 1) {{ name }}" for n in range(11))
    spread = " ".join(f"f{n}: manufacturers(first: 1) {{ name }}" for n in range(10))
    answer = await client.refused(f"{{ {own} ...Roots }} fragment Roots on Query {{ {spread} }}")
    assert answer.codes == {"TOO_MANY_ROOT_FIELDS"}
    assert answer.messages == ["root field count 21 exceeds the limit of 20"]


@pytest.mark.timeout(10)
async def test_a_5_mb_document_is_refused_by_its_token_count(client: Client) -> None:
    # The parser stops at the limit (the message says where): it never reads the other 5 MB of tokens.
    # How fast, against the real server: `python -m bench.refusals`.
    query = "{ " + "manufacturers { name } " * (5 * 1024 * 1024 // 23) + "}"
    assert len(query) >= 5_000_000
    answer = await client.refused(query)
    assert answer.codes == {"TOO_MANY_TOKENS"}
    assert answer.messages == [
        "document token count exceeds the limit of 5,000 (parsing stopped at token 5,001)"
    ]


async def test_an_unexpected_failure_is_masked_and_logged_under_the_same_reference(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cfl_graph.doors.graph.errors"):
        answer = await client.post("{ failing }")
    assert answer.status == 200 and answer.body["data"] == {"failing": None}
    (error,) = answer.body["errors"]
    reference = error["extensions"]["reference"]
    assert len(reference) == 32 and int(reference, 16) >= 0
    assert error["message"] == f"Internal server error (reference {reference})"
    assert error["extensions"] == {"code": "INTERNAL_ERROR", "reference": reference}
    assert "SELECT" not in answer.text and "Traceback" not in answer.text and "secret" not in answer.text
    (logged,) = [record for record in caplog.records if record.name == "cfl_graph.doors.graph.errors"]
    assert logged.levelno == logging.ERROR and reference in logged.getMessage()
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], RuntimeError) and str(logged.exc_info[1]) == "SELECT secret FROM x"


async def test_a_user_error_is_shown_as_it_is_with_its_code(client: Client) -> None:
    answer = await client.post("{ refused }")
    assert answer.body["errors"] == [
        {
            "message": "no manufacturer 0x1234 on the current CPL",
            "locations": [{"line": 1, "column": 3}],
            "path": ["refused"],
            "extensions": {"code": "NOT_FOUND"},
        }
    ]


async def test_other_refusals_are_shown_with_their_code_when_the_app_names_them() -> None:
    async with serve(QueryLimits(), user_errors=(Refusal,)) as client:
        answer = await client.post("{ forbidden }")
    (error,) = answer.body["errors"]
    assert error["message"] == "not allowed to read the audit trail"
    assert error["extensions"] == {"code": "FORBIDDEN"}


async def test_other_exceptions_are_masked_when_the_app_does_not_name_them(client: Client) -> None:
    answer = await client.post("{ forbidden }")
    assert answer.body["errors"][0]["extensions"]["code"] == "INTERNAL_ERROR"
    assert "audit" not in answer.text


async def test_mistakes_in_the_document_are_shown_as_they_are(client: Client) -> None:
    syntax = await client.refused("{ manufacturers { name }")
    assert syntax.messages[0].startswith("Syntax Error: Expected Name, found <EOF>.")
    unknown = await client.refused("{ manufacturers { serial } }")
    assert unknown.messages == ["Cannot query field 'serial' on type 'Manufacturer'."]


async def test_every_mistake_in_the_request_carries_the_code_clients_branch_on(client: Client) -> None:
    # Apollo's codes, so that a client can tell its own mistake from ours without reading the message.
    syntax = await client.refused("{ manufacturers { name }")
    assert syntax.codes == {"GRAPHQL_PARSE_FAILED"}
    unknown = await client.refused("{ manufacturers { serial } }")
    assert unknown.codes == {"GRAPHQL_VALIDATION_FAILED"}
    wrong_type = await client.refused("query($n: Int!) { manufacturers(first: $n) { name } }", {"n": "x"})
    assert wrong_type.codes == {"BAD_USER_INPUT"}
    assert wrong_type.messages[0].startswith("Variable '$n' has invalid value")
    missing = await client.refused("query($n: Int!) { manufacturers(first: $n) { name } }", {})
    assert missing.codes == {"BAD_USER_INPUT"}
    # A code a rule of ours names is kept: it says more.
    deep = await client.refused(nested(50))
    assert deep.codes == {"QUERY_TOO_DEEP"}


async def test_introspection_is_answered_when_allowed(client: Client) -> None:
    answer = await client.post(get_introspection_query())
    assert "errors" not in answer.body
    assert answer.body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_introspection_that_nests_type_lists_is_refused(client: Client) -> None:
    answer = await client.refused(
        '{ __type(name: "Query") { fields { type { fields { type { fields { name } } } } } } }'
    )
    assert answer.codes == {"QUERY_TOO_DEEP"}


async def test_an_of_type_chain_deeper_than_any_type_wraps_is_refused(client: Client) -> None:
    chain = "name"
    for _ in range(11):
        chain = f"ofType {{ {chain} }}"
    answer = await client.refused(f"{{ __schema {{ types {{ fields {{ type {{ {chain} }} }} }} }} }}")
    assert answer.codes == {"QUERY_TOO_DEEP"}
    assert answer.messages == ["introspection nests `ofType` more than 10 deep (no type wraps that deeply)"]
    # Through fragments too, each spread counted where it stands.
    fragments = "fragment T on __Type { ofType { ofType { ofType { ...U } } } } fragment U on __Type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } }"
    answer = await client.refused(f"{{ __schema {{ types {{ ...T }} }} }} {fragments}")
    assert answer.codes == {"QUERY_TOO_DEEP"}


async def test_several_operations_without_an_operation_name_are_refused_not_run_first_come(
    client: Client,
) -> None:
    document = "query A { manufacturers { name } } query B { manufacturers { name } }"
    answer = await client.refused(document)
    assert answer.codes == {"OPERATION_NAME_REQUIRED"}
    assert answer.messages == [
        "the document holds 2 operations (A, B); name the one to run with `operationName`"
    ]
    named = await client.http.post("/graphql", json={"query": document, "operationName": "B"})
    assert named.json() == {"data": {"manufacturers": [{"name": "M0"}, {"name": "M1"}]}}


@pytest.mark.parametrize(
    "query,variables,message",
    [
        ('{ echo(text: "a\\u0000b") }', None, "a string literal holds U+0000, which no text may hold"),
        (
            "query($w: String) { echo(text: $w) }",
            {"w": "a\x00b"},
            "variable $w holds U+0000, which no text may hold",
        ),
        (
            "query($w: String) { echo(text: $w) }",
            {"w": "fine", "extra": {"list": ["fine", "\ud800"]}},
            "variable $extra.list[1] holds U+D800, which no text may hold",
        ),
    ],
)
async def test_a_nul_or_a_lone_surrogate_anywhere_in_the_request_is_refused(
    client: Client, query: str, variables: dict[str, object] | None, message: str
) -> None:
    body = json.dumps({"query": query, "variables": variables})  # escaped: \\ud800 has no UTF-8 form
    response = await client.http.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and client.resolved == 0
    assert message in [e["message"] for e in response.json()["errors"]]
    assert "INVALID_TEXT" in {e["extensions"]["code"] for e in response.json()["errors"]}


async def test_introspection_can_be_turned_off_but_typename_still_answers() -> None:
    async with serve(QueryLimits(introspection=False)) as client:
        for query in ("{ __schema { types { name } } }", '{ __type(name: "Query") { name } }'):
            answer = await client.refused(query)
            assert answer.codes == {"INTROSPECTION_DISABLED"}
            assert "introspection has been disabled" in answer.messages[0]
        typename = await client.post("{ __typename }")
        assert typename.body == {"data": {"__typename": "Query"}}


# --- list arguments (issue 15) -------------------------------------------------------------------------


async def test_a_list_argument_multiplies_the_selection_below_it(client: Client) -> None:
    # 1 + 400 x (name + versions + 2 x number) = 1,601 with pages of 2 below.
    within = await client.post(
        "query($n: [String!]!) { modelsNamed(names: $n) { name versions(first: 2) { number } } }",
        {"n": [f"M{i}" for i in range(400)]},
    )
    assert "errors" not in within.body and len(within.body["data"]["modelsNamed"]) == 400
    client.endpoint.served.resolved = 0
    costly = await client.refused(
        "query($n: [String!]!) { modelsNamed(names: $n) { name versions(first: 500) { number } } }",
        {"n": [f"M{i}" for i in range(200)]},
    )
    assert costly.codes == {"QUERY_TOO_COSTLY"}
    assert costly.body["errors"][0]["extensions"]["measured"] == 1 + 200 * (1 + 1 + 500)


async def test_list_items_are_capped_per_operation_with_pages_above_them(client: Client) -> None:
    cases = [
        # Two aliases of 300 items each.
        (
            "query($n: [String!]!) { a: modelsNamed(names: $n) { name } b: modelsNamed(names: $n) { name } }",
            {"n": ["x"] * 300},
            600,
        ),
        # 60 items under a page of 10 manufacturers: asked for 10 times.
        (
            "query($n: [String!]!) { manufacturers(first: 10) { modelsNamed(names: $n) { name } } }",
            {"n": ["x"] * 60},
            600,
        ),
        # A variable's default list counts when the request gives no value: 3 under a page of 200.
        (
            'query($n: [String!]! = ["a", "b", "c"]) { manufacturers(first: 200) { modelsNamed(names: $n) { name } } }',
            {},
            600,
        ),
    ]
    for query, variables, measured in cases:
        answer = await client.refused(query, variables)
        assert answer.codes == {"LIST_TOO_LONG"}, answer.body
        assert answer.body["errors"][0]["extensions"] == {
            "code": "LIST_TOO_LONG",
            "limit": 500,
            "measured": measured,
        }
    within = await client.post(
        "query($n: [String!]!) { manufacturers(first: 10) { modelsNamed(names: $n) { name } } }",
        {"n": ["x"] * 50},
    )
    assert "errors" not in within.body


async def test_a_single_value_where_a_list_is_expected_counts_one(client: Client) -> None:
    answer = await client.post("query($n: [String!]!) { modelsNamed(names: $n) { name } }", {"n": "only"})
    assert answer.body == {"data": {"modelsNamed": [{"name": "only"}]}}


async def test_the_list_limit_is_a_setting() -> None:
    async with serve(QueryLimits(max_list_items=2)) as client:
        answer = await client.refused('{ modelsNamed(names: ["a", "b", "c"]) { name } }')
    assert answer.codes == {"LIST_TOO_LONG"}
    assert "`names` at modelsNamed, 3" in answer.messages[0]


# --- argument checks -----------------------------------------------------------------------------------


def _ascii_id(value: object) -> str | None:
    return None if isinstance(value, str) and value.isascii() else "ids are ASCII"


def _cursor(value: object) -> str | None:
    return None if value == "good-cursor" else "not a cursor this list wrote"


async def test_argument_checks_refuse_literals_variables_and_list_items_naming_the_argument() -> None:
    checks = ArgumentChecks(by_type={"ID": _ascii_id}, by_name={"after": _cursor})
    async with serve(QueryLimits(), checks=checks) as client:
        literal = await client.refused('{ find(id: "\u0663") }')
        variable = await client.refused("query($i: ID!) { find(id: $i) }", {"i": "²"})
        cursor = await client.refused('query($a: String) { find(id: "1", after: $a) }', {"a": "forged"})
        fine = await client.post('query($a: String) { find(id: "12", after: $a) }', {"a": "good-cursor"})
    assert literal.body["errors"][0]["message"] == "argument `id` of `Query.find`: ids are ASCII"
    assert literal.codes == variable.codes == cursor.codes == {"BAD_USER_INPUT"}
    assert cursor.messages == ["argument `after` of `Query.find`: not a cursor this list wrote"]
    assert fine.body == {"data": {"find": "12"}}


# --- introspection off: no suggestions; refusals logged quietly ------------------------------------------


async def test_with_introspection_off_errors_suggest_no_names() -> None:
    async with serve(QueryLimits(introspection=False)) as client:
        answer = await client.refused("{ manufacturers { nme } }")
    assert answer.messages == ["Cannot query field 'nme' on type 'Manufacturer'."]
    async with serve(QueryLimits()) as client:
        suggested = await client.refused("{ manufacturers { nme } }")
    assert suggested.messages == ["Cannot query field 'nme' on type 'Manufacturer'. Did you mean 'name'?"]


@pytest.mark.parametrize(
    "message,shown",
    [
        (
            "Cannot query field 'nme' on type 'M'. Did you mean 'name'?",
            "Cannot query field 'nme' on type 'M'.",
        ),
        (
            "Unknown argument 'x' on field 'Q.f'. Did you mean 'a', 'b', or 'c'?",
            "Unknown argument 'x' on field 'Q.f'.",
        ),
        (
            "Value 'esme' does not exist in 'T' enum. Did you mean the enum value 'ESME' or 'GSME'?",
            "Value 'esme' does not exist in 'T' enum.",
        ),
        (
            "Variable '$f' has invalid value: not 'deviceTyp'. Did you mean 'deviceType'? Found: {'a': 1}.",
            "Variable '$f' has invalid value: not 'deviceTyp'. Found: {'a': 1}.",
        ),
        (
            "Cannot query field 'x' on type 'U'. Did you mean to use an inline fragment on 'A' or 'B'?",
            "Cannot query field 'x' on type 'U'.",
        ),
        ("A message with no suggestion", "A message with no suggestion"),
    ],
)
def test_without_suggestions_removes_every_shape_of_did_you_mean(message: str, shown: str) -> None:
    assert without_suggestions(message) == shown


def test_log_refusals_logs_the_callers_mistakes_at_info_and_leaves_failures_to_the_masking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from graphql import GraphQLError

    errors = [
        GraphQLError("Cannot query field 'x' on type 'Q'."),
        GraphQLError("no manufacturer 0x1234", path=["refused"], original_error=UnknownManufacturer("no")),
        GraphQLError("boom", path=["failing"], original_error=RuntimeError("SELECT secret")),
    ]
    errors[1].extensions = {"code": "NOT_FOUND"}
    with caplog.at_level(logging.DEBUG, logger="cfl_graph.doors.graph.errors"):
        log_refusals(errors, ())
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            "GraphQL refusal GRAPHQL_VALIDATION_FAILED at (request): Cannot query field 'x' on type 'Q'.",
        ),
        (logging.INFO, "GraphQL refusal NOT_FOUND at refused: no manufacturer 0x1234"),
    ]
    assert all(record.exc_info is None for record in caplog.records)
