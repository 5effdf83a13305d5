"""Full-text search queries (the index itself is revisions 0006 and 0007).

The index is kept inside the writing transaction: a generated
``search_vector`` tsvector column with a GIN index on PostgreSQL, FTS5 tables
on SQLite, kept by triggers except for new messages, which the engine indexes
with one statement per operation (:func:`index_messages`). So a search right
after a write sees it, and a rolled-back write leaves no trace in the index.

User input is only ever *words*: on SQLite each word becomes a quoted FTS5
string (so ``NEAR``, ``*``, ``:``, ``(``... are plain text); on PostgreSQL the
text goes through ``plainto_tsquery``, which has no operators. Every word must
appear (AND), ranked by each hit's own text: PostgreSQL's ``ts_rank(..., 1)``,
and on SQLite :func:`row_rank` of FTS5's ``highlight()``. Not FTS5's bm25: it
weighs each word by how many rows of the whole index hold it, every user's
included, so a user could watch their own scores move as others wrote a word.
"""

from __future__ import annotations

import html
import importlib
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from threadkeep.model.jsontext import dumps
from threadkeep.model.search import (
    MARK_CLOSE,
    MARK_OPEN,
    SearchHit,
    SearchIndexCheck,
    SearchKind,
)
from threadkeep.store.types import UTCDateTime

