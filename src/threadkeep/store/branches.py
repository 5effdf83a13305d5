"""Branches: fork (copies nothing) and rewind (moves only what follows the
rewind point, and keeps it reachable as a branch)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from threadkeep.errors import InvalidInput
from threadkeep.model.sessions import Session
from threadkeep.model.trusted import trusted
from threadkeep.store import messages as message_q
from threadkeep.store import sessions as session_q
from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx
from threadkeep.store.prepared import cursor, decoder, prepared
from threadkeep.store.tables import messages, sessions, timeline_events, tool_events

_INHERITED = ("title", "model", "provider", "state", "tags", "metadata")


# The statements of a fork and a rewind, built once with bound parameters:
# built per call, SQLAlchemy built and keyed each anew (an aliased select
# alone cost ~0.5 ms of CPU), and a rewind runs eight of them.
_branch = sessions.alias("branch")
_HOLD_PARENT = (
    sa.select(sessions.c.id)
    .where(
        sessions.c.id
        == sa.select(_branch.c.parent_session_id)
        .where(_branch.c.id == sa.bindparam("sid"), _branch.c.owner_id == sa.bindparam("owner"))
        .scalar_subquery()
    )
    .with_for_update(read=True, key_share=True)
)
_m = messages.c
_MOVED_TOKENS = sa.select(
    sa.func.coalesce(sa.func.sum(_m.input_tokens), 0),
    sa.func.coalesce(sa.func.sum(_m.output_tokens), 0),
).where(_m.session_id == sa.bindparam("sid"), _m.seq > sa.bindparam("after"))
_MOVE_MESSAGES = (
    messages.update()
    .where(_m.session_id == sa.bindparam("sid"), _m.seq > sa.bindparam("after"))
    .values(session_id=sa.bindparam("branch", type_=_m.session_id.type))
    .returning(*messages.c)
)
_MOVE_EVENTS = {
    table: table.update()
    .where(
        table.c.session_id == sa.bindparam("sid"),
        table.c.message_id.in_(
            sa.select(_m.id).where(
                _m.session_id == sa.bindparam("branch", type_=_m.session_id.type)
            )
        ),
    )
    .values(session_id=sa.bindparam("branch", type_=table.c.session_id.type))
    .returning(*table.c)
    for table in (tool_events, timeline_events)
}
_s = sessions.c
_REPARENT = (
    sessions.update()
    .where(
        _s.parent_session_id == sa.bindparam("sid"),
        _s.fork_seq > sa.bindparam("at"),
        _s.id != sa.bindparam("branch"),
    )
    .values(
        parent_session_id=sa.bindparam("branch"),
        updated_at=sa.bindparam("now", type_=_s.updated_at.type),
    )
    .returning(*sessions.c)
)


def _check_seq(name: str, seq: int, head: int) -> None:
    if seq < 0 or seq > head:
        raise InvalidInput(name, f"must be between 0 and the session's head seq {head}")


def _known(tx: WriteTx, owner_id: str, message_id: str | None) -> None:
    """MessageNotFound for a message this user does not have, before any
    other check: an unknown message id is refused alike in any session, one's
    own, another user's or none (tests/contract/test_scoping.py)."""
    if message_id is not None:
        message_q.get_message(tx.conn, owner_id, message_id)


def _resolve(tx: WriteTx, owner_id: str, row: Any, seq: int | None, message_id: str | None) -> int:
    """The seq of the point, given as a seq or as a message of the history of
    the session ``row``. Called with that row held, so the message cannot
    move meanwhile; read again here for that reason (:func:`_known` read it
    before the lock only to refuse an unknown id first)."""
    if message_id is None:
        assert seq is not None
        return seq
    return message_q.seq_in_history(tx.conn, owner_id, row, message_id)


def fork(
    tx: WriteTx,
    owner_id: str,
    session_id: str,
    at_seq: int | None,
    at_message_id: str | None,
    branch_id: str,
    title: str | None,
) -> Session:
    """A new session whose history is ``session_id``'s first ``at_seq`` messages.

    One row is written, whatever the length of the history: the branch reads
    the shared part from its parent (store/messages.py, segments).

    The parent row is held until the branch commits. Without it, a rewind
    of the parent committing between this read and the insert would move
    the messages past its point to a new branch and re-parent the branches
    that forked past it, all but this one, which would then read a history
    with a hole (tests/contract/test_branches.py, forks racing rewinds)."""
    _known(tx, owner_id, at_message_id)
    parent = session_q.get_live_row(tx.conn, owner_id, session_id, key_share=True)
    at_seq = _resolve(tx, owner_id, parent, at_seq, at_message_id)
    _check_seq("at_seq", at_seq, parent.head_seq)
    fields: dict[str, Any] = {k: parent._mapping[k] for k in _INHERITED}
    if title is not None:
        fields["title"] = title
    fields.update(parent_session_id=session_id, fork_seq=at_seq, head_seq=at_seq)
    return session_q.insert_session(tx, owner_id, branch_id, fields)


