"""On PostgreSQL, each CPL snapshot's certified versions in a partition of their own.

`cpl_certified_firmware` becomes a table partitioned by list of `snapshot_id`. A sync writes the new
snapshot's rows into a table of their own, then attaches it: PostgreSQL builds its primary key and checks
its foreign key once over the whole snapshot instead of row by row (docs/decisions.md). The versions of
the snapshots stored before this migration stay where they are: the old table becomes the partition for
their ids, renamed `cpl_certified_firmware_before_partitions`. SQLite has no partitions: nothing changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "cpl_certified_firmware"
BEFORE = "cpl_certified_firmware_before_partitions"
KEY = "snapshot_id, manufacturer_id, model_id, hardware_version, firmware_version"
MODEL_KEY = "snapshot_id, manufacturer_id, model_id, hardware_version"


def _keys(table: str) -> str:
    """The primary key and the foreign key as migration 0001 named them."""
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT pk_{TABLE} PRIMARY KEY ({KEY}), "
        f"ADD CONSTRAINT fk_{TABLE}_device_model FOREIGN KEY ({MODEL_KEY}) "
        f"REFERENCES cpl_device_models ({MODEL_KEY})"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE {TABLE} RENAME TO {BEFORE}")
    # Index names are the schema's: the partitioned table's primary key takes the old one's name.
    op.execute(f"ALTER TABLE {BEFORE} RENAME CONSTRAINT pk_{TABLE} TO pk_{BEFORE}")
    op.execute(f"CREATE TABLE {TABLE} (LIKE {BEFORE} INCLUDING DEFAULTS) PARTITION BY LIST (snapshot_id)")
    op.execute(_keys(TABLE))
    ids = op.get_bind().execute(text(f"SELECT DISTINCT snapshot_id FROM {BEFORE} ORDER BY 1")).scalars().all()
    if ids:
        # Its primary key and foreign key match the new table's and are attached to them, not rebuilt.
        op.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {BEFORE} FOR VALUES IN ({', '.join(map(str, ids))})"
        )
    else:
        op.execute(f"DROP TABLE {BEFORE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    flat = f"{TABLE}_flat"
    op.execute(f"CREATE TABLE {flat} (LIKE {TABLE} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {flat} SELECT * FROM {TABLE}")
    op.execute(f"DROP TABLE {TABLE}")  # and every partition with it
    op.execute(f"ALTER TABLE {flat} RENAME TO {TABLE}")
    op.execute(_keys(TABLE))
