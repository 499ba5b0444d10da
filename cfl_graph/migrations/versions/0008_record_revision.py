"""A second library counter: every change to the library's records, drafts included.

`catalogue_revision.revision` counts changes to what the library serves (the signed catalogue's
version); `record_revision` also counts uploads, approvals, checks, notes and discards of drafts,
which only their manufacturer sees. The response cache keys on both.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("catalogue_revision") as batch:
        batch.add_column(sa.Column("record_revision", sa.Integer(), nullable=False, server_default="0"))
    # Start where the served counter is, so that neither counter ever goes back.
    op.execute("UPDATE catalogue_revision SET record_revision = revision")


def downgrade() -> None:
    with op.batch_alter_table("catalogue_revision") as batch:
        batch.drop_column("record_revision")
