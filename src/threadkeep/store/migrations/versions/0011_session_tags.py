"""An index of which sessions carry which tag, for the list's tag filter.

The tag filter opened each session's ``tags`` array while walking the list
newest first, so a tag few sessions carry walked all of them: 37 ms on
SQLite and 27 ms on PostgreSQL at 50,000 sessions to fill one page.
``session_tags`` holds one row per (owner, tag, session); the store reads it
to find a rare tag's sessions directly (and, on SQLite, to test a common
tag's cheaply as it walks).

The database keeps it from ``sessions.tags`` with triggers, on insert, on an
update that changes ``tags`` (or the owner) and on delete, so every path that
writes sessions (the API, sync, imports, ``threadkeep copy``, an erasure)
keeps it without knowing it exists. An append updates the session's counters
and never names ``tags``: SQLite does not run an ``UPDATE OF tags`` trigger
for it, and PostgreSQL skips the trigger's function when the ``WHEN``
condition finds the tags unchanged. A session without tags costs nothing.

The triggers and PostgreSQL's function are named ``session_tags_*``; they are
not tables, so ``tables.py`` and autogenerate never see them. The backfill
reads the sessions table once.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# --- PostgreSQL -----------------------------------------------------------------

# OR REPLACE: restoring a dump taken before this revision drops and makes
# again the tables it holds, sessions and its triggers included, but leaves
# this function, and the store then migrates through here once more.
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION session_tags_follow() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM session_tags
        WHERE owner_id = OLD.owner_id AND session_id = OLD.id
          AND tag IN (SELECT jsonb_array_elements_text(OLD.tags));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO session_tags (owner_id, tag, session_id)
        SELECT DISTINCT NEW.owner_id, t, NEW.id FROM jsonb_array_elements_text(NEW.tags) AS t;
    END IF;
    RETURN NULL;
END
$$
"""

# The function runs with the search_path of the migration (the store's
# schema, when it has one of its own): an operator's UPDATE from psql with
# another search_path still finds session_tags.
_PG_TRIGGERS = [
    "CREATE TRIGGER session_tags_insert AFTER INSERT ON sessions FOR EACH ROW "
    "WHEN (NEW.tags <> '[]'::jsonb) EXECUTE FUNCTION session_tags_follow()",
    "CREATE TRIGGER session_tags_update AFTER UPDATE OF tags, owner_id ON sessions "
    "FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags "
    "OR OLD.owner_id IS DISTINCT FROM NEW.owner_id) EXECUTE FUNCTION session_tags_follow()",
    "CREATE TRIGGER session_tags_delete AFTER DELETE ON sessions FOR EACH ROW "
    "WHEN (OLD.tags <> '[]'::jsonb) EXECUTE FUNCTION session_tags_follow()",
]

_PG_BACKFILL = (
    "INSERT INTO session_tags (owner_id, tag, session_id) "
    "SELECT DISTINCT s.owner_id, t, s.id FROM sessions AS s, jsonb_array_elements_text(s.tags) AS t"
)

# --- SQLite ---------------------------------------------------------------------


def _insert_tags(row: str) -> str:
    return (
        "INSERT INTO session_tags (owner_id, tag, session_id) "
        f"SELECT DISTINCT {row}.owner_id, j.value, {row}.id FROM json_each({row}.tags) AS j;"
    )


def _delete_tags(row: str) -> str:
    return (
        f"DELETE FROM session_tags WHERE owner_id = {row}.owner_id AND session_id = {row}.id "
        f"AND tag IN (SELECT value FROM json_each({row}.tags));"
    )


_SQLITE_TRIGGERS = [
    "CREATE TRIGGER session_tags_insert AFTER INSERT ON sessions "
    f"WHEN json_array_length(new.tags) > 0 BEGIN {_insert_tags('new')} END",
    "CREATE TRIGGER session_tags_update AFTER UPDATE OF tags, owner_id ON sessions "
    "WHEN old.tags IS NOT new.tags OR old.owner_id IS NOT new.owner_id "
    f"BEGIN {_delete_tags('old')} {_insert_tags('new')} END",
    "CREATE TRIGGER session_tags_delete AFTER DELETE ON sessions "
    f"WHEN json_array_length(old.tags) > 0 BEGIN {_delete_tags('old')} END",
]

_SQLITE_BACKFILL = (
    "INSERT INTO session_tags (owner_id, tag, session_id) "
    "SELECT DISTINCT s.owner_id, j.value, s.id FROM sessions AS s, json_each(s.tags) AS j"
)


def upgrade() -> None:
    op.create_table(
        "session_tags",
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "tag", "session_id", name="pk_session_tags"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for stmt in _PG_TRIGGERS:
            op.execute(stmt)
        op.execute(_PG_BACKFILL)
    else:
        for stmt in _SQLITE_TRIGGERS:
            op.execute(stmt)
        op.execute(_SQLITE_BACKFILL)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for event in ("insert", "update", "delete"):
        on = " ON sessions" if postgresql else ""
        op.execute(f"DROP TRIGGER IF EXISTS session_tags_{event}{on}")
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS session_tags_follow()")
    op.drop_table("session_tags")
