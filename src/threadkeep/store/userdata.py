"""Queries behind a user's whole data: the export archive and the erasure
(service/userdata.py).

Every read here is a page: keyset pagination on an order that an index
serves, so exporting or erasing a user with a million messages never holds
more than a page, and page 1,000 costs what page 1 costs. Every erase step
deletes at most ``limit`` rows in the caller's transaction and logs a delete
for each, so sync clients drop them.

Finding a user's sessions: sessions have no plain ``owner_id`` index, but two
partial ones (live: ``ix_sessions_live_activity``, trash: ``ix_sessions_trash``)
that together cover every session of an owner; each query below asks the two
halves separately so that each half walks its index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import (
    SESSION_RECORD_TABLES,
    api_tokens,
    changes,
    messages,
    repo_bindings,
    sessions,
    summaries,
    timeline_events,
    todos,
    tool_events,
    uploads,
    users,
)

#: The session-scoped tables, in the order the erasure deletes them: rows
#: that may name a message (tool and timeline events, by foreign key) before
#: the messages. Sessions themselves come last, branches before their parents.
SESSION_TABLES: tuple[sa.Table, ...] = (
    *SESSION_RECORD_TABLES,
    tool_events,
    timeline_events,
    uploads,
    messages,
)

#: What a token row is exported with: never its hash.
TOKEN_COLUMNS = tuple(c for c in api_tokens.c if c.name != "token_hash")


def _page_order(table: sa.Table) -> tuple[sa.ColumnElement[Any], ...]:
    """The order a session's rows are paged in: the columns after session_id
    in the table's session index (then the id), so the index serves it."""
    c = table.c
    if table is messages or table is timeline_events:
        return (c.seq,)
    if table is summaries:
        return (c.id,)
    if table is todos:
        return (c.position, c.id)
    if table is repo_bindings:
        return (c.bound_at, c.id)
    return (c.created_at, c.id)


# --- reading ----------------------------------------------------------------------


def user_row(conn: sa.Connection, user_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return None if row is None else row_json(row._mapping)


def token_rows(conn: sa.Connection, user_id: str, after: str | None, limit: int) -> list[Any]:
    q = sa.select(*TOKEN_COLUMNS).where(api_tokens.c.user_id == user_id)
    if after is not None:
        q = q.where(api_tokens.c.id > after)
    return list(conn.execute(q.order_by(api_tokens.c.id).limit(limit)))


def _session_halves(owner_id: str, after: str | None) -> list[sa.Select[Any]]:
    c = sessions.c
    out = []
    for in_half in (c.deleted_at.is_(None), c.deleted_at.is_not(None)):
        q = sa.select(sessions).where(c.owner_id == owner_id, in_half)
        if after is not None:
            q = q.where(c.id > after)
        out.append(q)
    return out


def session_rows(conn: sa.Connection, owner_id: str, after: str | None, limit: int) -> list[Any]:
    """The owner's sessions (in the trash or not) with id > ``after``, by id."""
    halves = _session_halves(owner_id, after)
    # Each half limited on its own (a subquery each: SQLite takes no
    # parenthesised compound members), then the two merged.
    parts = [sa.select(h.order_by(sessions.c.id).limit(limit).subquery()) for h in halves]
    both = sa.union_all(*parts).subquery()
    return list(conn.execute(sa.select(both).order_by(both.c.id).limit(limit)))


def session_ids(conn: sa.Connection, owner_id: str, after: str | None, limit: int) -> list[str]:
    return [r.id for r in session_rows(conn, owner_id, after, limit)]


def session_table_rows(
    conn: sa.Connection,
    table: sa.Table,
    owner_id: str,
    session_ids: Sequence[str],
    after: tuple[Any, ...] | None,
    limit: int,
) -> tuple[list[Any], tuple[Any, ...] | None]:
    """Up to ``limit`` rows of ``table`` from the sessions ``session_ids``, in
    (session_id, page order) after the keyset ``after``; returns the rows and
    the keyset to continue from (None: the window is done). One query per
    page whatever the number of sessions: ``session_id IN (...)`` on the
    leading column of the table's session index keeps the index order on
    both engines, so no page sorts more than its own session's ties."""
    order = (table.c.session_id, *_page_order(table))
    q = sa.select(table).where(
        table.c.session_id.in_(list(session_ids)), table.c.owner_id == owner_id
    )
    if after is not None:
        # Typed binds: a timestamp must compare in the column's storage format.
        bound = [sa.literal(v, type_=c.type) for c, v in zip(order, after, strict=True)]
        q = q.where(sa.tuple_(*order) > sa.tuple_(*bound))
    rows = list(conn.execute(q.order_by(*order).limit(limit)))
    if len(rows) < limit:
        return rows, None
    last = rows[-1]._mapping
    return rows, tuple(last[c.name] for c in order)


def upload_shas_in_log(conn: sa.Connection, owner_id: str, after: int, limit: int) -> list[Any]:
    """(id, row) of the owner's logged upload inserts with id > ``after``: the
    change log remembers the sha256 of uploads whose rows an interrupted
    erasure already deleted."""
    c = changes.c
    q = (
        sa.select(c.id, c.row)
        .where(c.owner_id == owner_id, c.table_name == "uploads", c.op == "insert", c.id > after)
        .order_by(c.id)
        .limit(limit)
    )
    return list(conn.execute(q))


def count_owned(conn: sa.Connection, owner_id: str) -> dict[str, int]:
    """Rows per table that ``owner_id`` owns (change rows: those with a payload)."""
    out: dict[str, int] = {}
    out["users"] = conn.execute(
        sa.select(sa.func.count()).select_from(users).where(users.c.id == owner_id)
    ).scalar_one()
    out["api_tokens"] = conn.execute(
        sa.select(sa.func.count()).select_from(api_tokens).where(api_tokens.c.user_id == owner_id)
    ).scalar_one()
    for table in (sessions, *SESSION_TABLES):
        out[table.name] = conn.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.owner_id == owner_id)
        ).scalar_one()
    out["changes"] = conn.execute(
        sa.select(sa.func.count())
        .select_from(changes)
        .where(changes.c.owner_id == owner_id, changes.c.row.is_not(None))
    ).scalar_one()
    return out


