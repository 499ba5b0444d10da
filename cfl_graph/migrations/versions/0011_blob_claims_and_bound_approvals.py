"""Blob claims and approvals bound to what was approved.

`blob_claims` records uploads in progress and deletions under way, so that a blob is deleted only when
no record and no upload refers to it. `library_images.approved_notes_sha256` binds an approval to the
release notes approved: any change to them voids it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cfl_graph.tables.base import UtcDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.CheckConstraint("kind IN ('upload', 'delete')", name=op.f("ck_blob_claims_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_claims")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_blob_claims_file_sha256"), "blob_claims", ["file_sha256"])
    with op.batch_alter_table("library_images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("approved_notes_sha256", sa.String(length=64), nullable=True))
    # An approval of a draft given before this revision cannot be shown to cover the notes the draft has
    # now (notes could change after approval): it is voided, and the draft is approved again.
    op.execute(
        "UPDATE library_images SET approved_at = NULL, approved_by_token = NULL "
        "WHERE approved_at IS NOT NULL AND state = 'draft'"
    )


def downgrade() -> None:
    with op.batch_alter_table("library_images", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("approved_notes_sha256")
    op.drop_index(op.f("ix_blob_claims_file_sha256"), table_name="blob_claims")
    op.drop_table("blob_claims")
