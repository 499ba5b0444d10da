"""The database's own checks: a ping proves the database answers, without leaving anything behind."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cfl_graph.database import Database
from cfl_graph.observability import CURRENT, RequestFacts, count_statements


async def test_many_pings_at_once_give_every_connection_back_cleanly(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # One pooled connection and a few more for a moment: those past the pool are closed on return, which
    # awaits the driver (a close outside SQLAlchemy's greenlet failed, logged, and leaked the connection).
    database = Database.connect(database_url, pool_size=1, max_overflow=8)
    try:
        with caplog.at_level(logging.WARNING, logger="sqlalchemy"):
            await asyncio.gather(*(database.ping() for _ in range(30)))
        assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
        assert database.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


async def test_a_ping_through_a_connection_the_database_dropped_still_answers(
    postgres_url: str | None,
) -> None:
    if postgres_url is None:
        pytest.skip("no PostgreSQL server")
    database = Database.connect(postgres_url, pool_size=1, max_overflow=0)
    try:
        await database.ping()
        async with database.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            pid = await raw.driver_connection.fetchval("SELECT pg_backend_pid()")  # type: ignore[union-attr]
        admin = Database.connect(postgres_url)
        async with admin.engine.connect() as other:
            await other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        await admin.dispose()
        await database.ping()  # the pooled connection is dead: thrown away, and the database asked anew
        await database.ping()
    finally:
        await database.dispose()


async def test_a_ping_counts_the_statements_it_sends_into_the_request(database_url: str) -> None:
    # On PostgreSQL one statement past the engine, whose listener counts every other; on SQLite the
    # engine's own (its transaction's BEGIN, then the question): as the request's log line and metrics
    # report them, each counted once.
    database = Database.connect(database_url)
    count_statements(database.engine)
    facts = RequestFacts("ping")
    token = CURRENT.set(facts)
    try:
        await database.ping()
        one_ping = facts.sql_statements
        await database.ping()
    finally:
        CURRENT.reset(token)
        await database.dispose()
    assert one_ping == (1 if database.engine.dialect.name == "postgresql" else 2)
    assert facts.sql_statements == 2 * one_ping
