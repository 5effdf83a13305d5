"""Queries for a streamed message: its text grows in place, then it is finished.

A stream starts as an ordinary append whose row has status ``streaming`` (so
its seq is allocated up front, see :func:`store.messages.append`). Every
extension and the finish are one UPDATE guarded by ``status = 'streaming'``:
a message that is already finished can never change again, and two
finishers racing each other cannot both win. Each write logs the whole row
to the change log, so a sync client always holds the text and status that
the store holds.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from threadkeep.errors import InvalidState, MessageNotFound
from threadkeep.model.messages import Message, MessageStatus
from threadkeep.model.text import check_size, message_size
from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx
from threadkeep.store.messages import session_change, to_message
from threadkeep.store.tables import messages, sessions

_STREAMING = MessageStatus.STREAMING.value

# Built once, with bound parameters: an extension runs for every flush of a
# stream, and a statement built per call (its values inlined) cost more
# Python than the database's work (SQLite: 530-640 -> about 300 µs of CPU
# per extension). SQLAlchemy memoizes a built statement's cache key.
_c = messages.c
_EXTEND = (
    messages.update()
    .where(
        _c.id == sa.bindparam("mid"),
        _c.owner_id == sa.bindparam("owner"),
        _c.status == _STREAMING,
    )
    .values(content=_c.content + sa.bindparam("delta", type_=sa.Text))
    .returning(*messages.c)
)
_STATUS = sa.select(_c.status).where(
    _c.id == sa.bindparam("mid"), _c.owner_id == sa.bindparam("owner")
)
_BEFORE_FINISH = sa.select(_c.status, _c.input_tokens, _c.output_tokens).where(
    _c.id == sa.bindparam("mid"), _c.owner_id == sa.bindparam("owner")
)


def _not_streaming(tx: WriteTx, owner_id: str, message_id: str) -> InvalidState | MessageNotFound:
    """Why a guarded UPDATE matched no row: no such message, or a finished one."""
    status = tx.conn.execute(_STATUS, {"mid": message_id, "owner": owner_id}).scalar_one_or_none()
    if status is None:
        return MessageNotFound(message_id)
    return InvalidState(message_id, f"the message is {status}, not streaming")


def _size(row: Any) -> int:
    return message_size(row.content, row.parts, row.tool_calls, row.metadata)


def _log(tx: WriteTx, row: Any) -> Message:
    values = dict(row._mapping)
    values.pop("txid", None)
    tx.log("messages", row.id, "update", row_json(values), row.owner_id, row.session_id)
    return to_message(row)


def extend(tx: WriteTx, owner_id: str, message_id: str, delta: str, max_bytes: int) -> Message:
    """Append ``delta`` to a streaming message's content. Over ``max_bytes``
    the whole write is refused (TooLarge) and the message keeps its text."""
    row = tx.conn.execute(_EXTEND, {"mid": message_id, "owner": owner_id, "delta": delta}).first()
    if row is None:
        raise _not_streaming(tx, owner_id, message_id)
    check_size("delta", _size(row), max_bytes)  # raising rolls the UPDATE back
    return _log(tx, row)


def finish(
    tx: WriteTx,
    owner_id: str,
    message_id: str,
    status: MessageStatus,
    fields: dict[str, Any],
    max_bytes: int,
) -> Message:
    """Set the final status, and any of content, tokens, model and metadata
    given in ``fields``, in one UPDATE. Token counts that change also change
    the session's totals, in the same transaction."""
    c = messages.c
    conn = tx.conn
    before = conn.execute(_BEFORE_FINISH, {"mid": message_id, "owner": owner_id}).first()
    if before is None:
        raise MessageNotFound(message_id)
    if before.status != _STREAMING:
        raise InvalidState(message_id, f"the message is {before.status}, not streaming")
    row = conn.execute(
        messages.update()
        .where(c.id == message_id, c.owner_id == owner_id, c.status == _STREAMING)
        .values(status=status.value, **fields)
        .returning(*messages.c)
    ).first()
    if row is None:  # another finisher won the race since the read above
        raise _not_streaming(tx, owner_id, message_id)
    check_size("content", _size(row), max_bytes)
    message = _log(tx, row)

    more_in = (row.input_tokens or 0) - (before.input_tokens or 0)
    more_out = (row.output_tokens or 0) - (before.output_tokens or 0)
    if more_in or more_out:
        s = sessions.c
        got = conn.execute(
            sessions.update()
            .where(s.id == row.session_id, s.owner_id == owner_id)
            .values(
                input_tokens=s.input_tokens + more_in,
                output_tokens=s.output_tokens + more_out,
                last_activity_at=tx.now,
                updated_at=tx.now,
            )
            .returning(s.head_seq, s.event_seq, s.input_tokens, s.output_tokens)
        ).one()
        head_seq, event_seq, in_total, out_total = got
        tx.log(
            "sessions",
            row.session_id,
            "update",
            session_change(row.session_id, head_seq, event_seq, in_total, out_total, tx.now),
            owner_id,
            row.session_id,
        )
    return message