PREFIX = "search_"  # every schema object of the search index is named search_*
MAX_CHARS = 100_000  # characters of each text that are indexed (revision 0006)
MAX_WORDS = 32
SNIPPET_TOKENS = 24
# Markers the engines put around matches before the text is escaped: Unicode
# noncharacters, so the escape cannot touch them and they become <mark> tags.
_OPEN, _CLOSE = "\ufdd0", "\ufdd1"
_ELLIPSIS = "…"


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic autogenerate filter: the search index (tables, shadow tables,
    triggers' targets, the ``search_vector`` columns and their indexes) is made
    by revision 0006 and is not declared in tables.py."""
    return not (reflected and compare_to is None and name is not None and name.startswith(PREFIX))


def words(query: str) -> list[str]:
    """The words of ``query`` as the FTS5 unicode61 tokenizer sees them:
    runs of letters, digits and marks; everything else separates."""
    out: list[str] = []
    cur: list[str] = []
    for ch in query:
        cat = unicodedata.category(ch)
        if cat[0] in "LNM" or cat == "Co":
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out[:MAX_WORDS]


def fts5_query(ws: Sequence[str]) -> str:
    """Each word as an FTS5 string, all required. A word never holds a quote,
    but one is doubled all the same: the string is then literal text."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in ws)


def safe_snippet(raw: str) -> str:
    """Escape everything, then turn the engine's markers into <mark> tags."""
    return html.escape(raw, quote=True).replace(_OPEN, MARK_OPEN).replace(_CLOSE, MARK_CLOSE)


@dataclass(frozen=True, slots=True)
class Filters:
    owner_id: str
    session_id: str | None = None
    role: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    starred: bool | None = None
    include_trashed: bool = False


def _where(f: Filters, created: str, session: str) -> tuple[str, dict[str, Any]]:
    """The filter clauses every kind shares (``session`` names the hit's session id)."""
    sql = ""
    params: dict[str, Any] = {"owner": f.owner_id}
    if f.session_id is not None:
        sql += f" AND {session} = :session_id"
        params["session_id"] = f.session_id
    if f.since is not None:
        sql += f" AND {created} >= :since"
        params["since"] = f.since
    if f.until is not None:
        sql += f" AND {created} < :until"
        params["until"] = f.until
    if f.starred is not None:
        sql += " AND s.starred = :starred"
        params["starred"] = f.starred
    if not f.include_trashed:
        sql += " AND s.deleted_at IS NULL"
    return sql, params


def _text(sql: str, params: dict[str, Any]) -> sa.TextualSelect:
    t = sa.text(sql)
    binds = [sa.bindparam(k, type_=UTCDateTime()) for k in ("since", "until") if k in params]
    if binds:
        t = t.bindparams(*binds)
    return t.columns(created_at=UTCDateTime())


# --- the candidate queries, best first ------------------------------------------


def row_rank(highlighted: str | None) -> float:
    """A SQLite hit's score from its own text alone (``tk_rank`` in SQL, fed
    FTS5's ``highlight()`` of the hit): the matched words it holds, divided
    by 1 + the log of its length in words, as PostgreSQL's ``ts_rank(..., 1)``
    normalises. Re-reading each hit's text costs more than bm25 did: two of
    the most frequent words over 200,000 messages took 40-54 ms at the
    median, against bm25's 19-22 ms (rare words: about 1 ms either way). But
    bm25's weights come from every user's rows."""
    if not highlighted:
        return 0.0
    # Words counted as spaces + 1: split() would build a list per hit.
    return highlighted.count(_OPEN) / (1.0 + math.log1p(highlighted.count(" ") + 1))


def _rank(fts_table: str) -> str:
    return f"tk_rank(highlight({fts_table}, 0, char({ord(_OPEN)}), char({ord(_CLOSE)})))"


_SQLITE_RANKED = {
    SearchKind.MESSAGES: (
        "SELECT m.rowid AS rid, m.id, m.session_id, m.seq, m.role, NULL AS name, "
        "NULL AS message_id, m.created_at, s.title AS session_title, "
        f"{_rank('search_messages')} AS score "
        "FROM search_messages JOIN messages AS m ON m.rowid = search_messages.rowid "
        "JOIN sessions AS s ON s.id = m.session_id AND s.owner_id = m.owner_id "
        "WHERE search_messages MATCH :q AND m.owner_id = :owner",
        "m.created_at",
        "m.session_id",
        "m.id",
    ),
    SearchKind.TOOL_EVENTS: (
        "SELECT t.rowid AS rid, t.id, t.session_id, NULL AS seq, NULL AS role, t.name, "
        "t.message_id, t.created_at, s.title AS session_title, "
        f"{_rank('search_tool_events')} AS score "
        "FROM search_tool_events JOIN tool_events AS t ON t.rowid = search_tool_events.rowid "
        "JOIN sessions AS s ON s.id = t.session_id AND s.owner_id = t.owner_id "
        "WHERE search_tool_events MATCH :q AND t.owner_id = :owner "
        "AND search_tool_events.owner_id = t.owner_id",
        "t.created_at",
        "t.session_id",
        "t.id",
    ),
    SearchKind.SESSIONS: (
        "SELECT s.rowid AS rid, s.id, s.id AS session_id, NULL AS seq, NULL AS role, "
        "NULL AS name, NULL AS message_id, s.created_at, s.title AS session_title, "
        f"{_rank('search_sessions')} AS score "
        "FROM search_sessions JOIN sessions AS s ON s.rowid = search_sessions.rowid "
        "WHERE search_sessions MATCH :q AND s.owner_id = :owner",
        "s.created_at",
        "s.id",
        "s.id",
    ),
}

_SQLITE_SNIPPET = {
    SearchKind.MESSAGES: "search_messages",
    SearchKind.TOOL_EVENTS: "search_tool_events",
    SearchKind.SESSIONS: "search_sessions",
}

_PG_Q = "plainto_tsquery('english'::regconfig, :q)"
_PG_TOOL_TEXT = (
    "left(coalesce(t.name, '') || ' ' || coalesce(search_json_text(t.output), '') || ' ' || "
    f"coalesce(t.error, ''), {MAX_CHARS})"
)

_PG_RANKED = {
    SearchKind.MESSAGES: (
        "SELECT m.id, m.session_id, m.seq, m.role, NULL AS name, NULL AS message_id, "
        "m.created_at, s.title AS session_title, "
        f"ts_rank(m.search_vector, {_PG_Q}, 1) AS score "
        "FROM messages AS m "
        "JOIN sessions AS s ON s.id = m.session_id AND s.owner_id = m.owner_id "
        f"WHERE m.search_vector @@ {_PG_Q} AND m.owner_id = :owner",
        "m.created_at",
        "m.session_id",
        "m.id",
    ),
    SearchKind.TOOL_EVENTS: (
        "SELECT t.id, t.session_id, NULL::bigint AS seq, NULL AS role, t.name, t.message_id, "
        "t.created_at, s.title AS session_title, "
        f"ts_rank(t.search_vector, {_PG_Q}, 1) AS score "
        "FROM tool_events AS t "
        "JOIN sessions AS s ON s.id = t.session_id AND s.owner_id = t.owner_id "
        f"WHERE t.search_vector @@ {_PG_Q} AND t.owner_id = :owner",
        "t.created_at",
        "t.session_id",
        "t.id",
    ),
    SearchKind.SESSIONS: (
        "SELECT s.id, s.id AS session_id, NULL::bigint AS seq, NULL AS role, NULL AS name, "
        "NULL AS message_id, s.created_at, s.title AS session_title, "
        f"ts_rank(s.search_vector, {_PG_Q}, 1) AS score "
        "FROM sessions AS s "
        f"WHERE s.search_vector @@ {_PG_Q} AND s.owner_id = :owner",
        "s.created_at",
        "s.id",
        "s.id",
    ),
}

_PG_HEADLINE_TEXT = {
    SearchKind.MESSAGES: ("messages AS m", f"left(m.content, {MAX_CHARS})", "m.id"),
    SearchKind.TOOL_EVENTS: ("tool_events AS t", _PG_TOOL_TEXT, "t.id"),
    SearchKind.SESSIONS: ("sessions AS s", f"left(s.title, {MAX_CHARS})", "s.id"),
}
_PG_HEADLINE_OPTIONS = (
    f'StartSel="{_OPEN}", StopSel="{_CLOSE}", MaxWords={SNIPPET_TOKENS}, MinWords=12'
)


def _kinds_for(f: Filters, kinds: Sequence[SearchKind]) -> list[SearchKind]:
    # A role names a message's author: only messages have one.
    return [k for k in kinds if f.role is None or k is SearchKind.MESSAGES]


def search(
    conn: sa.Connection,
    query: str,
    f: Filters,
    kinds: Sequence[SearchKind],
    limit: int,
    offset: int,
) -> tuple[list[SearchHit], bool]:
    """The hits from ``offset`` to ``offset + limit``, best first, and whether more follow."""
    ws = words(query)
    if not ws:
        return [], False
    pg = conn.dialect.name == "postgresql"
    want = offset + limit + 1
    found: list[tuple[SearchKind, Any]] = []
    for kind in _kinds_for(f, kinds):
        sql, created, session, key = (_PG_RANKED if pg else _SQLITE_RANKED)[kind]
        extra, params = _where(f, created, session)
        if kind is SearchKind.MESSAGES and f.role is not None:
            extra += " AND m.role = :role"
            params["role"] = f.role
        # PostgreSQL parses the text itself (file paths, e-mail addresses stay whole).
        params["q"] = query if pg else fts5_query(ws)
        params["n"] = want
        order = f" ORDER BY score DESC, {key} LIMIT :n"
        rows = conn.execute(_text(sql + extra + order, params), params).all()
        found.extend((kind, r) for r in rows)
    order_of = {k: i for i, k in enumerate(SearchKind)}
    found.sort(key=lambda kr: (-kr[1].score, order_of[kr[0]], kr[1].id))
    page = found[offset : offset + limit]
    snippets = _pg_snippets(conn, query, page) if pg else _sqlite_snippets(conn, ws, page)
    hits = [
        SearchHit(
            kind=kind,
            id=r.id,
            session_id=r.session_id,
            session_title=r.session_title,
            seq=r.seq,
            role=r.role,
            name=r.name,
            message_id=r.message_id,
            snippet=safe_snippet(snippets.get((kind, r.id), "")),
            score=float(r.score),
            created_at=r.created_at,
        )
        for kind, r in page
    ]
    return hits, len(found) > offset + limit


def _sqlite_snippets(
    conn: sa.Connection, ws: Sequence[str], page: Sequence[tuple[SearchKind, Any]]
) -> dict[tuple[SearchKind, str], str]:
    """The page's snippets, one statement per kind of hit (a statement per
    hit was over half of a search's time: 20 hits, 2.8 ms a search)."""
    out: dict[tuple[SearchKind, str], str] = {}
    q = fts5_query(ws)
    for kind in SearchKind:
        ids = {r.rid: r.id for k, r in page if k is kind}
        if not ids:
            continue
        for rid, text in conn.execute(
            _SQLITE_SNIPPET_STATEMENTS[kind],
            {"o": _OPEN, "c": _CLOSE, "e": _ELLIPSIS, "q": q, "rids": list(ids)},
        ):
            out[(kind, ids[rid])] = text or ""
    return out


# Built once: a text statement built per call is compiled and keyed anew.
_SQLITE_SNIPPET_STATEMENTS = {
    kind: sa.text(
        f"SELECT rowid, snippet({table}, 0, :o, :c, :e, {SNIPPET_TOKENS}) FROM {table} "
        f"WHERE {table} MATCH :q AND rowid IN :rids"
    ).bindparams(sa.bindparam("rids", expanding=True))
    for kind, table in _SQLITE_SNIPPET.items()
}


def _pg_snippets(
    conn: sa.Connection, query: str, page: Sequence[tuple[SearchKind, Any]]
) -> dict[tuple[SearchKind, str], str]:
    out: dict[tuple[SearchKind, str], str] = {}
    for kind in SearchKind:
        ids = [r.id for k, r in page if k is kind]
        if not ids:
            continue
        source, text, key = _PG_HEADLINE_TEXT[kind]
        stmt = sa.text(
            f"SELECT {key} AS id, ts_headline('english'::regconfig, {text}, {_PG_Q}, :opts) "
            f"AS snippet FROM {source} WHERE {key} IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True))
        for row in conn.execute(stmt, {"q": query, "opts": _PG_HEADLINE_OPTIONS, "ids": ids}):
            out[(kind, row.id)] = row.snippet or ""
    return out


def rebuild(conn: sa.Connection) -> None:
    """Rebuild the SQLite index from the tables (after a restore, or a migration
    that rebuilt messages, tool_events or sessions). PostgreSQL's search index
    is a generated column and never needs it; its title trigrams (revision
    0013) are a table of their own, kept by triggers, rebuilt here too. The
    titles are folded by tk_fold on SQLite, which every SQLite engine
    threadkeep makes adds (store/sqlite_functions.py)."""
    if conn.dialect.name == "postgresql":
        grams = importlib.import_module("threadkeep.store.migrations.versions.0013_pg_title_grams")
        conn.exec_driver_sql("DELETE FROM search_title_grams")
        conn.exec_driver_sql(grams.PG_BACKFILL)
        return
    if conn.dialect.name != "sqlite":
        return
    revision = importlib.import_module("threadkeep.store.migrations.versions.0006_search")
    titles = importlib.import_module("threadkeep.store.migrations.versions.0012_title_trigrams")
    for table in ("search_messages", "search_sessions"):  # external content
        conn.exec_driver_sql(f"INSERT INTO {table} ({table}) VALUES ('delete-all')")
    conn.exec_driver_sql("DELETE FROM search_tool_events")
    conn.exec_driver_sql("DELETE FROM search_titles")
    for stmt in revision.SQLITE_BACKFILL:
        conn.exec_driver_sql(stmt)
    conn.exec_driver_sql(titles.SQLITE_BACKFILL)


# Each SQLite index against its table: rows that should be indexed and are
# not, and index entries with no such row. The two external-content indexes
# record their documents in *_docsize (one row per indexed rowid); the tool
# events and title trigram indexes keep their own copy in *_content. The
# conditions are those of revisions 0006's and 0012's triggers and backfills.
_SQLITE_INDEXES = [
    (SearchKind.MESSAGES, "search_messages", "messages", "m.status <> 'streaming'", "docsize"),
    (SearchKind.SESSIONS, "search_sessions", "sessions", "m.title IS NOT NULL", "docsize"),
    (SearchKind.SESSIONS, "search_titles", "sessions", "m.title IS NOT NULL", "content"),
    (SearchKind.TOOL_EVENTS, "search_tool_events", "tool_events", "1", "content"),
]


# PostgreSQL's title trigrams (revision 0013) against the titles: titled
# sessions with no entry or with another array than their title gives now
# (missing: the filter's index would not find them), and entries of no
# titled session (stale). The arrays are compared, not only the keys as on
# SQLite: a server whose lower() changed (a new collation library after an
# upgrade) leaves arrays that no longer match. It costs about 100 µs a
# titled session (2.0-2.2 s for 20,000 titles of 30 characters; 0.6-0.7 s
# with revision 0013's trigrams alone), in doctor and reindex.
_PG_TITLE_GRAMS_CHECK = """
SELECT count(*),
       count(*) FILTER (WHERE g.grams IS DISTINCT FROM tk_title_grams(s.owner_id, s.title)),
       (SELECT count(*) FROM search_title_grams AS d WHERE NOT EXISTS
            (SELECT 1 FROM sessions AS m WHERE m.id = d.session_id AND m.title IS NOT NULL))
FROM sessions AS s LEFT JOIN search_title_grams AS g ON g.session_id = s.id
WHERE s.title IS NOT NULL
"""


def check_index(conn: sa.Connection) -> list[SearchIndexCheck]:
    """Compare each SQLite search index with its table, by rowid: one pass
    over each (0.13 s for 200,000 messages, measured). PostgreSQL's search
    index is a generated column of the row itself and cannot drift; its
    title trigrams are a table kept by triggers, and are checked."""
    if conn.dialect.name == "postgresql":
        expected, missing, stale = conn.exec_driver_sql(_PG_TITLE_GRAMS_CHECK).one()
        return [
            SearchIndexCheck(
                kind=SearchKind.SESSIONS,
                index="search_title_grams",
                expected=expected,
                missing=missing,
                stale=stale,
            )
        ]
    if conn.dialect.name != "sqlite":
        return []
    out: list[SearchIndexCheck] = []
    for kind, index, table, indexed, shadow in _SQLITE_INDEXES:
        entries = f"{index}_{shadow}"
        # One pass over the table counts what should be indexed and what of
        # it is not (d.id is NULL); one over the entries counts the stale.
        expected, missing, stale = conn.exec_driver_sql(
            f"SELECT count(*), count(*) - count(d.id), "
            f"(SELECT count(*) FROM {entries} AS d WHERE NOT EXISTS "
            f"(SELECT 1 FROM {table} AS m WHERE m.rowid = d.id AND {indexed})) "
            f"FROM {table} AS m LEFT JOIN {entries} AS d ON d.id = m.rowid WHERE {indexed}"
        ).one()
        out.append(
            SearchIndexCheck(
                kind=kind, index=index, expected=expected, missing=missing, stale=stale
            )
        )
    return out


# New messages, by id, with the text and condition of revision 0006's
# triggers (the delete and update triggers remove exactly what this enters).
# IN, not a join: an id listed twice is still entered once.
_INDEX_MESSAGES = (
    "INSERT INTO search_messages (rowid, content) "
    f"SELECT m.rowid, substr(m.content, 1, {MAX_CHARS}) FROM messages AS m "
    "WHERE m.id IN (SELECT value FROM json_each(?)) AND m.status <> 'streaming'"
)
# One message, the common case of a single append: the list subquery costs
# about 15 µs more than the lookup itself (31 against 17 µs, measured).
_INDEX_ONE_MESSAGE = (
    "INSERT INTO search_messages (rowid, content) "
    f"SELECT m.rowid, substr(m.content, 1, {MAX_CHARS}) FROM messages AS m "
    "WHERE m.id = ? AND m.status <> 'streaming'"
)


def index_messages(cursor: Any, ids: list[str]) -> None:
    """Enter the messages ``ids`` (just inserted, in the open transaction) into
    the SQLite index, on the DBAPI ``cursor``. An id whose row is not there
    (its operation was rolled back to a savepoint) enters nothing.

    Why not a row trigger, as for everything else: FTS5 flushes its pending
    terms to a new segment at every statement savepoint, and a trigger opens
    one per row, so a batch of 100 messages wrote 100 segments (42 against
    5 µs of CPU per message, measured). One statement per operation, or per
    run of appends in one group commit (store/sqlite.py), adds them all to
    one segment."""
    if len(ids) == 1:
        cursor.execute(_INDEX_ONE_MESSAGE, (ids[0],))
    elif ids:
        cursor.execute(_INDEX_MESSAGES, (dumps(ids),))


def optimize(conn: sa.Connection) -> None:
    """Merge the SQLite index into one segment per table. FTS5 drops a deleted
    row's terms lazily (as segments merge); after erasing data for good (a
    user, a purge) this makes sure no trace of it stays in the index files.
    PostgreSQL: nothing to do (VACUUM removes dead tuples and index entries)."""
    if conn.dialect.name != "sqlite":
        return
    for table in ("search_messages", "search_sessions", "search_tool_events", "search_titles"):
        conn.exec_driver_sql(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
