"""CPL snapshots, their device models and certified firmware, the current pointer, and sync runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cfl_graph.tables.base import UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = "'running', 'applied', 'unchanged', 'not_modified', 'rejected', 'fetch_failed', 'failed'"


def upgrade() -> None:
    op.create_table(
        "cpl_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("rows_sha256", sa.String(length=64), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("device_model_count", sa.Integer(), nullable=False),
        sa.Column("previous_id", sa.Integer(), nullable=True),
        sa.Column("added_count", sa.Integer(), nullable=False),
        sa.Column("removed_count", sa.Integer(), nullable=False),
        sa.Column("changed_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["previous_id"], ["cpl_snapshots.id"], name=op.f("fk_cpl_snapshots_previous_id_cpl_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cpl_snapshots")),
    )
    op.create_table(
        "cpl_current",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_cpl_current_single_row")),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["cpl_snapshots.id"], name=op.f("fk_cpl_current_snapshot_id_cpl_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cpl_current")),
    )
    op.create_table(
        "cpl_device_models",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("manufacturer_id", sa.String(length=4), nullable=False),
        sa.Column("model_id", sa.String(length=4), nullable=False),
        sa.Column("hardware_version", sa.String(length=4), nullable=False),
        sa.Column("manufacturer_name", sa.Text(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("device_type", sa.String(length=8), nullable=False),
        sa.Column("smets_version", sa.String(length=8), nullable=False),
        sa.Column("firmware_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["cpl_snapshots.id"], name=op.f("fk_cpl_device_models_snapshot_id_cpl_snapshots")
        ),
        sa.PrimaryKeyConstraint(
            "snapshot_id",
            "manufacturer_id",
            "model_id",
            "hardware_version",
            name=op.f("pk_cpl_device_models"),
        ),
    )
    op.create_table(
        "cpl_sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("content_size", sa.Integer(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("row_count", sa.Integer(), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.CheckConstraint(f"outcome IN ({OUTCOMES})", name=op.f("ck_cpl_sync_runs_outcome")),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["cpl_snapshots.id"], name=op.f("fk_cpl_sync_runs_snapshot_id_cpl_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cpl_sync_runs")),
    )
    op.create_index("ix_cpl_sync_runs_source_outcome", "cpl_sync_runs", ["source", "outcome"])
    op.create_table(
        "cpl_certified_firmware",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("manufacturer_id", sa.String(length=4), nullable=False),
        sa.Column("model_id", sa.String(length=4), nullable=False),
        sa.Column("hardware_version", sa.String(length=4), nullable=False),
        sa.Column("firmware_version", sa.String(length=8), nullable=False),
        sa.Column("image_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("gbcs_version", sa.String(length=16), nullable=True),
        sa.Column("cpa_reference", sa.Text(), nullable=True),
        sa.Column("cpa_expiry", sa.Date(), nullable=True),
        sa.Column("date_added", sa.Date(), nullable=False),
        sa.Column("sheet_row", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id", "manufacturer_id", "model_id", "hardware_version"],
            [
                "cpl_device_models.snapshot_id",
                "cpl_device_models.manufacturer_id",
                "cpl_device_models.model_id",
                "cpl_device_models.hardware_version",
            ],
            name="fk_cpl_certified_firmware_device_model",
        ),
        sa.PrimaryKeyConstraint(
            "snapshot_id",
            "manufacturer_id",
            "model_id",
            "hardware_version",
            "firmware_version",
            name=op.f("pk_cpl_certified_firmware"),
        ),
    )


def downgrade() -> None:
    op.drop_table("cpl_certified_firmware")
    op.drop_index("ix_cpl_sync_runs_source_outcome", table_name="cpl_sync_runs")
    op.drop_table("cpl_sync_runs")
    op.drop_table("cpl_device_models")
    op.drop_table("cpl_current")
    op.drop_table("cpl_snapshots")
