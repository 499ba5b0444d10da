"""The database's own checks: a ping proves the database answers, without leaving anything behind; a read
of one row on the driver's connection answers what SQLAlchemy would."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import String, TypeDecorator, bindparam, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from cfl_graph.access.tokens import _TOKEN_WITH_PARTY, TOKEN_PATTERN
from cfl_graph.database import Database, DriverStatement
from cfl_graph.observability import CURRENT, RequestFacts, count_statements
from cfl_graph.tables import Party, PartyManufacturer, Role
from tests.fixtures.parties import OWN_MANUFACTURER_ID, make_tokens
from tests.fixtures.sql import counting


async def _drop_the_pooled_connection(database: Database, postgres_url: str) -> None:
    async with database.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pid = await raw.driver_connection.fetchval("SELECT pg_backend_pid()")  # type: ignore[union-attr]
    admin = Database.connect(postgres_url)
    async with admin.engine.connect() as other:
        await other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    await admin.dispose()


_WORD = select(func.upper(bindparam("word", type_=String)).label("loud"))


async def _ping(database: Database, word: str) -> None:
    await database.ping()


async def _read_one(database: Database, word: str) -> None:
    assert await database.read_one(_WORD, {"word": word}) == (word.upper(),)


@pytest.mark.parametrize("ask", [_ping, _read_one], ids=["pings", "reads of one row"])
async def test_many_questions_at_once_give_every_connection_back_cleanly(
    database_url: str, caplog: pytest.LogCaptureFixture, ask: Callable[[Database, str], Awaitable[None]]
) -> None:
    # One pooled connection and a few more for a moment: those past the pool are closed on return, which
    # awaits the driver (a close outside SQLAlchemy's greenlet failed, logged, and leaked the connection).
    database = Database.connect(database_url, pool_size=1, max_overflow=8)
    try:
        with caplog.at_level(logging.WARNING, logger="sqlalchemy"):
            await asyncio.gather(*(ask(database, f"word {n}") for n in range(30)))
        assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
        assert database.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


@pytest.mark.parametrize("ask", [_ping, _read_one], ids=["pings", "reads of one row"])
async def test_the_same_question_asked_thirty_times_at_once_is_sent_twice(
    database_url: str, ask: Callable[[Database, str], Awaitable[None]]
) -> None:
    # The first is sent at once; the other 29 come while it is on its way and share the next round trip,
    # begun after all of them asked (`cfl_graph.round_trips`). Different words are different questions.
    database = Database.connect(database_url)
    try:
        with counting(database) as sent:
            await asyncio.gather(*(ask(database, "same") for _ in range(30)))
        assert len(sent) == 2
        with counting(database) as sent:
            await asyncio.gather(*(ask(database, f"word {n}") for n in range(3)))
        assert len(sent) == (2 if ask is _ping else 3)  # a ping is the same question whatever the word
    finally:
        await database.dispose()


@pytest.mark.parametrize("ask", [_ping, _read_one], ids=["a ping", "a read of one row"])
async def test_a_question_through_a_connection_the_database_dropped_still_answers(
    postgres_url: str | None, ask: Callable[[Database, str], Awaitable[None]]
) -> None:
    if postgres_url is None:
        pytest.skip("no PostgreSQL server")
    database = Database.connect(postgres_url, pool_size=1, max_overflow=0)
    try:
        await ask(database, "one")
        await _drop_the_pooled_connection(database, postgres_url)
        await ask(database, "two")  # the pooled connection is dead: thrown away, and the database asked anew
        await ask(database, "three")
        assert database.engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await database.dispose()


# --- a read of one row (`Database.read_one`), on PostgreSQL past SQLAlchemy's execution ------------------


class _Lowered(TypeDecorator[str]):
    """A parameter SQLAlchemy lowers before it is sent: a read that skipped bind processors finds nothing."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.lower()


def _as_read(row: Any) -> Any:
    """A row with its names and the type of every value, so that `Role.SUPPLIER` is not `"supplier"`."""
    return None if row is None else (row._fields, [(type(value), value) for value in row])


async def _both_ways(db: Database, statement: Any, params: dict[str, Any]) -> Any:
    reference = await db.read_one_through_sqlalchemy(statement, params)
    assert _as_read(await db.read_one(statement, params)) == _as_read(reference)
    return reference


