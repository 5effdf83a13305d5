"""Indexes for the starred, pinned and archived views of the session list.

The list walks ``ix_sessions_live_activity`` newest first and stops at a
full page. With a filter on a flag few sessions carry, it walked them all:
at 50,000 sessions a starred view took 23 ms on SQLite and 14 ms on
PostgreSQL to find nothing. One partial index per flag holds only the live
sessions that carry it, in list order, so such a page costs what an
unfiltered one does. A session without the flag costs these indexes no
write; a starred one pays one more index entry per append.

Building them reads the sessions table once.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Written out rather than imported: a migration keeps the shape it had when
# it was written, whatever tables.py becomes.
_FLAGS = ("starred", "pinned", "archived")


def upgrade() -> None:
    for flag in _FLAGS:
        op.create_index(
            f"ix_sessions_{flag}",
            "sessions",
            ["owner_id", "last_activity_at", "id"],
            sqlite_where=sa.text(f"deleted_at IS NULL AND {flag} = 1"),
            postgresql_where=sa.text(f"deleted_at IS NULL AND {flag}"),
        )


def downgrade() -> None:
    for flag in _FLAGS:
        op.drop_index(f"ix_sessions_{flag}", table_name="sessions")
