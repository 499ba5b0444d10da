"""Async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import functools
import hashlib
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Select, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import greenlet_spawn

from cfl_graph.observability import count_statement
from cfl_graph.round_trips import RoundTrips
from cfl_graph.tables.rows import plain_rows, row_maker


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory SQLite."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


# Dates reach SQLite as the ISO text SQLAlchemy's Date type stores and reads back, converted by the
# driver itself: bulk inserts pass `datetime.date` values straight through (Python 3.12 deprecates
# the implicit default adapter, so this one is explicit).
sqlite3.register_adapter(dt.date, dt.date.isoformat)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the driver, begins each transaction (`_sqlite_begin`): a writer's then begins
    # IMMEDIATE, and the driver's own implicit BEGIN (deferred, and only before a write) never runs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a sync writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# The execution option that marks a writer's connection (`writer_of`).
WRITER = "cfl_writer"


def _sqlite_begin(conn: Connection) -> None:
    """A writer takes SQLite's write lock when it begins, so what it reads to decide is what it acts on
    and writers never interleave; a reader's transaction stays deferred and never waits for one (WAL)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITER) else "BEGIN")


# The PostgreSQL connections an engine keeps open once opened: as many as it may use at once (SQLAlchemy's
# default ceiling, 5 kept and 10 more for a while). With only 5 kept, a burst past them opened and closed
# a connection per request (a TLS attempt and several round trips each): at 20 concurrent clients of one
# worker, half of a /healthz's CPU. The pool still opens them only as they are needed.
POSTGRES_POOL_SIZE = 15


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    path = sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if make_url(database_url).get_backend_name() == "postgresql":
        kwargs = {"pool_size": POSTGRES_POOL_SIZE, "max_overflow": 0, **kwargs}
    engine = create_async_engine(database_url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def writer_of(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions for transactions that change state: every check that decides a write is read inside the
    transaction that writes. On SQLite they begin IMMEDIATE (the database's write lock first); on
    PostgreSQL they are the same sessions, and writers take row locks on what they decide by."""
    cached: async_sessionmaker[AsyncSession] | None = getattr(sessions, "_cfl_writes", None)
    if cached is not None:
        return cached
    bind = sessions.kw["bind"]
    writes = sessions
    if isinstance(bind, AsyncEngine) and bind.dialect.name == "sqlite":
        writes = async_sessionmaker(
            bind.execution_options(**{WRITER: True}), **{k: v for k, v in sessions.kw.items() if k != "bind"}
        )
    sessions._cfl_writes = writes  # type: ignore[attr-defined]
    return writes


async def lock_key(session: AsyncSession, *key: str) -> None:
    """Serialise the transactions that decide by the same thing (a blob's digest, a certified version):
    on PostgreSQL a transaction-scoped advisory lock on a hash of `key`, held until commit; on SQLite a
    writer's transaction holds the database's write lock already (`writer_of`)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256("\x1f".join(("cfl-graph", *key)).encode()).digest()
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest[:8], "big", signed=True)}
    )


_SELECT_ONE = text("SELECT 1")

T = TypeVar("T")
AnySelect = Select[*tuple[Any, ...]]  # a `Select` of any columns


def _at_most_one(rows: Sequence[Any], row: Callable[[Any], Any]) -> Any | None:
    if len(rows) > 1:
        raise ValueError(f"{len(rows)} rows read where one at most was expected")
    return row(rows[0]) if rows else None


# The key of the health check's round trip (`Database.ping`).
_PING = "ping"


def _select_one(driver: Any) -> Awaitable[int]:
    answer: Awaitable[int] = driver.fetchval("SELECT 1")
    return answer


_UNANSWERED: Any = object()


@dataclass(frozen=True)
class DriverStatement:
    """A SQLAlchemy `Select` compiled once for asyncpg: its SQL with `$n` placeholders, what goes in each,
    and how each column read is made the value SQLAlchemy would give (its type's result processor, as
    `tables.rows.read_rows` applies them). Run on the driver's connection it spares SQLAlchemy's per-
    execution work (a connection and its execution context, the compiled cache's key, a result and its
    `Row`s), which costs several times the round trip's CPU for a one-row read; `Database.read_one` runs
    it, and falls back on SQLAlchemy executing the same statement, the reference."""

    sql: str
    # Per placeholder: the caller's parameter's name (None for a value of the statement's own), whether
    # the caller must give it, the value otherwise, and its bind processor.
    arguments: tuple[tuple[str | None, bool, Any, Callable[[Any], Any] | None], ...]
    row: Callable[[Sequence[Any]], Any]  # a record made the row SQLAlchemy would read (`rows.row_maker`)

    @classmethod
    def compile(cls, statement: AnySelect, dialect: Dialect) -> DriverStatement:
        """`statement` for `dialect` (asyncpg's), as SQLAlchemy would execute it; an error for a statement
        whose SQL would change with a caller's value (an expanding `IN` list, a value rendered inline) or
        whose value is computed at each execution (a callable)."""
        if dialect.paramstyle != "numeric_dollar":
            raise ValueError(f"{dialect.driver} does not number its placeholders as asyncpg does")
        compiled = statement.compile(dialect=dialect)
        for bind in compiled.binds.values():
            if bind.callable is not None:
                raise ValueError(f"the value of {bind.key!r} is computed at each execution")
            if not bind.unique and (bind.expanding or bind.literal_execute):  # a name the caller may give
                raise ValueError(f"the SQL would change with the value of {bind.key!r}")
        # The SQL as executed: the statement's own late-rendered values (a string_agg's separator) inline.
        required = {bind.key: None for bind in compiled.binds.values() if bind.required}
        expanded = compiled.construct_expanded_state(required)
        arguments = []
        for name in expanded.positiontup or ():
            bind = compiled.binds[name]
            arguments.append(
                (
                    None if bind.unique else bind.key,  # an anonymous bind is the statement's own
                    bind.required,
                    expanded.parameters[name],
                    bind.type._cached_bind_processor(dialect),  # as `compiled` would apply it
                )
            )
        columns = statement.selected_columns
        processors = tuple(
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type._cached_result_processor(dialect, None)) is not None
        )
        return cls(expanded.statement, tuple(arguments), row_maker(tuple(columns.keys()), processors))

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, required, own, process in self.arguments:
            if name is not None and name in params:
                value = params[name]
            elif required:
                raise ValueError(f"a value is required for {name!r}")
            else:
                value = own
            values.append(value if process is None else process(value))
        return values


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, database_url: str, **kwargs: Any) -> Database:
        engine = create_engine(database_url, **kwargs)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False))

    @property
    def writes(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for transactions that change state (`writer_of`)."""
        return writer_of(self.sessions)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    @functools.cached_property
    def lone_reads(self) -> AsyncEngine:
        """The engine for a read of one statement, which is atomic by itself: on PostgreSQL in autocommit,
        sparing the BEGIN and ROLLBACK round trips a transaction adds."""
        if self.engine.dialect.name == "postgresql":
            return self.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self.engine

    @functools.cached_property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for reads alone, each statement of which stands by itself: on PostgreSQL in
        autocommit, sparing each session's BEGIN and ROLLBACK (two round trips, a tenth of the work a
        catalogue page asks of PostgreSQL). At READ COMMITTED, the isolation this project runs at,
        each statement inside a transaction sees the data as of its own start too, so a read session's
        statements see what they saw in one; what a request must see as one (the current snapshot) it
        reads once and pins (`loaders.cpl`). On SQLite, where a transaction is one snapshot for all its
        statements, the plain sessions. Never for a write: `writes`."""
        if self.engine.dialect.name == "postgresql":
            return async_sessionmaker(self.lone_reads, expire_on_commit=False)
        return self.sessions

    @functools.cached_property
    def _driver_statements(self) -> dict[AnySelect, DriverStatement]:
        # By the statement object: the code's own module-level statements, a fixed set.
        return {}

    @functools.cached_property
    def statement_watchers(self) -> list[Callable[[str], None]]:
        """Called with the SQL of each statement sent past the engine (`_driver_answer`), whose own
        statements `before_cursor_execute` listeners see: so that one who watches the engine's (a test's
        count of a request's statements) can watch these too. The request's own count is kept apart
        (`observability.count_statement`)."""
        return []

    @functools.cached_property
    def _round_trips(self) -> RoundTrips:
        return RoundTrips()

    async def _driver_answer(self, sql: str, question: Callable[[Any], Awaitable[T]]) -> T:
        """`question` (the statement `sql`) asked of asyncpg on a pooled PostgreSQL connection, outside any
        transaction; or `_UNANSWERED` if it failed there, the connection then thrown away (dropped by the
        database, or its question cancelled: its state is unknown), for the caller to ask again through
        SQLAlchemy, whose error handling drops the pool's other stale connections and answers for an
        outage."""
        for watcher in self.statement_watchers:
            watcher(sql)
        pooled = await self.engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert driver is not None  # a checked-out connection has its driver's
            answer = await question(driver)
            count_statement()  # past the engine, whose listener counts every other statement
            return answer
        except BaseException as exc:
            pooled.invalidate(exc)
            if not isinstance(exc, Exception):
                raise
            return _UNANSWERED  # type: ignore[no-any-return]
        finally:
            # Given back to a full pool, the connection is closed, which awaits the driver.
            await greenlet_spawn(pooled.close)

    async def ping(self) -> None:
        """One round trip that proves the database answers, or the error that says it does not; shared by
        the pings asked together (`round_trips`: each still answered by a round trip begun after it).

        On PostgreSQL a pooled connection asks asyncpg directly (`_driver_answer`): no transaction and
        none of SQLAlchemy's statement machinery, which cost three times the round trip's CPU (the health
        check runs on every probe)."""
        await self._round_trips.ask(_PING, self._ping)

    async def _ping(self) -> None:
        postgresql = self.engine.dialect.name == "postgresql"
        if postgresql and await self._driver_answer("SELECT 1", _select_one) is not _UNANSWERED:
            return
        async with self.engine.connect() as conn:
            await conn.execute(_SELECT_ONE)

    async def read_one(self, statement: AnySelect, params: Mapping[str, Any]) -> Any | None:
        """The one row `statement` reads with `params` (as `tables.rows.plain_rows` makes it), or None; an
        error if it reads more. A read of one statement, atomic by itself, in no transaction, shared by
        the same reads asked together (`round_trips`: each still answered by a round trip begun after
        it). On PostgreSQL the statement is compiled once for asyncpg and run on a pooled connection
        (`DriverStatement`), every other time through SQLAlchemy (`read_one_through_sqlalchemy`, the
        reference). It serves the token's check on every request with a token."""
        try:
            key = (statement, frozenset(params.items()))
        except TypeError:  # a value that cannot be a key (a list) is asked alone
            return await self._read_one(statement, params)
        return await self._round_trips.ask(key, lambda: self._read_one(statement, params))

    async def _read_one(self, statement: AnySelect, params: Mapping[str, Any]) -> Any | None:
        if self.engine.dialect.name == "postgresql":
            compiled = self._driver_statements.get(statement)
            if compiled is None:
                compiled = self._driver_statements[statement] = DriverStatement.compile(
                    statement, self.engine.dialect
                )
            values = compiled.values(params)
            records = await self._driver_answer(
                compiled.sql, lambda driver: driver.fetch(compiled.sql, *values)
            )
            if records is not _UNANSWERED:
                return _at_most_one(records, compiled.row)
        return await self.read_one_through_sqlalchemy(statement, params)

    async def read_one_through_sqlalchemy(
        self, statement: AnySelect, params: Mapping[str, Any]
    ) -> Any | None:
        async with self.lone_reads.connect() as connection:
            rows = plain_rows(await connection.execute(statement, params))
        return _at_most_one(rows, lambda row: row)

    async def dispose(self) -> None:
        await self.engine.dispose()


SQLITE_BATCH_ROWS = 20_000


async def bulk_insert(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Insert many rows inside the session's transaction by the fastest path each driver has.

    PostgreSQL gets one COPY (asyncpg's `copy_records_to_table`) for all the rows however many: the
    server inserts each buffer of rows while the client encodes the next, where a COPY per batch waits
    for the server at the end of every batch. SQLite gets the driver's own `executemany`, a batch at a
    time. Both are several times faster than per-row parameter binding through the ORM. `rows` is read
    once, in the caller's thread; an exception it raises aborts the insert (the caller's transaction
    then rolls back). Values must be plain: str (a `StrEnum` member is one), int, None and
    `datetime.date`.
    """
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table, records=rows, columns=list(columns))
        return
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # names are ours, not input
    batch: list[tuple[Any, ...]] = []
    for values in rows:
        batch.append(values)
        if len(batch) == SQLITE_BATCH_ROWS:
            await conn.exec_driver_sql(sql, batch)
            batch = []
    if batch:
        await conn.exec_driver_sql(sql, batch)


_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)


def database_unavailable(exc: BaseException) -> bool:
    """True for failures to reach the database (refused, dropped, timed out), not for query errors."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, ConnectionError | asyncio.TimeoutError | TimeoutError | socket.gaierror):
        return True
    # asyncpg raises plain OSErrors for network failures (refused, unreachable, reset) outside DBAPI;
    # any other OSError (a missing file, a full disk) is not an outage and stays a 500.
    if isinstance(exc, OSError):
        return exc.errno in _NETWORK_ERRNOS or "Connect call failed" in str(exc)
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__
