"""PostgreSQL: the title index finds texts of one and two characters too.

Revision 0013 indexed each title's trigrams, so a text shorter than three
characters had nothing to look up: the list walked every session for it
(74-81 ms at 100,000 sessions for a two-letter text no title holds). A
search box filters from its first keystroke, so those are the texts a user
types most. Each title's array now also holds its distinct bigrams (as
``b:`` and the two characters) and its distinct characters (``u::`` and
the character). Every such element is four characters long and a trigram
three, so no element of one kind equals one of another; the owner's element
is longer than any.

The filter's text gets its own function, ``tk_title_text_grams``: the
trigrams of a text of three characters or more (as before), else its one
bigram or its one character, with the owner's element. It folds with the
same ``lower()`` as the index, so a title that holds the text holds that
element: the array of a title holds every substring of up to three
characters of its folded form.

The price: arrays about twice as long (a 30-character title: 28 trigrams,
plus about 25 bigrams and 18 characters), so creating or renaming a titled
session writes more GIN entries. Appends run no trigger, as before.

Downgrade: 0013's function again, and every array rebuilt by it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 03:00:00
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As 0013's: IMMUTABLE (lower() and translate() are), OR REPLACE (a restored
# dump of an older revision leaves these behind, and the store then runs
# this revision again). array_agg(DISTINCT) sorts, so the array of a title
# is always the same array: the index check compares arrays.
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION tk_title_grams(owner text, title text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['o:' || owner]
        || coalesce((SELECT array_agg(DISTINCT substr(f, i, 3))
                     FROM generate_series(1, length(f) - 2) AS i), '{}')
        || coalesce((SELECT array_agg(DISTINCT 'b:' || substr(f, i, 2))
                     FROM generate_series(1, length(f) - 1) AS i), '{}')
        || coalesce((SELECT array_agg(DISTINCT 'u::' || substr(f, i, 1))
                     FROM generate_series(1, length(f)) AS i), '{}')
    FROM (SELECT translate(lower(title), '\u03c2', '\u03c3') AS f) AS folded
$$
"""

PG_TEXT_FUNCTION = """
CREATE OR REPLACE FUNCTION tk_title_text_grams(owner text, text text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['o:' || owner] || CASE
        WHEN length(f) >= 3 THEN coalesce((SELECT array_agg(DISTINCT substr(f, i, 3))
                                           FROM generate_series(1, length(f) - 2) AS i), '{}')
        WHEN length(f) = 2 THEN ARRAY['b:' || f]
        WHEN length(f) = 1 THEN ARRAY['u::' || f]
        ELSE '{}'::text[]
    END
    FROM (SELECT translate(lower(text), '\u03c2', '\u03c3') AS f) AS folded
$$
"""

# Every array again, by the function now in place (0014's or 0013's).
PG_REBUILD = (
    "UPDATE search_title_grams AS g SET grams = tk_title_grams(s.owner_id, s.title) "
    "FROM sessions AS s WHERE s.id = g.session_id"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(PG_FUNCTION)
    op.execute(PG_TEXT_FUNCTION)
    op.execute(PG_REBUILD)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    before = importlib.import_module("threadkeep.store.migrations.versions.0013_pg_title_grams")
    op.execute(before.PG_FUNCTION)
    op.execute(PG_REBUILD)
    op.execute("DROP FUNCTION IF EXISTS tk_title_text_grams(text, text)")
