"""SQLite: new messages enter the search index by one statement per operation.

Revision 0006 indexed each new message with a row trigger. FTS5 flushes the
terms it holds in memory to a new index segment whenever a statement
savepoint opens, and a trigger opens one for every row: a batch of 100
messages wrote 100 one-document segments, and FTS5 merged them again at
commit. Measured on 400-byte messages in batches of 100: 42 µs of CPU per
message through the trigger, 5 µs when the same rows are indexed by one
``INSERT ... SELECT``.

So this revision drops ``search_messages_insert``; the SQLite engine indexes
the messages an operation inserted with one statement before that operation
ends, or, for appends that share a group commit, before the next operation of
another kind and before the commit (``store/search.py`` ``index_messages``,
``store/sqlite.py``), still inside the transaction:
a rolled-back write leaves nothing in the index, a committed one is found by
the next search. The text and the condition (not ``streaming``) are the
trigger's, so the delete and update triggers, which stay, remove exactly
what was entered. PostgreSQL is unchanged: its index is a generated column.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 17:10:00
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS search_messages_insert")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        search = importlib.import_module("threadkeep.store.migrations.versions.0006_search")
        op.execute(search.MESSAGES_INSERT_TRIGGER)
