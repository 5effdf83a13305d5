"""Queries on messages: the append path, and reading a (branch's) history.

A session's history is a list of *segments*: its own messages, then for each
ancestor the part of that ancestor's own messages that precedes the fork. The
segments' seq ranges are disjoint and together cover 1..head_seq, so one query
with one ``ORDER BY seq`` reads any slice of a branch's history, and forking
copies nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from threadkeep.errors import InvalidInput, MessageNotFound, SessionNotFound
from threadkeep.model.common import Committed, utcnow
from threadkeep.model.events import NewTimelineEvent, NewToolEvent
from threadkeep.model.ids import new_id
from threadkeep.model.messages import Appended, Message, MessageStatus, NewMessage, Role
from threadkeep.model.trusted import trusted
from threadkeep.store import sessions as session_q
from threadkeep.store.chosen_ids import check_free
from threadkeep.store.contract import StoreEngine, WriteTx
from threadkeep.store.events import insert_timeline_events, insert_tool_events
from threadkeep.store.gc_pause import gc_paused
from threadkeep.store.prepared import RowDecoder, cursor, custom_decoder, decoder, prepared
from threadkeep.store.tables import messages, sessions
from threadkeep.store.types import UTCDateTime, enum_result

Segment = tuple[str, int, int]  # (session_id, first seq, last seq), inclusive


_role = enum_result(Role)
_status = enum_result(MessageStatus)


def _construct(values: Any) -> Message:
    m = dict(values)
    m.pop("txid", None)
    m["role"] = _role(m["role"])
    m["status"] = _status(m["status"])
    return trusted(Message, m)


# What a Message holds: every column but txid (only an append's replay needs
# it, and it reads whole rows). The read paths select these columns.
_READ_COLUMNS = [c for c in messages.c if c.name != "txid"]


def _read_decoder(dialect: Dialect) -> RowDecoder:
    return custom_decoder(
        dialect,
        "messages.read",
        lambda: RowDecoder(messages, dialect, _READ_COLUMNS, {"role": _role, "status": _status}),
    )


def _to_messages(dialect: Dialect, rows: Sequence[Any]) -> list[Message]:
    """Messages from rows of ``_READ_COLUMNS``: decoded straight into each
    model's fields, no copy (the hot loop of every history read)."""
    decode = _read_decoder(dialect).decode
    with gc_paused(len(rows)):
        return [trusted(Message, decode(r)) for r in rows]


def to_message(row: Any) -> Message:
    return _construct(row._mapping)


def segments(conn: sa.Connection, owner_id: str, row: Any) -> list[Segment]:
    """The history segments of the session in ``row`` (anything with id,
    fork_seq, head_seq, parent_session_id), newest first."""
    segs: list[Segment] = []
    lo = (row.fork_seq or 0) + 1
    if row.head_seq >= lo:
        segs.append((row.id, lo, row.head_seq))
    limit = row.fork_seq
    parent_id = row.parent_session_id
    while parent_id is not None and limit is not None and limit > 0:
        parent = _chain_row(conn, owner_id, parent_id)
        if parent is None:
            raise SessionNotFound(parent_id)
        plo = (parent.fork_seq or 0) + 1
        if limit >= plo:
            segs.append((parent.id, plo, limit))
        # The grandparent contributes only what this branch can see of it.
        if parent.fork_seq is None:
            break
        limit = min(limit, parent.fork_seq)
        parent_id = parent.parent_session_id
    return segs


class _Chain(NamedTuple):
    id: str
    parent_session_id: str | None
    fork_seq: int | None
    head_seq: int


def _chain_row(conn: sa.Connection, owner_id: str, session_id: str) -> _Chain | None:
    got = (
        prepared(conn.dialect, "sessions.chain", _chain_statement)
        .execute(cursor(conn), {"sid": session_id, "owner": owner_id})
        .fetchone()
    )
    return None if got is None else _Chain(*got)


def _chain_statement() -> sa.Executable:
    c = sessions.c
    return sa.select(c.id, c.parent_session_id, c.fork_seq, c.head_seq).where(
        c.id == sa.bindparam("sid"), c.owner_id == sa.bindparam("owner")
    )


