"""Per-version CPL facts and holds.

The CPL's SMETS/CHTS column belongs to a firmware version: each certified version gets its SMETS
generation, technical specification and specification version, and a device model the generations of
its versions. A published image the current CPL no longer certifies as it is gets held
(`library_images.state = 'held'`, with the reason and the snapshot that caused it) until a later
snapshot lists it again; `state_changed_at` orders the feeds by the last change of state.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cfl_graph.tables.base import UtcDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MODEL_OF_VERSION = (
    "cpl_device_models.snapshot_id = cpl_certified_firmware.snapshot_id"
    " AND cpl_device_models.manufacturer_id = cpl_certified_firmware.manufacturer_id"
    " AND cpl_device_models.model_id = cpl_certified_firmware.model_id"
    " AND cpl_device_models.hardware_version = cpl_certified_firmware.hardware_version"
)
_OLD_STATES = "state IN ('draft', 'published', 'withdrawn')"
_NEW_STATES = "state IN ('draft', 'published', 'held', 'withdrawn')"
_HOLD_COMPLETE = (
    "(state = 'held') = (held_at IS NOT NULL AND hold_problem IS NOT NULL AND hold_detail IS NOT NULL)"
)


def upgrade() -> None:
    with op.batch_alter_table("cpl_sync_runs") as batch:
        batch.add_column(sa.Column("images_held", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("images_released", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("cpl_device_models") as batch:
        batch.add_column(sa.Column("smets_versions", sa.String(length=16), nullable=True))
    op.execute("UPDATE cpl_device_models SET smets_versions = smets_version")
    with op.batch_alter_table("cpl_device_models") as batch:
        batch.alter_column("smets_versions", existing_type=sa.String(length=16), nullable=False)

    with op.batch_alter_table("cpl_certified_firmware") as batch:
        batch.add_column(sa.Column("smets_version", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("technical_specification", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("specification_version", sa.String(length=16), nullable=True))
    # Before this revision the generation was read per device model; each of its versions takes it.
    op.execute(
        "UPDATE cpl_certified_firmware SET smets_version = "
        f"(SELECT cpl_device_models.smets_version FROM cpl_device_models WHERE {_MODEL_OF_VERSION})"
    )
    op.execute("UPDATE cpl_certified_firmware SET technical_specification = smets_version")
    with op.batch_alter_table("cpl_certified_firmware") as batch:
        batch.alter_column("smets_version", existing_type=sa.String(length=8), nullable=False)
        batch.alter_column("technical_specification", existing_type=sa.String(length=8), nullable=False)

    with op.batch_alter_table("library_images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("hold_problem", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("hold_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("held_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("held_snapshot_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("released_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("state_changed_at", UtcDateTime(), nullable=True))
    op.execute(
        "UPDATE library_images SET state_changed_at = COALESCE(withdrawn_at, published_at, uploaded_at)"
    )
    with op.batch_alter_table("library_images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("state_changed_at", existing_type=UtcDateTime(), nullable=False)
        batch.drop_constraint(op.f("ck_library_images_state"), type_="check")
        batch.create_check_constraint("state", _NEW_STATES)
        batch.create_check_constraint("hold_complete", _HOLD_COMPLETE)
        batch.create_index("ix_library_images_state_changed_at", ["state_changed_at"])


def downgrade() -> None:
    # A held image was published before its hold: it goes back to published.
    op.execute(
        "UPDATE library_images SET state = 'published', held_at = NULL, hold_problem = NULL, "
        "hold_detail = NULL WHERE state = 'held'"
    )
    with op.batch_alter_table("library_images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_library_images_state_changed_at")
        batch.drop_constraint(op.f("ck_library_images_hold_complete"), type_="check")
        batch.drop_constraint(op.f("ck_library_images_state"), type_="check")
        batch.create_check_constraint("state", _OLD_STATES)
        batch.drop_column("state_changed_at")
        batch.drop_column("released_at")
        batch.drop_column("held_snapshot_id")
        batch.drop_column("held_at")
        batch.drop_column("hold_detail")
        batch.drop_column("hold_problem")
    with op.batch_alter_table("cpl_certified_firmware") as batch:
        batch.drop_column("specification_version")
        batch.drop_column("technical_specification")
        batch.drop_column("smets_version")
    with op.batch_alter_table("cpl_device_models") as batch:
        batch.drop_column("smets_versions")
    with op.batch_alter_table("cpl_sync_runs") as batch:
        batch.drop_column("images_released")
        batch.drop_column("images_held")
