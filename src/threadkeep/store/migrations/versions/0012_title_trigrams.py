"""SQLite: a trigram index of case-folded titles, for the list's title filter.

The title filter (``title_contains``) tested each session's title while it
walked the list newest first, so a text that few titles hold walked every
session: 230 ms at 100,000 sessions, nearly all of it reading the rows.
``search_titles`` is an FTS5 table with the ``trigram`` tokenizer that holds
each titled session's title case-folded by Python's ``str.casefold``
(``tk_fold``, store/sqlite_functions.py), under the session's rowid. A text
of three characters or more, folded the same way, is then a phrase of
trigrams whose matches are exactly the titles that hold it.

Why folded by Python rather than by the tokenizer's own ``case_sensitive 0``:
FTS5 folds one character at a time, and ``str.casefold`` does not (``ß``
folds to ``ss``), so the tokenizer's matches would miss titles the filter
finds, and an index that misses rows cannot narrow a search.

Triggers keep it, on insert, on an update that changes the title, and on
delete; an append never names ``title``, so it runs none of them. The table
stores its own copy of the folded text, so a delete needs only the rowid
and never depends on folding the old title again to the same result. Like
the other ``search_*`` tables it is keyed by the sessions' rowids, so a
migration that rebuilds ``sessions`` must call ``store.search.rebuild``
(revision 0006).

PostgreSQL: nothing here. Its title filter still walks the list; a trigram
index there needs the ``pg_trgm`` extension (docs/performance.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 21:45:00
"""

from __future__ import annotations

from alembic import op

from threadkeep.store.sqlite_functions import add_functions

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# columnsize=0: no per-row size table (no ranking is ever asked of it), one
# b-tree fewer written per title.
SQLITE_TABLE = (
    "CREATE VIRTUAL TABLE search_titles USING fts5("
    "folded, tokenize = 'trigram case_sensitive 1', columnsize = 0)"
)

SQLITE_TRIGGERS = [
    "CREATE TRIGGER search_titles_insert AFTER INSERT ON sessions "
    "WHEN new.title IS NOT NULL BEGIN "
    "INSERT INTO search_titles (rowid, folded) VALUES (new.rowid, tk_fold(new.title)); END",
    "CREATE TRIGGER search_titles_update AFTER UPDATE OF title ON sessions "
    "WHEN old.title IS NOT new.title BEGIN "
    "DELETE FROM search_titles WHERE rowid = old.rowid; "
    "INSERT INTO search_titles (rowid, folded) "
    "SELECT new.rowid, tk_fold(new.title) WHERE new.title IS NOT NULL; END",
    "CREATE TRIGGER search_titles_delete AFTER DELETE ON sessions "
    "WHEN old.title IS NOT NULL BEGIN "
    "DELETE FROM search_titles WHERE rowid = old.rowid; END",
]

SQLITE_BACKFILL = (
    "INSERT INTO search_titles (rowid, folded) "
    "SELECT rowid, tk_fold(title) FROM sessions WHERE title IS NOT NULL"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # The backfill folds in this connection, whoever opened it.
    add_functions(bind.connection.dbapi_connection)
    op.execute(SQLITE_TABLE)
    for stmt in SQLITE_TRIGGERS:
        op.execute(stmt)
    op.execute(SQLITE_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS search_titles_{event}")
    op.execute("DROP TABLE IF EXISTS search_titles")
