"""Full-text search over message text, tool output and session titles.

The index is kept by the database itself, inside the writing transaction, so
no Python runs per append and a rolled-back write leaves nothing behind:

* PostgreSQL: a STORED generated ``search_vector`` tsvector column on
  messages, tool_events and sessions, each with a GIN index.
* SQLite: FTS5 tables kept by triggers. ``search_messages`` and
  ``search_sessions`` are external-content tables (they index
  ``messages.content`` and ``sessions.title`` by rowid and store no copy);
  ``search_tool_events`` keeps its own copy of the text it indexes (a tool
  call's name, the string values of its output, its error), with the owner
  beside it.

What is indexed is the same on both: a message once it is no longer
``streaming`` (deltas cost nothing; the finish indexes the whole text), the
first 100,000 characters of each text, titles that are set.

Every object named ``search_*`` belongs to this revision and is invisible to
``tables.py`` (store/search.py ``include_object`` hides it from autogenerate).

A later SQLite migration that rebuilds ``messages``, ``tool_events`` or
``sessions`` with ``batch_alter_table`` drops these triggers and renumbers
rowids: it must re-create the triggers and call ``store.search.rebuild``.
(Since revision 0007, new messages are indexed by the store, not by
``search_messages_insert``.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 08:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MAX_CHARS = 100_000  # characters of each text that are indexed

# --- PostgreSQL -----------------------------------------------------------------

_PG_JSON_TEXT = f"""
CREATE FUNCTION search_json_text(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(string_agg(v #>> '{{}}', ' '), {MAX_CHARS})
    FROM jsonb_path_query(doc, 'strict $.**') AS v
    WHERE jsonb_typeof(v) = 'string'
$$
"""

_PG_COLUMNS = {
    "messages": (
        "CASE WHEN status = 'streaming' THEN NULL "
        f"ELSE to_tsvector('english'::regconfig, left(content, {MAX_CHARS})) END"
    ),
    "tool_events": (
        "to_tsvector('english'::regconfig, left(coalesce(name, '') || ' ' || "
        "coalesce(search_json_text(output), '') || ' ' || "
        f"coalesce(error, ''), {MAX_CHARS}))"
    ),
    "sessions": (
        "CASE WHEN title IS NULL THEN NULL "
        f"ELSE to_tsvector('english'::regconfig, left(title, {MAX_CHARS})) END"
    ),
}


def _upgrade_postgresql() -> None:
    op.execute(_PG_JSON_TEXT)
    for table, expr in _PG_COLUMNS.items():
        # Adding a stored generated column rewrites the table: that is the backfill.
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN search_vector tsvector "
            f"GENERATED ALWAYS AS ({expr}) STORED"
        )
        op.execute(f"CREATE INDEX search_{table} ON {table} USING gin (search_vector)")


def _downgrade_postgresql() -> None:
    for table in _PG_COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS search_{table}")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
    op.execute("DROP FUNCTION IF EXISTS search_json_text(jsonb)")


# --- SQLite ---------------------------------------------------------------------

_TOKENIZE = "tokenize = 'porter unicode61 remove_diacritics 2'"


def _message_body(row: str) -> str:
    return f"substr({row}.content, 1, {MAX_CHARS})"


def _tool_body(row: str) -> str:
    return (
        f"substr(coalesce({row}.name, '') || ' ' || coalesce((SELECT group_concat(j.value, ' ') "
        f"FROM json_tree({row}.output) AS j WHERE j.type = 'text'), '') || ' ' || "
        f"coalesce({row}.error, ''), 1, {MAX_CHARS})"
    )


def _title_body(row: str) -> str:
    return f"substr({row}.title, 1, {MAX_CHARS})"


# Revision 0007 drops this one (the store indexes new messages itself, one
# statement per operation) and re-creates it on the way down.
MESSAGES_INSERT_TRIGGER = f"""CREATE TRIGGER search_messages_insert AFTER INSERT ON messages
    WHEN new.status <> 'streaming' BEGIN
        INSERT INTO search_messages (rowid, content) VALUES (new.rowid, {_message_body("new")});
    END"""

_SQLITE = [
    f"CREATE VIRTUAL TABLE search_messages USING fts5("
    f"content, content = 'messages', content_rowid = 'rowid', {_TOKENIZE})",
    f"CREATE VIRTUAL TABLE search_sessions USING fts5("
    f"title, content = 'sessions', content_rowid = 'rowid', {_TOKENIZE})",
    f"CREATE VIRTUAL TABLE search_tool_events USING fts5(body, owner_id UNINDEXED, {_TOKENIZE})",
    # messages: indexed once no longer streaming.
    MESSAGES_INSERT_TRIGGER,
    f"""CREATE TRIGGER search_messages_delete AFTER DELETE ON messages
    WHEN old.status <> 'streaming' BEGIN
        INSERT INTO search_messages (search_messages, rowid, content)
        VALUES ('delete', old.rowid, {_message_body("old")});
    END""",
    f"""CREATE TRIGGER search_messages_update AFTER UPDATE OF content, status ON messages BEGIN
        INSERT INTO search_messages (search_messages, rowid, content)
        SELECT 'delete', old.rowid, {_message_body("old")} WHERE old.status <> 'streaming';
        INSERT INTO search_messages (rowid, content)
        SELECT new.rowid, {_message_body("new")} WHERE new.status <> 'streaming';
    END""",
    # sessions: the title, when there is one.
    f"""CREATE TRIGGER search_sessions_insert AFTER INSERT ON sessions
    WHEN new.title IS NOT NULL BEGIN
        INSERT INTO search_sessions (rowid, title) VALUES (new.rowid, {_title_body("new")});
    END""",
    f"""CREATE TRIGGER search_sessions_delete AFTER DELETE ON sessions
    WHEN old.title IS NOT NULL BEGIN
        INSERT INTO search_sessions (search_sessions, rowid, title)
        VALUES ('delete', old.rowid, {_title_body("old")});
    END""",
    f"""CREATE TRIGGER search_sessions_update AFTER UPDATE OF title ON sessions BEGIN
        INSERT INTO search_sessions (search_sessions, rowid, title)
        SELECT 'delete', old.rowid, {_title_body("old")} WHERE old.title IS NOT NULL;
        INSERT INTO search_sessions (rowid, title)
        SELECT new.rowid, {_title_body("new")} WHERE new.title IS NOT NULL;
    END""",
    # tool events: a copy of the text, keyed by the tool event's rowid.
    f"""CREATE TRIGGER search_tool_events_insert AFTER INSERT ON tool_events BEGIN
        INSERT INTO search_tool_events (rowid, body, owner_id)
        VALUES (new.rowid, {_tool_body("new")}, new.owner_id);
    END""",
    """CREATE TRIGGER search_tool_events_delete AFTER DELETE ON tool_events BEGIN
        DELETE FROM search_tool_events WHERE rowid = old.rowid;
    END""",
    f"""CREATE TRIGGER search_tool_events_update AFTER UPDATE OF name, output, error
    ON tool_events BEGIN
        DELETE FROM search_tool_events WHERE rowid = old.rowid;
        INSERT INTO search_tool_events (rowid, body, owner_id)
        VALUES (new.rowid, {_tool_body("new")}, new.owner_id);
    END""",
]

# The backfill: the same expressions as the triggers, over the existing rows.
_SQLITE_BACKFILL = [
    f"INSERT INTO search_messages (rowid, content) SELECT m.rowid, {_message_body('m')} "
    "FROM messages AS m WHERE m.status <> 'streaming'",
    f"INSERT INTO search_sessions (rowid, title) SELECT s.rowid, {_title_body('s')} "
    "FROM sessions AS s WHERE s.title IS NOT NULL",
    f"INSERT INTO search_tool_events (rowid, body, owner_id) "
    f"SELECT t.rowid, {_tool_body('t')}, t.owner_id FROM tool_events AS t",
]

SQLITE_BACKFILL = _SQLITE_BACKFILL  # store/search.py rebuild() runs the same


def _upgrade_sqlite() -> None:
    for stmt in _SQLITE:
        op.execute(stmt)
    for stmt in _SQLITE_BACKFILL:
        op.execute(stmt)


def _downgrade_sqlite() -> None:
    for kind in ("messages", "sessions", "tool_events"):
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS search_{kind}_{event}")
        op.execute(f"DROP TABLE IF EXISTS search_{kind}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _downgrade_postgresql()
    else:
        _downgrade_sqlite()
