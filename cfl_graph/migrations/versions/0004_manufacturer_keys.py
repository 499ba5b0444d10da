"""Manufacturer public keys (P-256) per manufacturer id, for firmware image signatures.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cfl_graph.tables.base import UtcDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "manufacturer_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manufacturer_id", sa.String(length=4), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("added_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manufacturer_keys")),
        sa.UniqueConstraint("manufacturer_id", "key_id", name="uq_manufacturer_keys_manufacturer_key"),
    )
    op.create_index(op.f("ix_manufacturer_keys_manufacturer_id"), "manufacturer_keys", ["manufacturer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_manufacturer_keys_manufacturer_id"), table_name="manufacturer_keys")
    op.drop_table("manufacturer_keys")
