"""Message status: complete, streaming or incomplete.

A streamed assistant reply is written as it arrives; a client that goes away
mid-stream must leave a message marked incomplete, not a row that looks whole.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a CHECK constraint to an existing table,
    # so Alembic rebuilds it there (in this transaction); PostgreSQL alters.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), server_default="complete", nullable=False)
        )
        batch.create_check_constraint(
            "ck_messages_status", "status IN ('complete', 'streaming', 'incomplete')"
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("ck_messages_status", type_="check")
        batch.drop_column("status")
