"""Upgrade pathways a manufacturer records between certified versions of a device model.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cfl_graph.tables.base import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upgrade_pathways",
        sa.Column("manufacturer_id", sa.String(length=4), nullable=False),
        sa.Column("model_id", sa.String(length=4), nullable=False),
        sa.Column("hardware_version", sa.String(length=4), nullable=False),
        sa.Column("from_version", sa.String(length=8), nullable=False),
        sa.Column("to_version", sa.String(length=8), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("recorded_by_party_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("from_version <> to_version", name=op.f("ck_upgrade_pathways_distinct_versions")),
        sa.ForeignKeyConstraint(
            ["recorded_by_party_id"],
            ["parties.id"],
            name=op.f("fk_upgrade_pathways_recorded_by_party_id_parties"),
        ),
        sa.PrimaryKeyConstraint(
            "manufacturer_id",
            "model_id",
            "hardware_version",
            "from_version",
            "to_version",
            name=op.f("pk_upgrade_pathways"),
        ),
    )


def downgrade() -> None:
    op.drop_table("upgrade_pathways")