def _range_statement(descending: bool) -> Callable[[], sa.Executable]:
    def build() -> sa.Executable:
        c = messages.c
        return (
            sa.select(*_READ_COLUMNS)
            .where(
                c.session_id == sa.bindparam("sid"),
                c.seq >= sa.bindparam("lo"),
                c.seq <= sa.bindparam("hi"),
            )
            .order_by(c.seq.desc() if descending else c.seq)
            .limit(sa.bindparam("n", type_=sa.BigInteger))
        )

    return build


def read_history(
    conn: sa.Connection,
    owner_id: str,
    session_id: str,
    *,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int | None = None,
    newest: bool = False,
) -> list[Message]:
    """Messages of a session's history in seq order. With ``newest`` the *last*
    ``limit`` messages of the range (still returned oldest first).

    One indexed range scan per segment, in seq order, until ``limit`` is met."""
    row = _chain_row(conn, owner_id, session_id)
    if row is None:
        raise SessionNotFound(session_id)
    segs = segments(conn, owner_id, row)  # newest first
    if not newest:
        segs.reverse()
    first = 1 if after_seq is None else after_seq + 1
    last = row.head_seq if before_seq is None else min(row.head_seq, before_seq - 1)
    want = limit if limit is not None else 2**62
    stmt = prepared(
        conn.dialect,
        "messages.range.desc" if newest else "messages.range",
        _range_statement(newest),
    )
    cur = cursor(conn)
    out: list[Message] = []
    for sid, lo, hi in segs:
        lo, hi = max(lo, first), min(hi, last)
        if lo > hi or want <= 0:
            continue
        rows = stmt.execute(cur, {"sid": sid, "lo": lo, "hi": hi, "n": want}).fetchall()
        out.extend(_to_messages(conn.dialect, rows))
        want -= len(rows)
    if newest:
        out.reverse()
    return out


def read_last_of_root(
    conn: sa.Connection, owner_id: str, session_id: str, n: int, before_seq: int | None
) -> list[Message] | None:
    """The last ``n`` messages (before ``before_seq``) of a session that is not a
    branch, in ONE statement: what a chat UI asks for first. None when that is
    not the whole answer (a branch, a missing or foreign session, or no rows);
    the caller then takes the general path, which also raises the right error."""
    stmt = prepared(conn.dialect, "messages.last.root", _last_of_root_statement)
    rows = stmt.execute(
        cursor(conn),
        {
            "sid": session_id,
            "owner": owner_id,
            "before": before_seq if before_seq is not None else 2**62,
            "n": n,
        },
    ).fetchall()
    if not rows:
        return None
    out = _to_messages(conn.dialect, rows)
    out.reverse()
    return out


def _last_of_root_statement() -> sa.Executable:
    c, s = messages.c, sessions.c
    head = (
        sa.select(s.head_seq)
        .where(s.id == sa.bindparam("sid"), s.owner_id == sa.bindparam("owner"))
        .where(s.fork_seq.is_(None))
        .scalar_subquery()
    )
    return (
        sa.select(*_READ_COLUMNS)
        .where(c.session_id == sa.bindparam("sid"))
        .where(c.seq <= head, c.seq < sa.bindparam("before", type_=sa.BigInteger))
        .order_by(c.seq.desc())
        .limit(sa.bindparam("n", type_=sa.BigInteger))
    )


def seq_in_history(conn: sa.Connection, owner_id: str, row: Any, message_id: str) -> int:
    """The seq of ``message_id`` if it is part of the history (its own or
    inherited) of the session whose row is ``row``; MessageNotFound otherwise."""
    msg = get_message(conn, owner_id, message_id)
    for sid, lo, hi in segments(conn, owner_id, row):
        if msg.session_id == sid and lo <= msg.seq <= hi:
            return msg.seq
    raise MessageNotFound(message_id)


