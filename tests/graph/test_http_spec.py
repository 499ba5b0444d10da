"""The graph speaks GraphQL over HTTP to the letter (issue 21): graphql-http's audit suite passes every
MUST and SHOULD against a real server with a token; `application/graphql-response+json` is offered and
a request that fails before execution is then a 400 without `data`, while `application/json` keeps its
legacy 200; and every refusal at `/graphql`, whoever makes it (sign-in, CSRF, body size, rate, a
database outage, the view), is a GraphQL response with a code clients know, while other paths keep
their JSON shape (the CSRF refusal's, FORBIDDEN: tests/access/test_sessions.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.doors.web.graphql_http import GRAPHQL_RESPONSE, response_media_type
from tests.fixtures.figures import report
from tests.fixtures.library import World, make_world, serving
from tests.fixtures.node import ROOT, run_node

pytestmark = pytest.mark.postgres

AUDIT = ROOT / "tests" / "graph" / "node" / "http_audit.mjs"
GR = {"Accept": GRAPHQL_RESPONSE}
JSON_ = {"Accept": "application/json"}
GRAPHS = ["/graphql", "/subgraphs/cpl/graphql", "/subgraphs/cfl/graphql"]


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    return await make_world(db, tmp_path)


def graph(world: World, token: str | None = None, **settings: Any) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token or world.tokens.supplier}"}
    app = world.app(**settings)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t", headers=headers)


def refusal(answer: httpx2.Response) -> tuple[int, str, str]:
    """Status, code and message of an answer that must be a GraphQL response holding one refusal."""
    body = answer.json()
    assert set(body) == {"errors"}, body
    [error] = body["errors"]
    assert set(error) == {"message", "extensions"} and error["message"], error
    return answer.status_code, error["extensions"]["code"], error["message"]


# --- the audit suite ---------------------------------------------------------------------------------


async def test_graphql_http_s_audit_suite_passes_every_must_and_should(world: World, node: str) -> None:
    """On `/graphql`, and on the subgraphs, which a router speaks to as a GraphQL client too."""
    failed = []
    async with serving(world.app()) as url:
        for path in GRAPHS:
            run = await run_node(node, AUDIT, f"{url}{path}", world.tokens.supplier)
            results = run.json()
            assert len(results) == 61, len(results)
            tally = Counter((result["name"].split()[0], result["status"] == "ok") for result in results)
            failed += [f"{path} {r['id']} {r['name']}: {r['reason']}" for r in results if r["status"] != "ok"]
            report(
                f"graphql-http audit of {path}: "
                + ", ".join(
                    f"{level} {tally[level, True]} ok / {tally[level, False]} not"
                    for level in ("MUST", "SHOULD", "MAY")
                )
            )
    assert not [line for line in failed if line.split()[2] in ("MUST", "SHOULD")], "\n".join(failed)
    assert not failed, "\n".join(failed)  # the MAYs too: each is a choice made, not an accident


# --- media types -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        # Apollo Client 4's header
        (f"{GRAPHQL_RESPONSE},application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"application/json;q=1, {GRAPHQL_RESPONSE};q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=0, */*", "application/json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
        ("APPLICATION/GRAPHQL-RESPONSE+JSON", GRAPHQL_RESPONSE),
        ("application/json; charset=utf-8", "application/json"),
        ("text/html", None),
        ("application/xml", None),
        ("application/json;q=0", None),
        ("application/json;q=abc", None),
    ],
)
def test_the_answer_is_written_in_the_media_type_the_client_prefers(
    accept: str | None, chosen: str | None
) -> None:
    assert response_media_type(accept) == chosen


async def test_a_request_that_fails_before_execution_is_a_400_without_data_in_graphql_response_json(
    world: World,
) -> None:
    failures = {
        "{ deviceModels { totalCount }": "GRAPHQL_PARSE_FAILED",
        "{ deviceModels { totalCont } }": "GRAPHQL_VALIDATION_FAILED",
        "{ deviceModels(first: 501) { totalCount } }": "PAGE_TOO_LARGE",
    }
    async with graph(world) as http:
        for query, code in failures.items():
            modern = await http.post("/graphql", json={"query": query}, headers=GR)
            assert modern.status_code == 400, modern.text
            assert modern.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
            assert "data" not in modern.json() and modern.json()["errors"][0]["extensions"]["code"] == code
            legacy = await http.post("/graphql", json={"query": query}, headers=JSON_)
            assert legacy.status_code == 200 and legacy.headers["content-type"].startswith("application/json")
            assert legacy.json()["data"] is None
            assert legacy.json()["errors"] == modern.json()["errors"]
        coercion = {
            "query": "query($n: Int!) { deviceModels(first: $n) { totalCount } }",
            "variables": {"n": "x"},
        }
        modern = await http.post("/graphql", json=coercion, headers=GR)
        legacy = await http.post("/graphql", json=coercion, headers=JSON_)
        answered = await http.post("/graphql", json={**coercion, "variables": {"n": 1}}, headers=GR)
    assert (modern.status_code, modern.json()["errors"][0]["extensions"]["code"]) == (400, "BAD_USER_INPUT")
    assert (legacy.status_code, legacy.json()["data"]) == (200, None)
    assert answered.status_code == 200 and answered.json() == {"data": {"deviceModels": {"totalCount": 4}}}


async def test_an_error_during_execution_keeps_data_and_a_200_in_either_media_type(world: World) -> None:
    # A supplier may not read a manufacturer's consistency report: a field error that reaches the root
    # (the field is not nullable), so `data` is null, yet the request did execute.
    query = '{ consistencyReport(manufacturerId: "10B2") { manufacturerId } }'
    async with graph(world) as http:
        for accept in (GR, JSON_):
            answer = await http.post("/graphql", json={"query": query}, headers=accept)
            body = answer.json()
            assert answer.status_code == 200, body
            assert "data" in body and body["data"] is None
            assert body["errors"][0]["path"] == ["consistencyReport"]
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_kept_answer_has_one_etag_per_media_type_and_each_is_honoured(world: World) -> None:
    params = {"query": "{ cplSnapshot { rowCount } }"}
    async with graph(world) as http:
        as_json = await http.get("/graphql", params=params, headers=JSON_)
        modern = await http.get("/graphql", params=params, headers=GR)
        assert as_json.content == modern.content and as_json.headers["etag"] != modern.headers["etag"]
        assert "Accept" in modern.headers["vary"]
        same = await http.get(
            "/graphql", params=params, headers={**GR, "If-None-Match": modern.headers["etag"]}
        )
        other = await http.get(
            "/graphql", params=params, headers={**GR, "If-None-Match": as_json.headers["etag"]}
        )
    assert same.status_code == 304
    assert other.status_code == 200 and other.headers["content-type"].startswith(GRAPHQL_RESPONSE)


# --- refusals from the view --------------------------------------------------------------------------


async def test_the_view_s_refusals_are_graphql_responses_with_their_codes(world: World) -> None:
    publish = 'mutation { discardImage(id: "1") }'
    async with graph(world) as http:
        answers = {
            "batch": await http.post("/graphql", json=[{"query": "{ __typename }"}]),
            "no content type": await http.post("/graphql", content=b'{"query": "{ __typename }"}'),
            "text/plain": await http.post(
                "/graphql", content=b"{ __typename }", headers={"Content-Type": "text/plain"}
            ),
            "Latin-1": await http.post(
                "/graphql",
                content=b'{"query": "{ __typename }"}',
                headers={"Content-Type": "application/json; charset=iso-8859-1"},
            ),
            "empty body": await http.post(
                "/graphql", content=b"", headers={"Content-Type": "application/json"}
            ),
            "not JSON": await http.post(
                "/graphql", content=b"{", headers={"Content-Type": "application/json"}
            ),
            "no query": await http.post("/graphql", json={"variables": {}}),
            "query a number": await http.post("/graphql", json={"query": 1}),
            "variables a list": await http.post(
                "/graphql", json={"query": "{ __typename }", "variables": []}
            ),
            "no such operation": await http.post(
                "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
            ),
            "mutation over GET": await http.get("/graphql", params={"query": publish}),
            "PUT": await http.put("/graphql", json={"query": "{ __typename }"}),
            "only HTML accepted": await http.get(
                "/graphql", params={"query": "{ __typename }"}, headers={"Accept": "text/html"}
            ),
        }
    expected = {
        "batch": (400, "BAD_REQUEST", "batched requests (a JSON array) are not accepted"),
        "no content type": (415, "BAD_REQUEST", "send the request as application/json"),
        "text/plain": (415, "BAD_REQUEST", "not text/plain"),
        "Latin-1": (415, "BAD_REQUEST", "(UTF-8), not application/json; charset=iso-8859-1"),
        "empty body": (400, "BAD_REQUEST", "the request body is empty"),
        "not JSON": (400, "BAD_REQUEST", "not valid JSON"),
        "no query": (400, "BAD_REQUEST", "the request holds no `query`"),
        "query a number": (400, "BAD_REQUEST", "`query` must be a string (or null), not a number"),
        "variables a list": (400, "BAD_REQUEST", "`variables` must be an object (or null), not an array"),
        "no such operation": (400, "OPERATION_RESOLUTION_FAILURE", "no operation named 'B'"),
        "mutation over GET": (405, "BAD_REQUEST", "a mutation is sent with POST"),
        "PUT": (405, "BAD_REQUEST", "GET (queries) or POST"),
        "only HTML accepted": (406, "BAD_REQUEST", "application/graphql-response+json"),
    }
    for name, answer in answers.items():
        status, code, message = refusal(answer)
        want_status, want_code, want_words = expected[name]
        assert (status, code) == (want_status, want_code), (name, answer.text)
        assert want_words in message, (name, message)
    assert answers["mutation over GET"].headers["allow"] == "POST"
    assert answers["PUT"].headers["allow"] == "GET, POST"


async def test_a_body_sent_in_pieces_is_read_whole_and_a_client_gone_first_is_not_answered(
    world: World,
) -> None:
    """The view reads the ASGI messages of a body itself: every piece, in order; a client that goes away
    before its body arrives gets the quiet 400 nobody reads, not an error logged as ours."""
    app = world.app()
    body = b'{"query": "{ __typename }", "variables": {"unused": "\xc3\xa9"}}'

    async def ask(messages: list[dict[str, Any]]) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"t"),
                (b"authorization", f"Bearer {world.tokens.supplier}".encode()),
                (b"content-type", b"application/json"),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("t", 80),
        }
        pending = list(messages)
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            return pending.pop(0) if pending else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            else:
                answer["body"] += message.get("body", b"")

        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
        return answer["status"], answer["body"]

    pieces = [body[:7], body[7:30], body[30:]]
    status, answered = await ask(
        [{"type": "http.request", "body": piece, "more_body": i < 2} for i, piece in enumerate(pieces)]
    )
    assert (status, answered) == (200, b'{"data":{"__typename":"Query"}}')
    status, answered = await ask([{"type": "http.request", "body": body[:10], "more_body": True}])
    assert (status, answered) == (400, b"")


async def test_a_persisted_query_unknown_by_its_hash_is_a_200_in_either_media_type(world: World) -> None:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    async with graph(world) as http:
        for accept in (GR, JSON_):
            answer = await http.post("/graphql", json={"extensions": extensions}, headers=accept)
            assert refusal(answer)[:2] == (200, "PERSISTED_QUERY_NOT_FOUND")
            assert answer.headers["content-type"].startswith(accept["Accept"])


# --- refusals at the doors before the view -------------------------------------------------------------


async def test_the_doors_refusals_are_graphql_responses_on_every_graphql_path(world: World) -> None:
    query = {"query": "{ __typename }"}
    app = world.app(rate_limit_per_minute=3, max_request_bytes=1024)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http:
        for path in GRAPHS:
            for accept in (GR, JSON_, {}):
                anonymous = await http.post(path, json=query, headers=accept)
                assert refusal(anonymous)[:2] == (401, "UNAUTHENTICATED"), (path, accept)
                assert anonymous.headers["www-authenticate"] == "Bearer"
                media = accept.get("Accept", "application/json")
                assert anonymous.headers["content-type"] == f"{media}; charset=utf-8"
            bad = await http.post(path, json=query, headers={"Authorization": "Bearer cflg_nope_nope"})
            assert refusal(bad)[:2] == (401, "UNAUTHENTICATED")
            too_large = await http.post(
                path,
                content=b'{"query": "{ __typename }", "x": "' + b"x" * 2000 + b'"}',
                headers={
                    "Authorization": f"Bearer {world.tokens.supplier}",
                    "Content-Type": "application/json",
                },
            )
            assert refusal(too_large)[:2] == (413, "BAD_REQUEST")
        auth = {"Authorization": f"Bearer {world.tokens.panel}"}
        statuses = [(await http.post("/graphql", json=query, headers=auth)).status_code for _ in range(4)]
        limited = await http.post("/graphql", json=query, headers={**auth, **GR})
        # Elsewhere the service's own shape is kept.
        page_refusal = await http.get("/api/v1/downloads")
    assert statuses == [200, 200, 200, 429]
    status, code, message = refusal(limited)
    assert (status, code) == (429, "RATE_LIMITED") and "too many requests" in message
    retry = int(limited.headers["Retry-After"])
    assert retry >= 1 and limited.json()["errors"][0]["extensions"]["retryAfter"] == retry
    assert page_refusal.status_code == 401 and set(page_refusal.json()) == {"error"}


async def test_a_database_outage_at_the_door_is_a_graphql_503(world: World, tmp_path: Path) -> None:
    # Nothing listens on port 9: signing in cannot reach the database.
    unreachable = Database.connect("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    app = create_app(world.settings, db=unreachable, store=world.store)
    headers = {"Authorization": f"Bearer {world.tokens.supplier}", **GR}
    try:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http:
            graphql = await http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
            other = await http.get("/api/v1/downloads", headers=headers)
    finally:
        await unreachable.dispose()
    status, code, message = refusal(graphql)
    assert (status, code) == (503, "SERVICE_UNAVAILABLE") and "try again" in message
    assert (
        graphql.json()["errors"][0]["extensions"]["retryAfter"] == 5 and graphql.headers["retry-after"] == "5"
    )
    assert other.status_code == 503 and other.json()["code"] == "SERVICE_UNAVAILABLE"
