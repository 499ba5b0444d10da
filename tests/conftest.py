"""Databases for tests: a fresh SQLite file per test, and PostgreSQL wherever a server answers.

Every test that takes `db` runs twice, on SQLite and on PostgreSQL. Without a PostgreSQL server the
PostgreSQL half is skipped with a loud warning, except under CI (CI=true or CFL_TEST_REQUIRE_POSTGRES=1),
where it fails: CI must run them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from cfl_graph import migrate
from cfl_graph.database import Database
from cfl_graph.tables import GENESIS_HASH, Base
from tests.fixtures import capabilities, figures

POSTGRES_ADMIN_DSN = os.environ.get("CFL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = capabilities.REQUIRED  # CI=true or CFL_TEST_REQUIRE_POSTGRES=1
_postgres_problem: list[str] = []

# The moto S3 server and its stores, for the blob store and image tests.
pytest_plugins = ["tests.fixtures.s3_server"]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A throwaway database for this test session, migrated once; None when no server answers."""
    name = f"cfl_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _postgres_problem.append(f"{POSTGRES_ADMIN_DSN}: {type(exc).__name__}: {exc}")
        yield None
        return
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"

    async def setup() -> None:
        db = Database.connect(url)
        await migrate.upgrade(db.engine)
        await db.dispose()

    asyncio.run(setup())
    try:
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _truncate_all() -> str:
    names = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    return f"TRUNCATE {names} RESTART IDENTITY CASCADE"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/cfl.sqlite3"
    url: str | None = request.getfixturevalue("postgres_url")
    if url is None:
        message = f"PostgreSQL unreachable ({_postgres_problem[0]})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{message}; CI requires the PostgreSQL half of the suite")
        pytest.skip(message)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database of either kind."""
    database = Database.connect(database_url)
    if database.engine.dialect.name == "postgresql":
        async with database.engine.begin() as conn:
            await conn.execute(text(_truncate_all()))
            # The migrations seed single rows; put them back as a fresh database has them.
            await conn.execute(
                text(f"INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, '{GENESIS_HASH}')")
            )
            await conn.execute(
                text("INSERT INTO catalogue_revision (id, revision, changed_at) VALUES (1, 0, now())")
            )
    else:
        await migrate.upgrade(database.engine)
    try:
        yield database
    finally:
        await database.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if figures.FIGURES:
        terminalreporter.write_sep("-", "figures measured")
        for line in figures.FIGURES:
            terminalreporter.write_line(line)
    if capabilities.MISSING:
        terminalreporter.write_sep("!", "TESTS SKIPPED FOR WANT OF A CAPABILITY", red=True, bold=True)
        for reason in capabilities.MISSING:
            terminalreporter.write_line(f"  {reason}", red=True)
    if _postgres_problem:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS DID NOT RUN", red=True, bold=True)
        terminalreporter.write_line(f"  {_postgres_problem[0]}", red=True)
        terminalreporter.write_line(
            "  Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            red=True,
        )