def get_message(conn: sa.Connection, owner_id: str, message_id: str) -> Message:
    """One message by id, on a compiled statement and the history reads'
    decoder (as ``get_session``: the Core select and its Row cost more than
    the query)."""
    stmt = prepared(conn.dialect, "messages.get", _get_message_statement)
    row = stmt.execute(cursor(conn), {"mid": message_id, "owner": owner_id}).fetchone()
    if row is None:
        raise MessageNotFound(message_id)
    return trusted(Message, _read_decoder(conn.dialect).decode(row))


def _get_message_statement() -> sa.Executable:
    c = messages.c
    return sa.select(*_READ_COLUMNS).where(
        c.id == sa.bindparam("mid"), c.owner_id == sa.bindparam("owner")
    )


def _replayed(
    conn: sa.Connection, owner_id: str, session_id: str, client_ids: list[str]
) -> dict[str, Any]:
    if not client_ids:
        return {}
    if len(client_ids) == 1:  # the common case (one message per call): hot path
        stmt = prepared(conn.dialect, "messages.by_client_id", _by_client_id_statement)
        got = stmt.execute(
            cursor(conn), {"sid": session_id, "owner": owner_id, "cid": client_ids[0]}
        ).fetchone()
        if got is None:
            return {}
        row = decoder(conn.dialect, messages)(got)
        return {row["client_id"]: row}
    rows = conn.execute(
        sa.select(messages).where(
            messages.c.session_id == session_id,
            messages.c.owner_id == owner_id,
            messages.c.client_id.in_(client_ids),
        )
    )
    return {r.client_id: dict(r._mapping) for r in rows}


def _by_client_id_statement() -> sa.Executable:
    c = messages.c
    return sa.select(messages).where(
        c.session_id == sa.bindparam("sid"),
        c.owner_id == sa.bindparam("owner"),
        c.client_id == sa.bindparam("cid"),
    )


def check_linked_messages(
    conn: sa.Connection, owner_id: str, session_id: str, ids: set[str]
) -> None:
    """Events may only point at messages of the same user and session."""
    if not ids:
        return
    found = set(
        conn.execute(
            sa.select(messages.c.id).where(
                messages.c.id.in_(list(ids)),
                messages.c.owner_id == owner_id,
                messages.c.session_id == session_id,
            )
        ).scalars()
    )
    missing = ids - found
    if missing:
        raise MessageNotFound(sorted(missing)[0])


def append(
    tx: WriteTx,
    owner_id: str,
    session_id: str,
    new: Sequence[NewMessage],
    tool_evts: Sequence[NewToolEvent] = (),
    timeline_evts: Sequence[NewTimelineEvent] = (),
    status: MessageStatus = MessageStatus.COMPLETE,
) -> Appended:
    """Append messages (and events) atomically; seq is allocated by the session
    row's update, which on PostgreSQL also serialises writers to one session.
    ``status`` is that of every new message (``streaming`` starts a stream)."""
    conn = tx.conn
    client_ids = [m.client_id for m in new if m.client_id is not None]
    if len(set(client_ids)) != len(client_ids):
        raise InvalidInput("client_id", "the same client_id appears twice in one batch")
    replayed = _replayed(conn, owner_id, session_id, client_ids)
    fresh = [m for m in new if m.client_id is None or m.client_id not in replayed]

    if not fresh and not tool_evts and not timeline_evts:
        # A pure retry: nothing to write. Answer with the original rows, and the
        # transaction id that wrote them so a sync client's wait resolves.
        session_q.get_live_row(conn, owner_id, session_id)
        rows = [replayed[m.client_id] for m in new if m.client_id is not None]
        if rows and rows[0]["txid"] is not None:
            tx.replay_txid = rows[0]["txid"]
        return Appended([_construct(r) for r in rows], [], [])

    chosen = [m.id for m in fresh if m.id is not None]
    if chosen:
        check_free(conn, messages, "message", chosen)
    n = len(fresh)
    dialect = conn.dialect
    cur = cursor(conn)
    bump = prepared(dialect, "sessions.bump", _bump_statement)
    got = bump.execute(
        cur,
        {
            "sid": session_id,
            "owner": owner_id,
            "n": n,
            "events": len(timeline_evts),
            "in_tok": sum(m.input_tokens or 0 for m in fresh),
            "out_tok": sum(m.output_tokens or 0 for m in fresh),
            "now": tx.now,
        },
    ).fetchone()
    if got is None:
        session_q.get_live_row(conn, owner_id, session_id)  # raises the precise error
        raise SessionNotFound(session_id)
    head_seq, event_seq, in_total, out_total = got

    rows = message_rows(fresh, owner_id, session_id, tx.now, head_seq - n, tx.txid, status)
    insert_message_rows(tx, owner_id, session_id, rows)

    linked = {e.message_id for e in tool_evts if e.message_id is not None}
    linked |= {e.message_id for e in timeline_evts if e.message_id is not None}
    linked -= {r["id"] for r in rows}
    check_linked_messages(conn, owner_id, session_id, linked)
    tools = insert_tool_events(tx, owner_id, session_id, tool_evts) if tool_evts else []
    timeline = (
        insert_timeline_events(
            tx, owner_id, session_id, timeline_evts, event_seq - len(timeline_evts)
        )
        if timeline_evts
        else []
    )
    tx.log(
        "sessions",
        session_id,
        "update",
        session_change(session_id, head_seq, event_seq, in_total, out_total, tx.now),
        owner_id,
        session_id,
    )

    out: list[Message] = []
    fresh_rows = iter(rows)  # same order as `fresh`, which keeps the order of `new`
    for m in new:
        if m.client_id is not None and m.client_id in replayed:
            out.append(_construct(replayed[m.client_id]))
        else:
            out.append(_construct(next(fresh_rows)))
    return Appended(out, tools, timeline)


