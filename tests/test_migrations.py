"""Alembic migrations build exactly the tables the code declares, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
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
        "0012",
    ]
    await migrate.upgrade(db.engine)
    assert await migrate.pending(db.engine) == []


async def _downgrade(db: Database, revision: str) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(migrate.alembic_config(c), revision))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_snapshots_stored_before_the_versions_were_partitioned_keep_their_versions(
    db: Database,
) -> None:
    """0012 makes `cpl_certified_firmware` partitioned by snapshot on PostgreSQL: the versions already
    stored become one partition for their snapshots' ids, the next snapshot gets one of its own, and the
    downgrade puts every version back in one table with its keys."""
    await _downgrade(db, "0011")
    model = "'10B2', '0001', '0100'"
    async with db.engine.begin() as conn:
        for snapshot in (1, 2):
            await conn.exec_driver_sql(
                "INSERT INTO cpl_snapshots (id, created_at, source, content_sha256, rows_sha256, row_count, "
                f"device_model_count, added_count, removed_count, changed_count) VALUES ({snapshot}, now(), "
                "'cpl.xlsx', repeat('0', 64), repeat('1', 64), 2, 1, 2, 0, 0)"
            )
            await conn.exec_driver_sql(
                "INSERT INTO cpl_device_models (snapshot_id, manufacturer_id, model_id, hardware_version, "
                "manufacturer_name, model_name, device_type, smets_version, smets_versions, firmware_count) "
                f"VALUES ({snapshot}, {model}, 'Maker', 'Meter', 'ESME', 'SMETS2', 'SMETS2', 2)"
            )
            for version in ("01000000", "02000000"):
                await conn.exec_driver_sql(
                    "INSERT INTO cpl_certified_firmware (snapshot_id, manufacturer_id, model_id, "
                    "hardware_version, firmware_version, image_hash, status, smets_version, "
                    f"technical_specification, date_added, sheet_row) VALUES ({snapshot}, {model}, "
                    f"'{version}', repeat('a', 64), 'active', 'SMETS2', 'SMETS2', '2024-01-01', 2)"
                )
    await migrate.upgrade(db.engine)
    async with db.engine.begin() as conn:
        partitions = await conn.exec_driver_sql(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'cpl_certified_firmware'::regclass"
        )
        assert [tuple(row) for row in partitions] == [
            ("cpl_certified_firmware_before_partitions", "FOR VALUES IN (1, 2)")
        ]
        rows = await conn.exec_driver_sql(
            "SELECT snapshot_id, firmware_version FROM cpl_certified_firmware ORDER BY 1, 2"
        )
        assert [tuple(row) for row in rows] == [
            (1, "01000000"),
            (1, "02000000"),
            (2, "01000000"),
            (2, "02000000"),
        ]
    await _downgrade(db, "0011")
    async with db.engine.connect() as conn:
        kind = await conn.exec_driver_sql(
            "SELECT relkind::text FROM pg_class WHERE relname = 'cpl_certified_firmware'"
        )
        assert kind.scalar_one() == "r"
        keys = await conn.exec_driver_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'cpl_certified_firmware'::regclass ORDER BY 1"
        )
        assert keys.scalars().all() == ["fk_cpl_certified_firmware_device_model", "pk_cpl_certified_firmware"]
        count = await conn.exec_driver_sql("SELECT count(*) FROM cpl_certified_firmware")
        assert count.scalar_one() == 4
    await migrate.upgrade(db.engine)
