"""Sync state: handle epochs, the pruned prefix of the log, live readers.

The shape endpoint names its handles after an epoch kept in the database, so
that a handle survives a server restart but not a prune of the log it points
into, nor a restore of the database (both move the epoch). ``sync_readers``
lets every server instance say how far back its live readers are, so pruning
never cuts a reader off.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 08:20:00
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from threadkeep.store import types as tk_types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_state") as batch:
        batch.add_column(
            sa.Column("epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(
            sa.Column("reset_epoch", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(
            sa.Column("pruned_offset", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    # A fresh epoch: handles are new to this database.
    now_us = int(time.time() * 1_000_000)
    op.execute(sa.text(f"UPDATE log_state SET epoch = {now_us}, reset_epoch = {now_us}"))
    op.create_table(
        "sync_readers",
        sa.Column("instance_id", sa.String(length=128), nullable=False),
        sa.Column("min_offset", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", tk_types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_sync_readers")),
    )


def downgrade() -> None:
    op.drop_table("sync_readers")
    with op.batch_alter_table("log_state") as batch:
        batch.drop_column("pruned_offset")
        batch.drop_column("reset_epoch")
        batch.drop_column("epoch")