def message_rows(
    fresh: Sequence[NewMessage],
    owner_id: str,
    session_id: str,
    now: datetime,
    base: int,
    txid: int | None,
    status: MessageStatus = MessageStatus.COMPLETE,
) -> list[dict[str, Any]]:
    """Rows for the messages table; seq runs from ``base + 1``."""
    state = status.value
    return [
        {
            "id": m.id or new_id(),
            "owner_id": owner_id,
            "session_id": session_id,
            "seq": base + i,
            "role": m.role.value,
            "content": m.content,
            "parts": m.parts,
            "tool_calls": m.tool_calls,
            "model": m.model,
            "input_tokens": m.input_tokens,
            "output_tokens": m.output_tokens,
            "client_id": m.client_id,
            "metadata": m.metadata,
            "created_at": now,
            "txid": txid,
            "status": state,
        }
        for i, m in enumerate(fresh, start=1)
    ]


def insert_message_rows(
    tx: WriteTx, owner_id: str, session_id: str, rows: list[dict[str, Any]]
) -> None:
    """Insert rows made by :func:`message_rows` (their seq already allocated)
    and log each; drops the ``txid`` key, which the change log does not carry."""
    if not rows:
        return
    insert = prepared(tx.conn.dialect, "messages.insert", lambda: _insert_statement(tx))
    insert.executemany(cursor(tx.conn), rows)
    if not tx.store.indexes_by_itself:
        tx.unindexed.extend(r["id"] for r in rows)
    # The change row is the message row with created_at as ISO text (what
    # changes.row_json makes of it, without inspecting every value: this runs
    # once per message). Rows of one append share one timestamp object.
    at: datetime | None = None
    at_text = ""
    log = tx.log
    for r in rows:
        del r["txid"]
        change = dict(r)
        if change["created_at"] is not at:
            at = change["created_at"]
            at_text = at.isoformat()
        change["created_at"] = at_text
        log("messages", r["id"], "insert", change, owner_id, session_id)


def session_change(
    session_id: str, head_seq: int, event_seq: int, in_total: int, out_total: int, now: datetime
) -> dict[str, Any]:
    """The session's change-log row after an append: a partial update, only the
    columns an append changes (plus the key)."""
    now_text = now.isoformat()
    return {
        "id": session_id,
        "head_seq": head_seq,
        "event_seq": event_seq,
        "input_tokens": in_total,
        "output_tokens": out_total,
        "last_activity_at": now_text,
        "updated_at": now_text,
    }