# --- erasing ------------------------------------------------------------------------


def disable_user(conn: sa.Connection, user_id: str) -> bool:
    """Refuse the user's tokens from now on (api/auth.py checks ``disabled``).
    False: there is no such user."""
    got = conn.execute(
        users.update().where(users.c.id == user_id).values(disabled=True).returning(users.c.id)
    ).first()
    return got is not None


def erase_rows(
    tx: WriteTx, table: sa.Table, owner_id: str, session_ids: Sequence[str], limit: int
) -> tuple[int, list[str]]:
    """Delete up to ``limit`` of the owner's rows of ``table`` in these sessions,
    each logged as a delete. Returns how many, and (uploads) their sha256."""
    c = table.c
    pick = (
        sa.select(c.id)
        .where(c.session_id.in_(list(session_ids)), c.owner_id == owner_id)
        .limit(limit)
    )
    ids = list(tx.conn.execute(pick).scalars())
    if not ids:
        return 0, []
    extra = (c.sha256,) if table is uploads else ()
    gone = tx.conn.execute(
        sa.delete(table)
        .where(c.id.in_(ids), c.owner_id == owner_id)
        .returning(c.id, c.session_id, *extra)
    ).all()
    for row in gone:
        tx.log(table.name, row.id, "delete", None, owner_id, row.session_id)
    return len(gone), [row.sha256 for row in gone] if extra else []


def erase_leaf_sessions(tx: WriteTx, owner_id: str, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` of the owner's sessions that no branch names as its
    parent (so the parent foreign key holds), each logged as a delete; returns
    the rows deleted per table. The caller has emptied them first; rows that a
    writer added since (a library caller acting for the user) go with them in
    this transaction, so a session is never left half-deleted."""
    child = sessions.alias("child")
    leaf = ~sa.exists().where(child.c.parent_session_id == sessions.c.id)
    ids: list[str] = []
    for half in _session_halves(owner_id, None):
        if len(ids) >= limit:
            break
        q = half.with_only_columns(sessions.c.id).where(leaf).limit(limit - len(ids))
        ids.extend(tx.conn.execute(q).scalars())
    out: dict[str, int] = {}
    if not ids:
        return out
    for table in SESSION_TABLES:
        c = table.c
        gone = tx.conn.execute(
            sa.delete(table)
            .where(c.session_id.in_(ids), c.owner_id == owner_id)
            .returning(c.id, c.session_id)
        ).all()
        for row in gone:
            tx.log(table.name, row.id, "delete", None, owner_id, row.session_id)
        if gone:
            out[str(table.name)] = len(gone)
    gone_sessions = tx.conn.execute(
        sa.delete(sessions)
        .where(sessions.c.id.in_(ids), sessions.c.owner_id == owner_id)
        .returning(sessions.c.id)
    ).scalars()
    n = 0
    for key in gone_sessions:
        tx.log("sessions", key, "delete", None, owner_id, key)
        n += 1
    out["sessions"] = n
    return out


def has_sessions(conn: sa.Connection, owner_id: str) -> bool:
    return any(
        conn.execute(h.with_only_columns(sessions.c.id).limit(1)).first()
        for h in _session_halves(owner_id, None)
    )


def scrub_changes(conn: sa.Connection, owner_id: str, limit: int | None) -> int:
    """Delete up to ``limit`` (None: all) of the owner's change rows that carry a
    payload (inserts and updates). The deletes stay: they carry only keys, and
    they are what brings a sync client that is behind to an empty shape."""
    c = changes.c
    pick = sa.select(c.id).where(c.owner_id == owner_id, c.op != "delete")
    if limit is not None:
        pick = pick.limit(limit)
    ids = list(conn.execute(pick).scalars())
    if not ids:
        return 0
    return int(conn.execute(sa.delete(changes).where(c.id.in_(ids))).rowcount or 0)


def delete_user(conn: sa.Connection, user_id: str) -> tuple[int, bool]:
    """Delete the user's tokens and the user row; (tokens deleted, user deleted)."""
    tokens = conn.execute(sa.delete(api_tokens).where(api_tokens.c.user_id == user_id)).rowcount
    gone = conn.execute(sa.delete(users).where(users.c.id == user_id)).rowcount
    return int(tokens or 0), bool(gone)


def lock_user(conn: sa.Connection, user_id: str) -> bool:
    """Whether the user exists, holding its row lock (PostgreSQL) so that no
    session can be created for it until the transaction ends."""
    q = sa.select(users.c.id).where(users.c.id == user_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return conn.execute(q).first() is not None


def exported_tables() -> list[str]:
    """Every table the export holds a file for, in archive order."""
    return ["users", "api_tokens", "sessions", *(t.name for t in SESSION_TABLES)]
