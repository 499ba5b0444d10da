"""Alembic migrations build exactly the tables the code declares, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from cfl_graph import migrate
from cfl_graph.database import Database
from cfl_graph.tables import Base


async def test_migrations_match_the_tables(db: Database) -> None:
    def differences(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(differences) == []
    assert await migrate.pending(db.engine) == []


async def test_migrations_downgrade_to_nothing_and_back(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(migrate.alembic_config(c), "base"))
    async with db.engine.connect() as conn:
        left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()) - {"alembic_version"})
    assert left == set()
    assert await migrate.pending(db.engine) == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
        "0007",
        "0008",
        "0009",
        "0010",
        "0011",
    ]
    await migrate.upgrade(db.engine)
    assert await migrate.pending(db.engine) == []