class FastPathMissed(NamedTuple):
    """The one-statement append did not answer; ``pinned`` are the messages
    with the ids that attempt used, for the general path to reuse."""

    pinned: list[NewMessage]


def append_at_once(
    engine: StoreEngine, owner_id: str, session_id: str, new: Sequence[NewMessage]
) -> Committed[Appended] | FastPathMissed | None:
    """The hot path for plain appends (messages only, no replayed client id):
    the engine may do the whole append in one round trip. None means "take
    the general path" (which also raises the precise error, if any).

    An attempt that does not answer may still have committed: its connection
    can drop after the server's COMMIT and before the answer arrives. So the
    general path must then write the *same* message ids (FastPathMissed): if
    the attempt did commit, those ids are taken, and the caller finds the rows
    instead of writing them twice (see :func:`read_committed_attempt`)."""
    if not engine.supports_append_at_once or any(m.id is not None for m in new):
        return None  # chosen ids are checked on the general path
    client_ids = [m.client_id for m in new if m.client_id is not None]
    if len(set(client_ids)) != len(client_ids):
        return None
    if client_ids:
        seen: dict[str, Any] = engine.read(lambda c: _replayed(c, owner_id, session_id, client_ids))
        if seen:
            return None
    now = utcnow()
    rows = message_rows(new, owner_id, session_id, now, 0, None)
    got = engine.append_at_once(owner_id, session_id, rows, now)
    if got is None:
        return FastPathMissed(
            [m.model_copy(update={"id": r["id"]}) for m, r in zip(new, rows, strict=True)]
        )
    head_seq, txid = got
    base = head_seq - len(rows)
    for r in rows:
        r["seq"] += base
    return Committed(Appended([_construct(r) for r in rows]), txid)


def read_committed_attempt(
    conn: sa.Connection, owner_id: str, session_id: str, pinned: Sequence[NewMessage]
) -> Committed[Appended] | None:
    """The messages an unanswered one-statement append wrote after all (its
    ids are fresh UUIDv7s, so finding them means that attempt committed; the
    statement is atomic, so either all are there or none). None if none."""
    ids = [m.id for m in pinned if m.id is not None]
    rows = conn.execute(
        sa.select(messages)
        .where(
            messages.c.id.in_(ids),
            messages.c.owner_id == owner_id,
            messages.c.session_id == session_id,
        )
        .order_by(messages.c.seq)
    ).all()
    if len(rows) != len(ids):
        return None
    return Committed(Appended([to_message(r) for r in rows]), int(rows[0].txid))


def _insert_statement(tx: WriteTx) -> sa.Executable:
    cols = {c.name: sa.bindparam(c.name, type_=c.type) for c in messages.c if c.name != "txid"}
    return messages.insert().values({**cols, "txid": tx.store.txid_sql})


def _bump_statement() -> sa.Executable:
    """Allocate seq: the session row's update is the lock that orders appends."""
    c = sessions.c
    now = sa.bindparam("now", type_=UTCDateTime())
    return (
        sessions.update()
        .where(
            c.id == sa.bindparam("sid"),
            c.owner_id == sa.bindparam("owner"),
            c.deleted_at.is_(None),
        )
        .values(
            head_seq=c.head_seq + sa.bindparam("n", type_=sa.BigInteger),
            event_seq=c.event_seq + sa.bindparam("events", type_=sa.BigInteger),
            input_tokens=c.input_tokens + sa.bindparam("in_tok", type_=sa.BigInteger),
            output_tokens=c.output_tokens + sa.bindparam("out_tok", type_=sa.BigInteger),
            last_activity_at=now,
            updated_at=now,
        )
        .returning(c.head_seq, c.event_seq, c.input_tokens, c.output_tokens)
    )


def count_messages(conn: sa.Connection, owner_id: str, session_id: str) -> int:
    """The length of the session's history, from the session row alone (seq is
    contiguous from 1, so the head is the count)."""
    return int(session_q.get_row(conn, owner_id, session_id).head_seq)
