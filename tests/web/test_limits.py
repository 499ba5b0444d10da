"""Request limits (R8): oversized bodies get 413 before a handler reads them; a token that asks too
often gets 429 with Retry-After, without slowing anyone else. On a GraphQL path each is a GraphQL
response with its code (issue 21); elsewhere `{"error": ...}`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from tests.fixtures.parties import Tokens, make_tokens

QUERY = {"query": "{ cplSnapshot { id } }"}


@pytest.fixture
async def tokens(db: Database) -> Tokens:
    return await make_tokens(db)


def client(db: Database, **settings: int) -> httpx2.AsyncClient:
    app = create_app(Settings(database_url=db.url, **settings), db=db)  # type: ignore[arg-type]
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")


async def test_a_body_over_the_limit_is_refused_with_413(db: Database, tokens: Tokens) -> None:
    auth = {"Authorization": f"Bearer {tokens.supplier}"}
    async with client(db, max_request_bytes=4096) as http:
        small = await http.post("/graphql", json=QUERY, headers=auth)
        big = await http.post(
            "/graphql",
            content=b"{" + b" " * 10_000 + b"}",
            headers={**auth, "Content-Type": "application/json"},
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 1000

        streamed = await http.post(
            "/graphql", content=chunks(), headers={**auth, "Content-Type": "application/json"}
        )
        elsewhere = await http.post(
            "/logout", content=b"x" * 10_000, headers={**auth, "Content-Type": "text/plain"}
        )
    assert small.status_code == 200
    too_large = "the request body is larger than the 4,096-byte limit"
    for answer in (big, streamed):
        assert answer.status_code == 413
        assert answer.json() == {"errors": [{"message": too_large, "extensions": {"code": "BAD_REQUEST"}}]}
    assert (elsewhere.status_code, elsewhere.json()) == (413, {"error": too_large})


async def test_a_token_that_asks_too_often_gets_429_and_others_do_not(db: Database, tokens: Tokens) -> None:
    async with client(db, rate_limit_per_minute=5) as http:
        supplier = {"Authorization": f"Bearer {tokens.supplier}"}
        answers = [(await http.post("/graphql", json=QUERY, headers=supplier)).status_code for _ in range(7)]
        limited = await http.post("/graphql", json=QUERY, headers=supplier)
        other = await http.post("/graphql", json=QUERY, headers={"Authorization": f"Bearer {tokens.panel}"})
    assert answers == [200] * 5 + [429] * 2
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    [error] = limited.json()["errors"]
    assert "too many requests" in error["message"]
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": int(limited.headers["Retry-After"])}
    assert other.status_code == 200


async def test_a_flood_of_made_up_tokens_is_cut_off_by_address(db: Database) -> None:
    async with client(db, rate_limit_per_minute=2) as http:  # 2 x 10 per address
        statuses = [
            (
                await http.post("/graphql", json=QUERY, headers={"Authorization": f"Bearer cflg_{n:012d}_x"})
            ).status_code
            for n in range(25)
        ]
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
