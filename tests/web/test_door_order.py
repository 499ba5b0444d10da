"""The order of the HTTP door's steps where it matters: what is refused for its size or its rate is
refused before the token is looked up in the database, and every answer, refusals and unknown paths
included, carries the security headers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from starlette.datastructures import Headers

from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.doors.web.middleware import SECURITY_HEADERS, header_value
from cfl_graph.settings import Settings
from tests.fixtures.parties import make_tokens
from tests.fixtures.sql import watching

QUERY = {"query": "{ __typename }"}
MADE_UP = "cflg_aaaaaaaaaaaa_" + "A" * 43


def client(db: Database, **settings: int) -> httpx2.AsyncClient:
    app = create_app(Settings(database_url=db.url, **settings), db=db)  # type: ignore[arg-type]
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL the app sends meanwhile."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    with watching(db, note):
        yield sent


def assert_security_headers(answer: httpx2.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value, (answer.status_code, name)


async def test_a_body_too_large_is_refused_before_the_token_is_looked_up(db: Database) -> None:
    tokens = await make_tokens(db)
    auth = {"Authorization": f"Bearer {tokens.supplier}", "Content-Type": "application/json"}
    async with client(db, max_request_bytes=4096) as http:
        with statements(db) as sent:
            refused = await http.post("/graphql", content=b"{" + b" " * 10_000 + b"}", headers=auth)
        assert refused.status_code == 413
        assert sent == []
        assert_security_headers(refused)
        with statements(db) as sent:
            answered = await http.post(
                "/graphql", json=QUERY, headers={"Authorization": auth["Authorization"]}
            )
        assert answered.status_code == 200
        assert sent  # the token is checked in the database on every request


async def test_an_address_over_its_rate_is_refused_before_any_database_work(db: Database) -> None:
    # One a minute per token, ten per address (the address's limit is looser by `ADDRESS_FACTOR`).
    async with client(db, rate_limit_per_minute=1) as http:
        made_up = {"Authorization": f"Bearer {MADE_UP}"}
        for _ in range(10):
            assert (await http.post("/graphql", json=QUERY, headers=made_up)).status_code == 401
        with statements(db) as sent:
            refused = await http.post("/graphql", json=QUERY, headers=made_up)
        assert refused.status_code == 429
        assert sent == []
        assert_security_headers(refused)


async def test_refusals_and_unknown_paths_carry_the_security_headers(db: Database) -> None:
    async with client(db) as http:
        answers = [
            await http.get("/no/such/path", headers={"Authorization": f"Bearer {MADE_UP}"}),
            await http.post("/graphql", json=QUERY, headers={"Authorization": "Basic !!"}),
            await http.get("/api/v1/downloads"),
        ]
        tokens = await make_tokens(db)
        answers.append(
            await http.get("/no/such/path", headers={"Authorization": f"Bearer {tokens.supplier}"})
        )
    assert [a.status_code for a in answers] == [401, 401, 401, 404]
    for answer in answers:
        assert_security_headers(answer)


@pytest.mark.parametrize(
    "raw",
    [
        [],
        [(b"authorization", b"Bearer one")],
        [(b"host", b"x"), (b"authorization", b"Bearer one"), (b"authorization", b"Bearer two")],
        [(b"content-length", b"12"), (b"x-request-id", "caf\u00e9".encode("latin-1"))],
    ],
)
def test_the_door_reads_a_header_as_starlette_does(raw: list[tuple[bytes, bytes]]) -> None:
    # The layers read the raw headers (`header_value`) instead of building Starlette's mapping each time.
    scope = {"type": "http", "headers": raw}
    for name in ("authorization", "content-length", "x-request-id", "cookie"):
        assert header_value(scope, name.encode()) == Headers(scope=scope).get(name)
