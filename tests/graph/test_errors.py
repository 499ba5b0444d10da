"""Errors in the graph (R8): no stack trace, SQL or internal message ever reaches a client; refusals
are shown with their code; the log carries the whole story under a reference the client can quote."""

from __future__ import annotations

import errno
from collections.abc import Mapping

import httpx2
import pytest

from cfl_graph.access.policy import Action, Forbidden
from cfl_graph.database import Database, database_unavailable
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from loaders.cpl import CplLoaders
from tests.fixtures.parties import make_tokens

QUERY = {"query": "{ cplSnapshot { id rowCount } }"}


async def ask(db: Database, body: Mapping[str, object]) -> httpx2.Response:
    tokens = await make_tokens(db)
    app = create_app(Settings(database_url=db.url), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
        return await http.post("/graphql", json=body, headers={"Authorization": f"Bearer {tokens.supplier}"})


async def test_an_unexpected_failure_is_masked_and_logged_with_a_reference(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: CplLoaders) -> int | None:
        raise RuntimeError('relation "cpl_current" does not exist [SQL: SELECT snapshot_id FROM cpl_current]')

    monkeypatch.setattr(CplLoaders, "current_snapshot_id", broken)
    answer = await ask(db, QUERY)
    assert answer.status_code == 200
    error = answer.json()["errors"][0]
    reference = error["extensions"]["reference"]
    assert error["message"] == f"Internal server error (reference {reference})"
    assert error["extensions"]["code"] == "INTERNAL_ERROR"
    assert "SELECT" not in answer.text and "Traceback" not in answer.text and "cpl_current" not in answer.text
    logged = [r for r in caplog.records if r.name == "cfl_graph.doors.graph.errors"]
    assert len(logged) == 1 and reference in logged[0].getMessage()
    assert logged[0].exc_info is not None and "SELECT snapshot_id" in str(logged[0].exc_info[1])


async def test_a_refusal_is_shown_with_its_code(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: CplLoaders) -> int | None:
        raise Forbidden(Action.READ_AUDIT, "the supplier role does not include it")

    monkeypatch.setattr(CplLoaders, "current_snapshot_id", refuse)
    error = (await ask(db, QUERY)).json()["errors"][0]
    assert error["message"] == "not allowed to read the audit trail: the supplier role does not include it"
    assert error["extensions"] == {"code": "FORBIDDEN"}


async def test_mistakes_in_the_query_itself_are_shown_as_they_are(db: Database) -> None:
    answer = await ask(db, {"query": "{ cplSnapshot { noSuchField } }"})
    assert "Cannot query field 'noSuchField' on type 'CplSnapshot'." in answer.json()["errors"][0]["message"]


async def test_the_served_graph_enforces_query_limits(db: Database) -> None:
    flood = "{ " + " ".join(f"s{n}: cplSnapshot {{ id }}" for n in range(31)) + " }"
    answer = await ask(db, {"query": flood})
    assert answer.status_code < 500
    codes = {e["extensions"]["code"] for e in answer.json()["errors"]}
    assert codes == {"TOO_MANY_ALIASES", "TOO_MANY_ROOT_FIELDS"}


async def test_introspection_follows_the_setting(db: Database) -> None:
    tokens = await make_tokens(db)
    app = create_app(Settings(database_url=db.url, graphql_introspection=False), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post(
            "/graphql",
            json={"query": "{ __schema { types { name } } }"},
            headers={"Authorization": f"Bearer {tokens.supplier}"},
        )
    assert "introspection" in answer.json()["errors"][0]["message"].lower()


async def test_a_database_outage_mid_request_is_service_unavailable_not_internal(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def gone(self: CplLoaders) -> int | None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    monkeypatch.setattr(CplLoaders, "current_snapshot_id", gone)
    answer = await ask(db, QUERY)
    error = answer.json()["errors"][0]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfter": 5}
    assert error["message"].startswith("the library's database is unavailable")
    assert "5432" not in answer.text


def test_only_network_failures_count_as_a_database_outage() -> None:
    assert database_unavailable(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert database_unavailable(OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432)"))
    assert database_unavailable(OSError(errno.EHOSTUNREACH, "no route"))
    assert not database_unavailable(FileNotFoundError(errno.ENOENT, "no such template"))
    assert not database_unavailable(OSError(errno.ENOSPC, "disk full"))
    assert not database_unavailable(ValueError("a bug"))