async def test_a_token_read_on_the_driver_is_the_row_sqlalchemy_reads(db: Database) -> None:
    # Every kind of token (expired, revoked, a disabled party's, read-only; a party of two manufacturer
    # ids, which the statement joins with its own separator) and an unknown id, both ways, on both
    # databases: the same names, values and types (the role an enum member, the times UTC-aware).
    tokens = await make_tokens(db)
    async with db.sessions() as session, session.begin():
        party_id = (
            await session.execute(select(Party.id).where(Party.name == "Harrow Instruments plc"))
        ).scalar()
        session.add(PartyManufacturer(party_id=party_id, manufacturer_id="00FE"))
    read = []
    for text in tokens.as_dict().values():
        match = TOKEN_PATTERN.fullmatch(text)
        assert match is not None
        read.append(await _both_ways(db, _TOKEN_WITH_PARTY, {"public_id": match.group(1)}))
    assert await _both_ways(db, _TOKEN_WITH_PARTY, {"public_id": "0" * 16}) is None
    assert {type(row.role) for row in read} == {Role}
    assert {row.revoked_at is None for row in read} == {True, False}
    assert all(row.expires_at.tzinfo is not None for row in read)
    assert any(row.manufacturer_ids and "," in row.manufacturer_ids for row in read)
    assert any(row.manufacturer_ids == OWN_MANUFACTURER_ID for row in read)


async def test_a_read_of_one_row_applies_its_parameters_conversions(db: Database) -> None:
    await make_tokens(db)
    statement = select(Party.name, Party.role).where(
        func.lower(Party.name) == bindparam("name", type_=_Lowered()), Party.role == bindparam("role")
    )
    found = await _both_ways(db, statement, {"name": "CALDER SUPPLY LTD", "role": Role.SUPPLIER})
    assert found == ("Calder Supply Ltd", Role.SUPPLIER)
    assert await _both_ways(db, statement, {"name": "Calder Supply Ltd", "role": "manufacturer"}) is None


async def test_a_read_of_one_row_takes_a_parameter_s_default_unless_given(db: Database) -> None:
    statement = select(func.upper(bindparam("word", "quiet", type_=String)).label("loud"))
    assert await _both_ways(db, statement, {}) == ("QUIET",)
    assert await _both_ways(db, statement, {"word": "given"}) == ("GIVEN",)


async def test_a_read_of_one_row_without_a_required_value_is_an_error(db: Database) -> None:
    statement = select(func.upper(bindparam("word", type_=String)).label("loud"))
    with pytest.raises((ValueError, SQLAlchemyError), match=r"required for .*word"):
        await db.read_one(statement, {})


async def test_a_read_of_one_row_that_finds_more_is_an_error(db: Database) -> None:
    await make_tokens(db)
    with pytest.raises(ValueError, match="rows read where one at most was expected"):
        await db.read_one(select(Party.id), {})


@pytest.mark.parametrize(
    "statement",
    [
        select(Party.id).where(Party.id.in_(bindparam("ids", expanding=True))),
        select(Party.id).where(Party.name == bindparam("name", literal_execute=True)),
        select(Party.id).where(Party.name == bindparam("name", callable_=lambda: "Calder Supply Ltd")),
    ],
    ids=["an expanding IN list", "a value rendered inline", "a value computed at each execution"],
)
def test_a_statement_whose_sql_changes_with_its_values_is_not_compiled_once(statement: Any) -> None:
    with pytest.raises(
        ValueError, match=r"the SQL would change with the value of|computed at each execution"
    ):
        DriverStatement.compile(statement, create_async_engine("postgresql+asyncpg://").dialect)


@pytest.mark.parametrize("ask", [_ping, _read_one], ids=["a ping", "a read of one row"])
async def test_a_question_counts_the_statements_it_sends_into_the_request(
    database_url: str, ask: Callable[[Database, str], Awaitable[None]]
) -> None:
    # On PostgreSQL one statement past the engine, whose listener counts every other; on SQLite the
    # engine's own (its transaction's BEGIN, then the question): as the request's log line and metrics
    # report them, each counted once.
    database = Database.connect(database_url)
    count_statements(database.engine)
    facts = RequestFacts("question")
    token = CURRENT.set(facts)
    try:
        await ask(database, "one")
        one_question = facts.sql_statements
        await ask(database, "two")
    finally:
        CURRENT.reset(token)
        await database.dispose()
    assert one_question == (1 if database.engine.dialect.name == "postgresql" else 2)
    assert facts.sql_statements == 2 * one_question
