"""Async engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


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
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while a sync writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    path = sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(database_url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, database_url: str, **kwargs: Any) -> Database:
        engine = create_engine(database_url, **kwargs)
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False))

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def bulk_insert(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert many rows inside the session's transaction by the fastest path each driver has.

    PostgreSQL gets COPY (asyncpg's `copy_records_to_table`), SQLite the driver's own `executemany`;
    both are several times faster than per-row parameter binding through the ORM. Values must be
    plain: str (a `StrEnum` member is one), int, None and `datetime.date`.
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
    await conn.exec_driver_sql(sql, rows)
