"""Library images, commercial declarations, the catalogue revision, four-eyes approval per party.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cfl_graph.tables.base import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalogue_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalogue_revision_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_revision")),
    )
    op.execute("INSERT INTO catalogue_revision (id, revision, changed_at) VALUES (1, 0, CURRENT_TIMESTAMP)")
    op.create_table(
        "commercial_declarations",
        sa.Column("manufacturer_id", sa.String(length=4), nullable=False),
        sa.Column("model_id", sa.String(length=4), nullable=False),
        sa.Column("hardware_version", sa.String(length=4), nullable=False),
        sa.Column("firmware_version", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("declared_at", UtcDateTime(), nullable=False),
        sa.Column("declared_by", sa.Text(), nullable=False),
        sa.Column("declared_by_party_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["declared_by_party_id"],
            ["parties.id"],
            name=op.f("fk_commercial_declarations_declared_by_party_id_parties"),
        ),
        sa.PrimaryKeyConstraint(
            "manufacturer_id",
            "model_id",
            "hardware_version",
            "firmware_version",
            name=op.f("pk_commercial_declarations"),
        ),
    )
    op.create_table(
        "library_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manufacturer_id", sa.String(length=4), nullable=False),
        sa.Column("model_id", sa.String(length=4), nullable=False),
        sa.Column("hardware_version", sa.String(length=4), nullable=False),
        sa.Column("firmware_version", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("manufacturer_image_sha256", sa.String(length=64), nullable=False),
        sa.Column("signed_sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("manufacturer_image_offset", sa.Integer(), nullable=False),
        sa.Column("manufacturer_image_length", sa.BigInteger(), nullable=False),
        sa.Column("image_type", sa.Integer(), nullable=False),
        sa.Column("dcc_file_name", sa.String(length=18), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.Column("checked_snapshot_id", sa.Integer(), nullable=True),
        sa.Column("signature_key_id", sa.String(length=64), nullable=True),
        sa.Column("release_notes_markdown", sa.Text(), nullable=True),
        sa.Column("release_notes_html", sa.Text(), nullable=True),
        sa.Column("release_notes_text", sa.Text(), nullable=True),
        sa.Column("uploaded_at", UtcDateTime(), nullable=False),
        sa.Column("uploaded_by_party_id", sa.Integer(), nullable=False),
        sa.Column("uploaded_by_token", sa.String(length=16), nullable=True),
        sa.Column("approved_at", UtcDateTime(), nullable=True),
        sa.Column("approved_by_token", sa.String(length=16), nullable=True),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.Column("published_by", sa.Text(), nullable=True),
        sa.Column("withdrawn_at", UtcDateTime(), nullable=True),
        sa.Column("withdrawn_by", sa.Text(), nullable=True),
        sa.Column("withdrawal_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(state = 'draft') = (published_at IS NULL)",
            name=op.f("ck_library_images_published_at_unless_draft"),
        ),
        sa.CheckConstraint(
            "(state = 'withdrawn') = (withdrawn_at IS NOT NULL AND withdrawal_reason IS NOT NULL)",
            name=op.f("ck_library_images_withdrawal_complete"),
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'published', 'withdrawn')", name=op.f("ck_library_images_state")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_party_id"],
            ["parties.id"],
            name=op.f("fk_library_images_uploaded_by_party_id_parties"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_images")),
        sa.UniqueConstraint(
            "manufacturer_id",
            "model_id",
            "hardware_version",
            "firmware_version",
            name="uq_library_images_version",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_library_images_file_sha256"), "library_images", ["file_sha256"])
    op.create_index("ix_library_images_manufacturer_state", "library_images", ["manufacturer_id", "state"])
    op.create_index("ix_library_images_state_published_at", "library_images", ["state", "published_at"])
    op.create_index("ix_audit_events_party_action", "audit_events", ["actor_party_id", "action"])
    with op.batch_alter_table("parties") as batch_op:
        batch_op.add_column(
            sa.Column("requires_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("parties") as batch_op:
        batch_op.drop_column("requires_approval")
    op.drop_index("ix_audit_events_party_action", table_name="audit_events")
    op.drop_index("ix_library_images_state_published_at", table_name="library_images")
    op.drop_index("ix_library_images_manufacturer_state", table_name="library_images")
    op.drop_index(op.f("ix_library_images_file_sha256"), table_name="library_images")
    op.drop_table("library_images")
    op.drop_table("commercial_declarations")
    op.drop_table("catalogue_revision")
