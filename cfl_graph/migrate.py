"""Schema migrations (Alembic), run on the service's own async engine."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "cfl_graph:migrations")
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def revision(engine: AsyncEngine, message: str) -> None:
    """Write a new migration from the difference between the tables and the database (developers)."""

    def run(connection: Connection) -> None:
        command.revision(alembic_config(connection), message=message, autogenerate=True)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def pending(engine: AsyncEngine) -> list[str]:
    """Revisions not yet applied to the database, oldest first; empty when it is up to date."""

    def run(connection: Connection) -> list[str]:
        current = set(MigrationContext.configure(connection).get_current_heads())
        script = ScriptDirectory.from_config(alembic_config())
        missing: list[Any] = []
        for rev in script.walk_revisions():
            if rev.revision in current:
                break
            missing.append(rev.revision)
        return list(reversed(missing))

    async with engine.connect() as conn:
        return await conn.run_sync(run)
