"""Query limits (R8): hostile documents are refused before any resolver runs, each with a clear error,
never a 5xx."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
import strawberry
from strawberry.asgi import GraphQL

from schema.limits import QueryLimits, query_limits_extension

CALLS = {"resolved": 0}


@strawberry.type
class Version:
    number: int


@strawberry.type
class Model:
    name: str

    @strawberry.field
    def versions(self, first: int | None = None) -> list[Version]:
        CALLS["resolved"] += 1
        return [Version(number=n) for n in range(min(first or 3, 3))]


@strawberry.type
class Maker:
    name: str

    @strawberry.field
    def parent(self) -> Maker:
        CALLS["resolved"] += 1
        return Maker(name=f"parent of {self.name}")

    @strawberry.field
    def models(self, first: int | None = None) -> list[Model]:
        CALLS["resolved"] += 1
        return [Model(name=f"m{n}") for n in range(min(first or 3, 3))]


@strawberry.type
class Query:
    @strawberry.field
    def makers(self, first: int | None = None) -> list[Maker]:
        CALLS["resolved"] += 1
        return [Maker(name=f"k{n}") for n in range(min(first or 3, 3))]

    @strawberry.field
    def maker(self) -> Maker:
        CALLS["resolved"] += 1
        return Maker(name="one")


DEFAULT = QueryLimits()


def app(limits: QueryLimits = DEFAULT) -> GraphQL[Any, Any]:
    return GraphQL(
        strawberry.Schema(query=Query, extensions=[query_limits_extension(limits)]), graphql_ide=None
    )


async def ask(query: str, variables: dict[str, Any] | None = None, limits: QueryLimits = DEFAULT) -> Any:
    CALLS["resolved"] = 0
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app(limits)), base_url="http://test"
    ) as http:
        answer = await asyncio.wait_for(
            http.post("/", json={"query": query, "variables": variables or {}}), timeout=10
        )
    assert answer.status_code < 500, answer.text
    return answer.json()


def refused(body: Any, code: str) -> str:
    assert CALLS["resolved"] == 0, "a resolver ran for a refused document"
    assert body.get("data") is None
    codes = {e.get("extensions", {}).get("code") for e in body["errors"]}
    assert code in codes, body["errors"]
    return " ".join(e["message"] for e in body["errors"])


async def test_an_ordinary_query_answers() -> None:
    body = await ask("{ makers(first: 2) { name models(first: 2) { versions(first: 2) { number } } } }")
    assert "errors" not in body and len(body["data"]["makers"]) == 2


async def test_depth_50_is_refused() -> None:
    query = "{ maker { " + "parent { " * 49 + "name" + " }" * 49 + " } }"
    assert "query depth 51 exceeds the limit of 12" in refused(await ask(query), "QUERY_TOO_DEEP")
    within = "{ maker { " + "parent { " * 10 + "name" + " }" * 10 + " } }"
    assert "errors" not in await ask(within)


async def test_a_thousand_aliases_are_refused() -> None:
    query = "{ maker { " + " ".join(f"a{n}: name" for n in range(1000)) + " } }"
    assert "1,000 aliases exceed the limit of 30" in refused(await ask(query), "TOO_MANY_ALIASES")


async def test_too_many_root_fields_are_refused() -> None:
    query = "{ " + " ".join(f"r{n}: maker {{ name }}" for n in range(21)) + " }"
    message = refused(await ask(query, limits=QueryLimits(max_aliases=100)), "TOO_MANY_ROOT_FIELDS")
    assert "21 root fields exceed the limit of 20" in message


async def test_fragment_cycles_are_refused_without_hanging() -> None:
    query = """
      { maker { ...A } }
      fragment A on Maker { name models { name } ...B }
      fragment B on Maker { name ...A }
    """
    body = await ask(query)
    assert CALLS["resolved"] == 0 and body["errors"]
    assert any("Cannot spread fragment" in e["message"] for e in body["errors"])


async def test_a_huge_page_is_refused_with_its_path() -> None:
    message = refused(await ask("{ makers(first: 1000000) { name } }"), "PAGE_TOO_LARGE")
    assert "first: 1000000 at makers is outside 0-500" in message
    via_variable = await ask("query($n: Int) { makers(first: $n) { name } }", {"n": -1})
    assert "first: -1 at makers" in refused(via_variable, "PAGE_TOO_LARGE")


async def test_nested_pages_compound_into_a_cost_limit() -> None:
    query = "{ makers(first: 100) { models(first: 100) { versions(first: 10) { number } } } }"
    message = refused(await ask(query), "QUERY_TOO_COSTLY")
    assert "estimated cost 110,101 exceeds the limit of 50,000" in message  # 1 + 100 + 100*100 + 100*100*10
    variables = "query($a: Int, $b: Int) { makers(first: $a) { models(first: $b) { name } } }"
    assert "errors" not in await ask(variables, {"a": 10, "b": 10})
    assert "QUERY_TOO_COSTLY" in str(await ask(variables, {"a": 500, "b": 500}))


async def test_a_missing_first_counts_as_the_default_page() -> None:
    query = "{ makers { models { versions { number } } } }"  # 1 + 50 + 50*50 + 50*50*50
    assert "estimated cost 127,551" in refused(await ask(query), "QUERY_TOO_COSTLY")


async def test_a_5_mb_document_is_refused_quickly() -> None:
    query = "{ maker { " + "name " * 1_000_000 + "} }"
    assert len(query) > 5_000_000
    body = await ask(query)
    assert CALLS["resolved"] == 0
    assert "Document contains more than 5000 tokens" in body["errors"][0]["message"]


async def test_introspection_can_be_switched_off() -> None:
    on = await ask("{ __schema { queryType { name } } }")
    assert on["data"]["__schema"]["queryType"]["name"] == "Query"
    off = await ask("{ __schema { queryType { name } } }", limits=QueryLimits(introspection=False))
    assert "introspection" in off["errors"][0]["message"].lower()
    typename = await ask("{ __typename }", limits=QueryLimits(introspection=False))
    assert typename["data"] == {"__typename": "Query"}


@pytest.mark.parametrize("bad", ['"ten"', "1.5", "true"])
async def test_first_must_be_a_whole_number(bad: str) -> None:
    body = await ask(f"{{ makers(first: {bad}) {{ name }} }}")
    assert CALLS["resolved"] == 0 and body["errors"]
