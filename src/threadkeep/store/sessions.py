"""Queries on sessions. Every query is scoped by ``owner_id``: a session owned by
someone else is indistinguishable from a missing one."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from threadkeep.errors import (
    AlreadyExists,
    HasBranches,
    InvalidInput,
    InvalidState,
    SessionNotFound,
    UserNotFound,
    VersionConflict,
)
from threadkeep.model.sessions import Session, SessionFilter
from threadkeep.model.text import check_text
from threadkeep.model.trusted import trusted
from threadkeep.store.changes import row_json
from threadkeep.store.contract import StoreEngine, WriteTx
from threadkeep.store.prepared import Prepared, bound_set, bound_values, decoder, prepared
from threadkeep.store.prepared import cursor as prepared_cursor
from threadkeep.store.tables import (
    SESSION_FLAGS,
    SESSION_RECORD_TABLES,
    messages,
    session_tags,
    sessions,
    timeline_events,
    tool_events,
    uploads,
    users,
)


def to_session(row: Any) -> Session:
    return trusted(Session, {str(k): v for k, v in row._mapping.items()})


def log_session(tx: WriteTx, op: str, row: Any, columns: Iterable[str] | None = None) -> None:
    """Log a session row: whole, or (an update) only its key and ``columns``.

    Updates log only what changed, as sync sends them. Sync also relies on
    ``deleted_at`` appearing in a logged update only when the session moves
    into or out of the trash: that is how a trashed session leaves the
    ``sessions`` shape (a delete) and a restored one re-enters it (an insert,
    which is why a restore logs the whole row)."""
    m = row._mapping
    data = m if columns is None else {"id": m["id"], **{c: m[c] for c in columns}}
    tx.log("sessions", m["id"], op, row_json(data), m["owner_id"], m["id"])


def insert_session(
    tx: WriteTx,
    owner_id: str,
    session_id: str,
    fields: dict[str, Any],
    *,
    check_owner: bool = False,
) -> Session:
    """Insert a session row and log it. ``check_owner`` also refuses an
    unknown owner (UserNotFound, before the id's AlreadyExists), in the same
    round trip as the id's check."""
    owner, taken = tx.conn.execute(_CLAIM, {"sid": session_id, "owner": owner_id}).one()
    if check_owner and owner is None:
        raise UserNotFound(owner_id)
    if taken is not None:
        # Reported the same way whoever owns it: the id is simply not available.
        raise AlreadyExists("session", session_id)
    values: dict[str, Any] = {
        "id": session_id,
        "owner_id": owner_id,
        "title": None,
        "model": None,
        "provider": None,
        "state": "active",
        "tags": [],
        "starred": False,
        "pinned": False,
        "archived": False,
        "metadata": {},
        "parent_session_id": None,
        "fork_seq": None,
        "head_seq": 0,
        "event_seq": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "version": 1,
        "created_at": tx.now,
        "updated_at": tx.now,
        "last_activity_at": tx.now,
        "deleted_at": None,
    }
    values.update(fields)
    row = tx.conn.execute(_INSERT, values).one()
    log_session(tx, "insert", row)
    return to_session(row)


# Creating a session ran its statements through ``.values(**values)`` and
# ``.where(... == literal)``, which SQLAlchemy builds and keys anew on every
# call: more than half of a create's client CPU (SQLite 1.0 -> 0.44 ms,
# PostgreSQL 2.0 -> 0.7-0.8 ms, with the one round trip saved). Built once,
# with the values as parameters, they are compiled once and looked up by
# the cache key each statement memoizes.
_CLAIM = sa.select(
    sa.select(users.c.id).where(users.c.id == sa.bindparam("owner")).scalar_subquery(),
    sa.select(sessions.c.id).where(sessions.c.id == sa.bindparam("sid")).scalar_subquery(),
)
_INSERT = sessions.insert().returning(*sessions.c)


# The session by id, built once: SQLAlchemy memoizes a statement's cache
# key, so executing the same object skips building the select and keying
# it again (254 -> 107 µs of CPU per call on SQLite, measured). Every read
# and write that needs a session row goes through ``get_row``.
_BY_ID = sa.select(sessions).where(
    sessions.c.id == sa.bindparam("sid"), sessions.c.owner_id == sa.bindparam("owner")
)
_ROW_FOR = {
    "read": _BY_ID,
    "update": _BY_ID.with_for_update(),
    "key_share": _BY_ID.with_for_update(read=True, key_share=True),
}


def get_row(
    conn: sa.Connection,
    owner_id: str,
    session_id: str,
    *,
    lock: bool = False,
    key_share: bool = False,
) -> Any:
    """The session's row. ``lock`` holds it for an update (FOR UPDATE on
    PostgreSQL); ``key_share`` holds it against a rewind or a purge (their
    FOR UPDATE and DELETE wait for it) but not against an append, whose
    UPDATE of the counters takes the weaker FOR NO KEY UPDATE lock. SQLite's
    single writer needs neither."""
    stmt = _ROW_FOR["update" if lock else "key_share" if key_share else "read"]
    row = conn.execute(stmt, {"sid": session_id, "owner": owner_id}).first()
    if row is None:
        raise SessionNotFound(session_id)
    return row


def get_live_row(
    conn: sa.Connection,
    owner_id: str,
    session_id: str,
    *,
    lock: bool = False,
    key_share: bool = False,
) -> Any:
    row = get_row(conn, owner_id, session_id, lock=lock, key_share=key_share)
    if row.deleted_at is not None:
        raise InvalidState(session_id, "the session is in the trash; restore it first")
    return row


def get_session(conn: sa.Connection, owner_id: str, session_id: str) -> Session:
    """The session (in the trash or not), on a compiled statement decoded
    straight into the model, as the list is: what a client reads on opening
    a session. Building the Core select and its result rows cost more than
    the query (``get_row`` does both, for the write paths that need a row)."""
    stmt = prepared(conn.dialect, "sessions.get", lambda: _BY_ID)
    row = stmt.execute(prepared_cursor(conn), {"sid": session_id, "owner": owner_id}).fetchone()
    if row is None:
        raise SessionNotFound(session_id)
    return trusted(Session, decoder(conn.dialect, sessions)(row))


def _encode_cursor(at: datetime, key: str) -> str:
    raw = json.dumps([at.isoformat(), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(key, str):
            raise ValueError
        check_text("cursor", key)
        return when, key
    except (ValueError, TypeError, json.JSONDecodeError, InvalidInput, UnicodeDecodeError):
        raise InvalidInput("cursor", "is not a cursor this server returned") from None


@dataclass(frozen=True)
class _ListShape:
    """What a list query's statement depends on, beside its values: each shape
    is compiled once (store/prepared.py) and keyed by its repr."""

    trashed: bool
    flags: tuple[tuple[str, bool], ...]
    tag: Literal["few", "common"] | None  # how a tag filter is read, below
    title: Literal["scan", "few", "common"] | None  # how a title filter is, below
    sigma: bool  # the title's text holds a sigma (StoreEngine.fold)
    trigrams: bool  # the title's text is long enough for search_titles' trigrams
    after: bool


# The two ways to find the sessions that carry a tag. "few": read them
# through session_tags and sort them, a cost that grows with their number.
# "common": walk the list newest first and test each session as it passes
# (``StoreEngine.carries_tag``), a cost that grows with how many sessions it
# passes per hit, so it falls as the tag gets commoner. The walk stops after
# WALK_WINDOW sessions and a page it did not fill is read the first way: a
# common tag that recent sessions lack (one only old sessions carry) would
# otherwise walk the whole list.
#
# Fewer sessions than FEW_TAGGED carrying the tag: the first way. Both
# figures measured at 100,000 sessions, see docs/performance.md "Filtered
# views".
FEW_TAGGED = 600
WALK_WINDOW = 4_000

# A title filter is read the same two ways, through SQLite's trigram index
# of folded titles (search_titles, revision 0012) or by walking the list,
# with the same window. A session passed on the walk costs more here (its
# row is read to fold its title) and a match found through the index a
# little more too, so the number of matches where walking starts to pay is
# higher. A text of fewer than three characters has no trigram in SQLite's
# index: it always walks first, and a page the window did not fill reads
# the index's folded titles one by one (a scan of that small table: 20 ms
# for 100,000 titles, where walking them all took 210). "scan" is the walk without a window,
# where the index is not to be had (a tag filter beside it, which then
# decides the way).
#
# PostgreSQL's index (search_title_grams, revisions 0013 and 0014) is a GIN
# index of each title's trigrams, bigrams and characters, and a GIN scan
# cannot stop at a count: it builds the whole set of matches first, which
# for a text every title holds costs more than the walk. So there the list
# walks first, with the window, and reads a page the window did not fill
# through the index, for a text of any length.
FEW_TITLED = 2_000
TRIGRAM = 3


def list_sessions(
    conn: sa.Connection,
    engine: StoreEngine,
    owner_id: str,
    flt: SessionFilter,
    limit: int,
    cursor: str | None,
) -> tuple[list[Session], str | None]:
    """Newest activity first; keyset pagination on (last_activity_at, id), which
    the partial index ix_sessions_live_activity serves directly (or a flag's
    own index, or for a rare tag session_tags)."""
    shape, values = list_query(conn, owner_id, flt, limit, cursor)
    rows = list_statement(conn, engine, shape).execute(prepared_cursor(conn), values).fetchall()
    if "common" in (shape.tag, shape.title) and len(rows) <= limit:  # the window ran out
        del values["window"]
        if shape.tag == "common":
            shape = replace(shape, tag="few")
        else:
            shape = replace(shape, title="few")
        few = list_statement(conn, engine, shape)
        rows = few.execute(prepared_cursor(conn), values).fetchall()
    decode = decoder(conn.dialect, sessions)
    return _page([trusted(Session, decode(r)) for r in rows], limit)


def list_query(
    conn: sa.Connection, owner_id: str, flt: SessionFilter, limit: int, cursor: str | None
) -> tuple[_ListShape, dict[str, Any]]:
    """The shape of the statement that lists this page, and its values. A
    tag or title filter takes the way that suits how many sessions match."""
    values: dict[str, Any] = {"owner": owner_id, "n": limit + 1}
    tag: Literal["few", "common"] | None = None
    title: Literal["scan", "few", "common"] | None = None
    folded = (flt.title_contains or "").casefold()  # as tk_fold, SQLite's fold
    short = len(folded) < TRIGRAM
    if flt.tag is not None:
        values["tag"] = flt.tag
        tag = "few" if _few_carry(conn, owner_id, flt.tag) else "common"
        if tag == "common":
            values["window"] = WALK_WINDOW
    if flt.title_contains:
        values["title"] = _contains_pattern(flt.title_contains)
        title = "scan"
        if tag is None and conn.dialect.name == "sqlite":
            if short:
                values["folded"] = folded
                title = "common"
            else:
                values["phrase"] = '"' + folded.replace('"', '""') + '"'
                title = "few" if _few_titled(conn, owner_id, values["phrase"]) else "common"
        elif tag is None:
            # PostgreSQL folds the text itself (tk_title_text_grams, with
            # lower()); a text of any length has an element to look up.
            values["text"] = flt.title_contains
            title = "common"
        if title == "common":
            values["window"] = WALK_WINDOW
    if cursor is not None:
        values["at"], values["key"] = _decode_cursor(cursor)
    shape = _ListShape(
        trashed=bool(flt.trashed),
        flags=tuple((f, w) for f in SESSION_FLAGS if (w := getattr(flt, f)) is not None),
        tag=tag,
        title=title,
        sigma="\u03c3" in folded,
        trigrams=not short,
        after=cursor is not None,
    )
    return shape, values


def list_statement(conn: sa.Connection, engine: StoreEngine, shape: _ListShape) -> Prepared:
    """The list's statement of that shape, compiled once per dialect (a test
    asks the database for its plan)."""
    return prepared(conn.dialect, f"sessions.list {shape}", lambda: _list_statement(engine, shape))


def _contains_pattern(text: str) -> str:
    """A LIKE pattern for titles holding ``text``, with LIKE's own characters
    and the escape taken literally; the statement folds it as it folds the
    titles (``StoreEngine.fold``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _list_statement(engine: StoreEngine, shape: _ListShape) -> sa.Executable:
    src: sa.FromClause = sessions
    if shape.tag == "few":
        src = _carrying(engine.dialect)
    elif shape.title == "few":
        src = _titled(engine.dialect, shape.trigrams)
    c = src.c

    def holds_title(c: sa.ColumnCollection[str, Any]) -> sa.ColumnElement[bool]:
        # Tested in every way, the index's too: it narrows, this decides.
        # Folded once per statement (a subquery), not once per row.
        text = sa.bindparam("title", type_=sa.String)
        pattern = sa.select(engine.fold(text, shape.sigma)).scalar_subquery()
        return engine.fold(c.title, shape.sigma).like(pattern, escape="\\")

    q = sa.select(src).where(c.owner_id == sa.bindparam("owner"))
    q = q.where(c.deleted_at.is_not(None) if shape.trashed else c.deleted_at.is_(None))
    for name, want in shape.flags:
        # Compiled as "= true" / "= 1", a constant rather than a parameter:
        # PostgreSQL's generic plans can then match it to the flag's partial
        # index (ix_sessions_<flag>).
        q = q.where(c[name] == want)
    if shape.title is not None and shape.title != "common":
        q = q.where(holds_title(c))
    if shape.after:
        at = sa.bindparam("at", type_=sessions.c.last_activity_at.type)
        q = q.where(sa.tuple_(c.last_activity_at, c.id) < sa.tuple_(at, sa.bindparam("key")))
    q = q.order_by(c.last_activity_at.desc(), c.id.desc())
    if shape.tag == "common":
        q = _walk_window(engine, q, engine.carries_tag)
    elif shape.title == "common":
        q = _walk_window(engine, q, holds_title)
    return q.limit(sa.bindparam("n", type_=sa.BigInteger))


def _walk_window(
    engine: StoreEngine,
    listed: sa.Select[Any],
    test: Callable[[sa.ColumnCollection[str, Any]], sa.ColumnElement[bool]],
) -> sa.Select[Any]:
    """Those of the list's first ``window`` sessions that pass ``test`` (carry
    the tag, hold the title's text).

    PostgreSQL knows the rows of a subquery come out in its order: the
    window is a subquery with a LIMIT. SQLite (3.40) would sort them again,
    all ``window`` of them, whole (20 ms): there the window is a lower bound
    on the activity time, the ``window``-th session's, read from the index
    first ('' when there are fewer, which every stored time passes)."""
    window = sa.bindparam("window", type_=sa.BigInteger)
    if engine.keeps_subquery_order:
        recent = listed.limit(window).subquery("recent")
        c = recent.c
        return sa.select(recent).where(test(c)).order_by(c.last_activity_at.desc(), c.id.desc())
    c = sessions.c
    edge = listed.with_only_columns(c.last_activity_at).limit(1).offset(window)
    bound = sa.func.coalesce(edge.scalar_subquery(), sa.literal_column("''"))
    return listed.where(c.last_activity_at >= bound, test(c))


def _few_carry(conn: sa.Connection, owner_id: str, tag: str) -> bool:
    """Whether fewer than ``FEW_TAGGED`` of the user's sessions carry ``tag``:
    a count of at most that many entries of session_tags' primary key."""
    stmt = prepared(conn.dialect, "sessions.tag_count", _tag_count_statement)
    values = {"owner": owner_id, "tag": tag, "cap": FEW_TAGGED}
    found = stmt.execute(prepared_cursor(conn), values).fetchone()[0]
    return int(found) < FEW_TAGGED


def _tag_count_statement() -> sa.Executable:
    st = session_tags.c
    some = (
        sa.select(sa.literal(1))
        .where(st.owner_id == sa.bindparam("owner"), st.tag == sa.bindparam("tag"))
        .limit(sa.bindparam("cap", type_=sa.BigInteger))
    )
    return sa.select(sa.func.count()).select_from(some.subquery())


def _few_titled(conn: sa.Connection, owner_id: str, phrase: str) -> bool:
    """Whether fewer than ``FEW_TITLED`` of the user's sessions hold the text
    in their titles, by the trigram index (at most that many matches)."""
    stmt = prepared(conn.dialect, "sessions.title_count", _title_count_statement)
    values = {"owner": owner_id, "phrase": phrase, "cap": FEW_TITLED}
    found = stmt.execute(prepared_cursor(conn), values).fetchone()[0]
    return int(found) < FEW_TITLED


_search_titles = sa.table("search_titles", sa.column("rowid"), sa.column("folded"))


def _title_matches(trigrams: bool = True) -> sa.Select[Any]:
    """The user's sessions whose folded titles hold the text, found through
    SQLite's trigram index (revision 0012), each by rowid: the text's
    trigrams, or for a shorter text each folded title read in turn."""
    st = _search_titles
    holds: sa.ColumnElement[Any]
    if trigrams:
        holds = sa.literal_column("search_titles").op("MATCH")(sa.bindparam("phrase"))
    else:
        holds = sa.func.instr(st.c.folded, sa.bindparam("folded")) > 0
    return (
        sa.select(sessions)
        .select_from(st.join(sessions, sa.literal_column("sessions.rowid") == st.c.rowid))
        .where(holds, sessions.c.owner_id == sa.bindparam("owner"))
    )


def _title_count_statement() -> sa.Executable:
    some = (
        _title_matches()
        .with_only_columns(sa.literal(1))
        .limit(sa.bindparam("cap", type_=sa.BigInteger))
    )
    return sa.select(sa.func.count()).select_from(some.subquery())


_title_grams = sa.table("search_title_grams", sa.column("session_id"), sa.column("grams"))


def _pg_title_matches() -> sa.Select[Any]:
    """The user's sessions whose titles have every trigram of the text (or
    its one bigram or character, when shorter), and the user's own element,
    by PostgreSQL's GIN index (revisions 0013 and 0014); each session then
    by primary key, as :func:`_carrying` reads a tag's."""
    tg = _title_grams.c
    want = sa.func.tk_title_text_grams(
        sa.bindparam("owner", type_=sa.String),
        sa.bindparam("text", type_=sa.String),
        type_=sa.ARRAY(sa.Text),
    )
    one = sa.select(sessions).where(sessions.c.id == tg.session_id).offset(0).lateral("one")
    found = sa.select(one).select_from(_title_grams.join(one, sa.true()))
    return found.where(tg.grams.op("@>", return_type=sa.Boolean)(want))


def _titled(dialect: str, trigrams: bool) -> sa.CTE:
    """The user's sessions whose titles hold the text, by the trigram index.
    Materialized for the reason given at :func:`_carrying`."""
    found = _pg_title_matches() if dialect == "postgresql" else _title_matches(trigrams)
    return found.cte("titled").prefix_with("MATERIALIZED")


def _carrying(dialect: str) -> sa.CTE:
    """The user's sessions that carry the tag, found through session_tags:
    each entry, then its session by primary key.

    Materialized, so that the planner cannot fold it into the list query and
    walk the activity index testing each session instead, which it prefers
    (it saves the sort) and which is what makes a rare tag slow. On
    PostgreSQL the session is a LATERAL subquery with an OFFSET, which it
    must run once per entry: a plain join, once the tables had statistics,
    became a hash join over a scan of every session (28 ms for a tag on
    1,000 of 100,000 sessions, against 5 ms by key). SQLite always joins
    by key here and has no LATERAL."""
    st = session_tags.c
    if dialect == "postgresql":
        one = sa.select(sessions).where(sessions.c.id == st.session_id).offset(0).lateral("one")
        found = sa.select(one).select_from(session_tags.join(one, sa.true()))
    else:
        found = sa.select(sessions).select_from(
            session_tags.join(sessions, sessions.c.id == st.session_id)
        )
    found = found.where(st.owner_id == sa.bindparam("owner"), st.tag == sa.bindparam("tag"))
    return found.cte("carrying").prefix_with("MATERIALIZED")


def _page(found: list[Session], limit: int) -> tuple[list[Session], str | None]:
    """Up to ``limit`` sessions and the cursor after them; the query asked for
    one row more than the page to know whether there is a next page."""
    if len(found) <= limit:
        return found, None
    items = found[:limit]
    return items, _encode_cursor(items[-1].last_activity_at, items[-1].id)


def _conflict_or_missing(
    conn: sa.Connection, owner_id: str, session_id: str, expected: int | None
) -> Exception:
    row = get_row(conn, owner_id, session_id)  # raises SessionNotFound
    if expected is not None and row.version != expected:
        return VersionConflict(session_id, expected, row.version)
    return InvalidState(session_id, "the session is in the trash; restore it first")


def update_session(
    tx: WriteTx,
    owner_id: str,
    session_id: str,
    changes: dict[str, Any],
    expected_version: int | None,
    *,
    live_only: bool = True,
) -> Session:
    stmt = _update_statement(tuple(changes), live_only, expected_version is not None)
    params = bound_values(changes)
    params.update(sid=session_id, owner=owner_id, expected=expected_version, now=tx.now)
    row = tx.conn.execute(stmt, params).first()
    if row is None:
        raise _conflict_or_missing(tx.conn, owner_id, session_id, expected_version)
    restored = "deleted_at" in changes and changes["deleted_at"] is None
    log_session(tx, "update", row, None if restored else [*changes, "version", "updated_at"])
    return to_session(row)


@functools.lru_cache(maxsize=256)
def _update_statement(columns: tuple[str, ...], live_only: bool, versioned: bool) -> sa.Update:
    """The UPDATE of these columns, built once per column list (the few that
    the service, trash and rewind send). Built per call, with the values
    inlined, SQLAlchemy built and keyed it anew each time: 0.2-0.3 ms of CPU
    per update. Only module-level objects are kept, so the cache keeps no
    engine alive."""
    c = sessions.c
    q = sessions.update().where(c.id == sa.bindparam("sid"), c.owner_id == sa.bindparam("owner"))
    if live_only:
        q = q.where(c.deleted_at.is_(None))
    if versioned:
        q = q.where(c.version == sa.bindparam("expected"))
    values = bound_set(sessions, columns)
    values.update(version=c.version + 1, updated_at=sa.bindparam("now", type_=c.updated_at.type))
    return q.values(values).returning(*sessions.c)


def set_deleted(
    tx: WriteTx, owner_id: str, session_id: str, deleted: bool, expected_version: int | None
) -> Session:
    row = get_row(tx.conn, owner_id, session_id, lock=True)
    if expected_version is not None and row.version != expected_version:
        raise VersionConflict(session_id, expected_version, row.version)
    if (row.deleted_at is not None) == deleted:
        # Already there: not an error. The key is still logged, so the txid
        # this returns shows up in the change stream a sync client waits on.
        log_session(tx, "update", row, ())
        return to_session(row)
    return update_session(
        tx,
        owner_id,
        session_id,
        {"deleted_at": tx.now if deleted else None},
        None,
        live_only=False,
    )


def purge_session(tx: WriteTx, owner_id: str, session_id: str) -> None:
    """Delete a session and everything in it, for good, with a delete in the
    change log for every row so sync clients drop them too."""
    conn = tx.conn
    get_row(conn, owner_id, session_id, lock=True)
    children = conn.execute(
        sa.select(sa.func.count())
        .select_from(sessions)
        .where(sessions.c.parent_session_id == session_id)
    ).scalar_one()
    if children:
        raise HasBranches(session_id, int(children))
    for table in (*SESSION_RECORD_TABLES, tool_events, timeline_events, messages, uploads):
        keys = conn.execute(
            sa.delete(table)
            .where(table.c.session_id == session_id, table.c.owner_id == owner_id)
            .returning(table.c.id)
        ).scalars()
        for key in keys:
            tx.log(table.name, key, "delete", None, owner_id, session_id)
    conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))
    tx.log("sessions", session_id, "delete", None, owner_id, session_id)
