"""An index for the catalogue's device-type and SMETS-version filters within a snapshot.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_cpl_device_models_snapshot_type",
        "cpl_device_models",
        ["snapshot_id", "device_type", "smets_version"],
    )


def downgrade() -> None:
    op.drop_index("ix_cpl_device_models_snapshot_type", table_name="cpl_device_models")