def _hold_parent(conn: sa.Connection, owner_id: str, session_id: str) -> None:
    """Hold the parent of a branch about to be rewound (PostgreSQL: FOR KEY
    SHARE), before the branch itself.

    Rewinding a branch below its fork point writes a new branch whose row
    names the branch's parent, so PostgreSQL key-locks the parent; a rewind
    of the parent holds it FOR UPDATE and then updates its branches. Taken in
    that order (branch, then parent) against (parent, then branch), the two
    deadlock, and PostgreSQL breaks the tie only after ``deadlock_timeout``
    (tests/contract/test_branches.py). Parent first, as forks and the
    parent's own rewind lock, and they wait instead. (If the parent changes
    before the branch row is locked, a rewind of it re-parented the branch:
    the lock taken here is then merely one too many.)"""
    conn.execute(_HOLD_PARENT, {"sid": session_id, "owner": owner_id})


def rewind(
    tx: WriteTx,
    owner_id: str,
    session_id: str,
    to_seq: int | None,
    to_message_id: str | None,
    branch_id: str,
) -> tuple[Session, Session | None]:
    """Make ``to_seq`` the head of ``session_id``; what came after moves, intact,
    to a new branch. Returns (the rewound session, the branch or None when
    there was nothing after ``to_seq``)."""
    conn = tx.conn
    _known(tx, owner_id, to_message_id)
    _hold_parent(conn, owner_id, session_id)
    s = session_q.get_live_row(conn, owner_id, session_id, lock=True)
    to_seq = _resolve(tx, owner_id, s, to_seq, to_message_id)
    _check_seq("to_seq", to_seq, s.head_seq)
    if to_seq == s.head_seq:
        # Nothing follows: nothing moves. Logged all the same, so the txid this
        # returns appears in the change stream.
        session_q.log_session(tx, "update", s, ())
        return session_q.to_session(s), None

    own_from = s.fork_seq or 0  # the session's own messages have seq > own_from
    fields: dict[str, Any] = {k: s._mapping[k] for k in _INHERITED}
    fields.update(
        head_seq=s.head_seq,
        event_seq=s.event_seq,
        last_activity_at=s.last_activity_at,
        created_at=tx.now,
    )
    if s.parent_session_id is None or to_seq >= own_from:
        # The branch forks from this session at to_seq and takes the tail.
        fields.update(parent_session_id=session_id, fork_seq=to_seq)
        move_after = to_seq
        new_fork: int | None = s.fork_seq
    else:
        # Rewinding into the inherited part: the branch takes this session's
        # place under its parent, with all its own messages, and this session
        # now shares less of the parent.
        fields.update(parent_session_id=s.parent_session_id, fork_seq=s.fork_seq)
        move_after = own_from
        new_fork = to_seq
    # A session's token totals are those of its own messages (appends, streams
    # and imports add them there): the moved messages take theirs along. Summed
    # before the move, since the branch row must exist for them to point at.
    moved_in, moved_out = conn.execute(
        _MOVED_TOKENS, {"sid": session_id, "after": move_after}
    ).one()
    fields.update(input_tokens=moved_in, output_tokens=moved_out)
    branch = session_q.insert_session(tx, owner_id, branch_id, fields)

    moving = {"sid": session_id, "branch": branch_id, "after": move_after}
    moved = {messages: conn.execute(_MOVE_MESSAGES, moving).all()}
    # The events of the moved messages go with them.
    for table, stmt in _MOVE_EVENTS.items():
        moved[table] = conn.execute(stmt, moving).all()
    # Branches of this session that forked after the rewind point read their
    # shared history from the new branch now (it holds what they saw).
    children = conn.execute(
        _REPARENT, {"sid": session_id, "branch": branch_id, "at": to_seq, "now": tx.now}
    ).all()
    for child in children:
        session_q.log_session(tx, "update", child, ("parent_session_id", "updated_at"))
    # Each moved row is logged as a move between sessions: out of this one, into
    # the branch, so a reader following either session sees it leave or arrive.
    for table, rows in moved.items():
        for row in rows:
            tx.log(table.name, row.id, "delete", None, owner_id, session_id)
            tx.log(table.name, row.id, "insert", row_json(row._mapping), owner_id, branch_id)

    values: dict[str, Any] = {"head_seq": to_seq, "last_activity_at": tx.now}
    if moved_in or moved_out:
        # An imported session may carry its source's totals, lower than its
        # messages' sum: never below zero.
        values["input_tokens"] = max(0, s.input_tokens - moved_in)
        values["output_tokens"] = max(0, s.output_tokens - moved_out)
    if new_fork != s.fork_seq:
        values["fork_seq"] = new_fork
    rewound = session_q.update_session(tx, owner_id, session_id, values, None)
    return rewound, branch


def list_branches(conn: sa.Connection, owner_id: str, session_id: str) -> list[Session]:
    session_q.get_row(conn, owner_id, session_id)
    # Compiled once and decoded straight into the models, as the session
    # list is: a session rewound many times ("regenerate") has many branches.
    stmt = prepared(conn.dialect, "sessions.branches", lambda: _BRANCHES)
    rows = stmt.execute(cursor(conn), {"sid": session_id, "owner": owner_id}).fetchall()
    decode = decoder(conn.dialect, sessions)
    return [trusted(Session, decode(r)) for r in rows]


_BRANCHES = (
    sa.select(sessions)
    .where(_s.parent_session_id == sa.bindparam("sid"), _s.owner_id == sa.bindparam("owner"))
    .order_by(_s.created_at, _s.id)
)
