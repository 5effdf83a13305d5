"""An index of the messages still streaming, for retention to find abandoned ones.

A message stays ``streaming`` until its writer finishes it. A writer that
dies mid-stream (``threadkeep serve`` killed, an agent process crashing)
never does, and the message would show as still arriving for ever, its text
kept out of search. Retention now finishes such a message ``incomplete``,
with the text stored so far, once it has been streaming longer than
``retention.stream_hours`` (docs/retention.md). This partial index holds
only the open streams, so finding them does not scan the messages, and a
finished message, the common case, costs no index write.

Building it reads the messages table once (PostgreSQL holds off writes to it
meanwhile: seconds per few million rows; see docs/postgresql.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'streaming'")


def upgrade() -> None:
    op.create_index(
        "ix_messages_streaming",
        "messages",
        ["created_at", "id"],
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_streaming", table_name="messages")
