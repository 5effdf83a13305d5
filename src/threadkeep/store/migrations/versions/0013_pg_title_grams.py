"""PostgreSQL: the trigrams of each titled session's folded title, for the
list's title filter, in a GIN index that needs no extension.

The title filter walks the list newest first and tests each title as it
passes, so a text that few titles hold walked every session: 64-77 ms at
100,000 sessions. ``pg_trgm`` would index this, but it is an extension:
``CREATE EXTENSION`` needs a privilege a role confined to one schema may
lack, and a dump of that schema alone restores into a database without it
only in part. So threadkeep keeps the trigrams itself:
``search_title_grams`` holds, per titled session, an array of the distinct
three-character substrings of its title folded the way the filter folds
(``lower()``, final sigma as medial), plus one element naming the owner
(``o:<owner id>``, longer than any trigram), under a GIN index: the core
of PostgreSQL, no extension. A text of three characters or more is then an
array the matching titles' arrays contain, with the owner's element among
them, and a title that holds the text always has all of its trigrams (the
list tests the title itself in any case; the index only narrows).

Its own table rather than a column of ``sessions``: an append updates the
session's row, and a row that PostgreSQL rewrites takes a new entry in
every index of the table, GIN included; triggers on ``sessions`` keep this
table, on insert and on an update that changes the title (or the owner),
and a session's delete takes its row with it (the foreign key's cascade). An append never
names ``title``, so it runs none of them.

``tk_title_grams`` is one SQL function for both sides, the index's arrays
and the filter's: the text's array is folded by the same server, with the
same ``lower()``.

SQLite: nothing here (revision 0012 indexes its titles with FTS5).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 00:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# IMMUTABLE, as lower() and translate() are: the index stores its results.
# Fewer than three characters give the owner's element alone. OR REPLACE,
# for both functions: a dump of an older revision restored over this one
# leaves them behind (pg_restore drops only what the dump holds), and
# opening the store then runs this revision again (as 0011 does).
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION tk_title_grams(owner text, title text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['o:' || owner] || coalesce(array_agg(DISTINCT substr(f, i, 3)), '{}')
    FROM (SELECT translate(lower(title), '\u03c2', '\u03c3') AS f) AS folded,
         generate_series(1, length(f) - 2) AS i
$$
"""

PG_TABLE = """
CREATE TABLE search_title_grams (
    session_id varchar(128) PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    grams text[] NOT NULL
)
"""

# fastupdate off: a session is created far less often than its list is
# read, and a pending list would be scanned by every read until merged.
PG_INDEX = (
    "CREATE INDEX search_title_grams_gin ON search_title_grams "
    "USING gin (grams) WITH (fastupdate = off)"
)

PG_SYNC_FUNCTION = """
CREATE OR REPLACE FUNCTION tk_title_grams_keep() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.title IS NULL THEN
        DELETE FROM search_title_grams WHERE session_id = NEW.id;
    ELSE
        INSERT INTO search_title_grams (session_id, grams)
        VALUES (NEW.id, tk_title_grams(NEW.owner_id, NEW.title))
        ON CONFLICT (session_id) DO UPDATE SET grams = EXCLUDED.grams;
    END IF;
    RETURN NULL;
END
$$
"""

PG_TRIGGERS = [
    "CREATE TRIGGER search_title_grams_insert AFTER INSERT ON sessions "
    "FOR EACH ROW WHEN (NEW.title IS NOT NULL) EXECUTE FUNCTION tk_title_grams_keep()",
    "CREATE TRIGGER search_title_grams_update AFTER UPDATE OF title, owner_id ON sessions "
    "FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title "
    "OR OLD.owner_id IS DISTINCT FROM NEW.owner_id) "
    "EXECUTE FUNCTION tk_title_grams_keep()",
]

PG_BACKFILL = (
    "INSERT INTO search_title_grams (session_id, grams) "
    "SELECT id, tk_title_grams(owner_id, title) FROM sessions WHERE title IS NOT NULL"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(PG_FUNCTION)
    op.execute(PG_TABLE)
    op.execute(PG_INDEX)
    op.execute(PG_SYNC_FUNCTION)
    for stmt in PG_TRIGGERS:
        op.execute(stmt)
    op.execute(PG_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS search_title_grams_{event} ON sessions")
    op.execute("DROP TABLE IF EXISTS search_title_grams")
    op.execute("DROP FUNCTION IF EXISTS tk_title_grams_keep()")
    op.execute("DROP FUNCTION IF EXISTS tk_title_grams(text, text)")
