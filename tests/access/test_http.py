"""The HTTP door (R8): anonymous callers reach only health checks; every response carries the security
headers; a token's secret never reaches a log line. On a GraphQL path a refusal is a GraphQL response
with its code (issue 21); elsewhere it is `{"error": ...}`."""

from __future__ import annotations

import httpx2
import pytest

from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from tests.fixtures.parties import Tokens, make_tokens

QUERY = {"query": "{ cplSnapshot { id } }"}


def refusal(answer: httpx2.Response) -> tuple[str, str | None]:
    """A refusal's message, and its GraphQL code (None where the answer is the service's JSON shape)."""
    body = answer.json()
    if "errors" in body:
        [error] = body["errors"]
        assert set(body) == {"errors"}, body
        return error["message"], error["extensions"]["code"]
    return body["error"], None


@pytest.fixture
async def tokens(db: Database) -> Tokens:
    return await make_tokens(db)


def client(db: Database) -> httpx2.AsyncClient:
    app = create_app(Settings(database_url=db.url), db=db)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")


async def test_anonymous_callers_reach_only_the_health_check(db: Database) -> None:
    async with client(db) as http:
        assert (await http.get("/healthz")).status_code == 200
        for method, path in [
            ("POST", "/graphql"),
            ("GET", "/graphql?query={__typename}"),
            ("GET", "/nowhere"),
        ]:
            answer = await http.request(method, path, json=QUERY if method == "POST" else None)
            assert answer.status_code == 401, path
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            message, code = refusal(answer)
            assert "Authorization: Bearer" in message
            assert code == ("UNAUTHENTICATED" if path.startswith("/graphql") else None), path


@pytest.mark.parametrize(
    "kind,message",
    [
        ("expired", "the token expired on"),
        ("revoked", "the token has been revoked"),
        ("disabled_party", "the party this token belongs to is disabled"),
    ],
)
async def test_unusable_tokens_are_refused_with_the_reason(
    db: Database, tokens: Tokens, kind: str, message: str
) -> None:
    async with client(db) as http:
        answer = await http.post(
            "/graphql", json=QUERY, headers={"Authorization": f"Bearer {tokens.as_dict()[kind]}"}
        )
    assert answer.status_code == 401
    assert message in refusal(answer)[0]
    assert refusal(answer)[1] == "UNAUTHENTICATED"
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "cflg_x", "Token abc"])
async def test_other_authorization_schemes_are_refused(db: Database, header: str) -> None:
    async with client(db) as http:
        answer = await http.post("/graphql", json=QUERY, headers={"Authorization": header})
    assert answer.status_code == 401


async def test_every_role_reads_the_catalogue(db: Database, tokens: Tokens) -> None:
    async with client(db) as http:
        for kind in ("supplier", "manufacturer", "panel", "admin", "read_only_manufacturer"):
            answer = await http.post(
                "/graphql", json=QUERY, headers={"Authorization": f"Bearer {tokens.as_dict()[kind]}"}
            )
            assert (answer.status_code, answer.json()) == (200, {"data": {"cplSnapshot": None}}), kind


async def test_every_response_carries_the_security_headers(db: Database, tokens: Tokens) -> None:
    async with client(db) as http:
        answers = [
            await http.get("/healthz"),
            await http.post("/graphql", json=QUERY),
            await http.post("/graphql", json=QUERY, headers={"Authorization": f"Bearer {tokens.supplier}"}),
        ]
    for answer in answers:
        csp = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
        assert answer.headers["X-Frame-Options"] == "DENY"
