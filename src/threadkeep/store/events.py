"""Queries on tool events and timeline events.

The reads (one event, a session's list) run compiled statements decoded
straight into the models, as the message history does: an agent session
can hold thousands of tool calls, and SQLAlchemy's execution plus
``model_construct`` cost about 34 µs per event before (store/prepared.py)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from threadkeep.errors import ToolEventNotFound
from threadkeep.model.events import (
    NewTimelineEvent,
    NewToolEvent,
    TimelineEvent,
    ToolEvent,
    ToolEventUpdate,
    ToolStatus,
)
from threadkeep.model.ids import new_id
from threadkeep.model.trusted import trusted
from threadkeep.store.changes import row_json
from threadkeep.store.chosen_ids import check_free
from threadkeep.store.contract import WriteTx
from threadkeep.store.gc_pause import gc_paused
from threadkeep.store.prepared import (
    RowDecoder,
    bound_set,
    bound_values,
    cursor,
    custom_decoder,
    decoder,
    prepared,
)
from threadkeep.store.sessions import get_row
from threadkeep.store.tables import timeline_events, tool_events
from threadkeep.store.types import enum_result

_tool_status = enum_result(ToolStatus)


def to_tool_event(row: Any) -> ToolEvent:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    m["status"] = ToolStatus(m["status"])
    return ToolEvent.model_construct(**m)


def to_timeline_event(row: Any) -> TimelineEvent:
    m = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    return TimelineEvent.model_construct(**m)


def _duration_ms(started: Any, finished: Any) -> int | None:
    if started is None or finished is None:
        return None
    return max(0, int((finished - started).total_seconds() * 1000))


def tool_event_row(
    e: NewToolEvent, owner_id: str, session_id: str, now: datetime
) -> dict[str, Any]:
    """The tool_events row for ``e`` written at ``now``."""
    started = e.started_at or now
    finished = e.finished_at or (now if e.status.finished else None)
    return {
        "id": e.id or new_id(),
        "owner_id": owner_id,
        "session_id": session_id,
        "message_id": e.message_id,
        "call_id": e.call_id,
        "name": e.name,
        "status": e.status.value,
        "input": e.input,
        "output": e.output,
        "error": e.error,
        "started_at": started,
        "finished_at": finished,
        "duration_ms": _duration_ms(started, finished),
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }


def insert_tool_event_rows(
    tx: WriteTx, owner_id: str, session_id: str, rows: list[dict[str, Any]]
) -> None:
    if not rows:
        return
    tx.conn.execute(tool_events.insert(), rows)
    for r in rows:
        tx.log("tool_events", r["id"], "insert", row_json(r), owner_id, session_id)


def insert_tool_events(
    tx: WriteTx, owner_id: str, session_id: str, events: Sequence[NewToolEvent]
) -> list[ToolEvent]:
    check_free(tx.conn, tool_events, "tool event", [e.id for e in events])
    rows = [tool_event_row(e, owner_id, session_id, tx.now) for e in events]
    insert_tool_event_rows(tx, owner_id, session_id, rows)
    return [to_tool_event(r) for r in rows]


def update_tool_event(
    tx: WriteTx, owner_id: str, event_id: str, update: ToolEventUpdate
) -> ToolEvent:
    key = {"eid": event_id, "owner": owner_id}
    row = tx.conn.execute(_TOOL_FOR_UPDATE, key).first()
    if row is None:
        raise ToolEventNotFound(event_id)
    values: dict[str, Any] = {"updated_at": tx.now}
    fields = update.model_fields_set
    if update.status is not None:
        values["status"] = update.status.value
    if "output" in fields:
        values["output"] = update.output
    if "error" in fields:
        values["error"] = update.error
    finished = update.finished_at
    if finished is None and update.status is not None and update.status.finished:
        finished = row.finished_at or tx.now
    if finished is not None:
        values["finished_at"] = finished
        values["duration_ms"] = _duration_ms(row.started_at, finished)
    new = tx.conn.execute(_tool_update(tuple(values)), {**bound_values(values), **key}).one()
    tx.log("tool_events", event_id, "update", row_json(new._mapping), owner_id, new.session_id)
    return to_tool_event(new)


_TOOL_FOR_UPDATE = (
    sa.select(tool_events)
    .where(tool_events.c.id == sa.bindparam("eid"), tool_events.c.owner_id == sa.bindparam("owner"))
    .with_for_update()
)


@functools.lru_cache(maxsize=64)
def _tool_update(columns: tuple[str, ...]) -> sa.Update:
    """The UPDATE of these columns, built once per column list: built per
    call with its values inlined, SQLAlchemy built and keyed it anew each
    time: more than half of a tool call's finish in CPU (SQLite: 1.0-1.15 ->
    0.41-0.42 ms)."""
    c = tool_events.c
    values = bound_set(tool_events, columns)
    return (
        tool_events.update()
        .where(c.id == sa.bindparam("eid"))
        .values({**values, "version": c.version + 1})
        .returning(*tool_events.c)
    )


def _tool_decoder(dialect: sa.Dialect) -> RowDecoder:
    return custom_decoder(
        dialect,
        "tool_events.read",
        lambda: RowDecoder(tool_events, dialect, convert={"status": _tool_status}),
    )


def get_tool_event(conn: sa.Connection, owner_id: str, event_id: str) -> ToolEvent:
    stmt = prepared(conn.dialect, "tool_events.get", _get_tool_statement)
    row = stmt.execute(cursor(conn), {"eid": event_id, "owner": owner_id}).fetchone()
    if row is None:
        raise ToolEventNotFound(event_id)
    return trusted(ToolEvent, _tool_decoder(conn.dialect)(row))


def _get_tool_statement() -> sa.Executable:
    c = tool_events.c
    return sa.select(tool_events).where(
        c.id == sa.bindparam("eid"), c.owner_id == sa.bindparam("owner")
    )


def list_tool_events(
    conn: sa.Connection, owner_id: str, session_id: str, message_id: str | None = None
) -> list[ToolEvent]:
    get_row(conn, owner_id, session_id)  # SessionNotFound, not an empty list
    values = {"sid": session_id, "owner": owner_id}
    if message_id is None:
        stmt = prepared(conn.dialect, "tool_events.list", lambda: _list_tool_statement(False))
    else:
        values["mid"] = message_id
        stmt = prepared(conn.dialect, "tool_events.list.of", lambda: _list_tool_statement(True))
    decode = _tool_decoder(conn.dialect)
    rows = stmt.execute(cursor(conn), values).fetchall()
    with gc_paused(len(rows)):
        return [trusted(ToolEvent, decode(r)) for r in rows]


def _list_tool_statement(of_message: bool) -> sa.Executable:
    c = tool_events.c
    q = sa.select(tool_events).where(
        c.session_id == sa.bindparam("sid"), c.owner_id == sa.bindparam("owner")
    )
    if of_message:
        q = q.where(c.message_id == sa.bindparam("mid"))
    return q.order_by(c.created_at, c.id)


def insert_timeline_events(
    tx: WriteTx,
    owner_id: str,
    session_id: str,
    events: Sequence[NewTimelineEvent],
    base_seq: int,
) -> list[TimelineEvent]:
    check_free(tx.conn, timeline_events, "timeline event", [e.id for e in events])
    rows = timeline_event_rows(events, owner_id, session_id, tx.now, base_seq)
    insert_timeline_event_rows(tx, owner_id, session_id, rows)
    return [to_timeline_event(r) for r in rows]


def timeline_event_rows(
    events: Sequence[NewTimelineEvent],
    owner_id: str,
    session_id: str,
    now: datetime,
    base_seq: int,
) -> list[dict[str, Any]]:
    """Rows for the timeline_events table; seq runs from ``base_seq + 1``."""
    return [
        {
            "id": e.id or new_id(),
            "owner_id": owner_id,
            "session_id": session_id,
            "seq": base_seq + i,
            "kind": e.kind,
            "payload": e.payload,
            "message_id": e.message_id,
            "created_at": now,
        }
        for i, e in enumerate(events, start=1)
    ]


def insert_timeline_event_rows(
    tx: WriteTx, owner_id: str, session_id: str, rows: list[dict[str, Any]]
) -> None:
    if not rows:
        return
    tx.conn.execute(timeline_events.insert(), rows)
    for r in rows:
        tx.log("timeline_events", r["id"], "insert", row_json(r), owner_id, session_id)


def list_timeline_events(
    conn: sa.Connection,
    owner_id: str,
    session_id: str,
    after_seq: int | None = None,
    limit: int | None = None,
) -> list[TimelineEvent]:
    get_row(conn, owner_id, session_id)  # SessionNotFound, not an empty list
    stmt = prepared(conn.dialect, "timeline_events.list", _list_timeline_statement)
    values = {
        "sid": session_id,
        "owner": owner_id,
        "after": after_seq if after_seq is not None else -(2**62),
        "n": limit if limit is not None else 2**62,
    }
    decode = decoder(conn.dialect, timeline_events)
    rows = stmt.execute(cursor(conn), values).fetchall()
    with gc_paused(len(rows)):
        return [trusted(TimelineEvent, decode(r)) for r in rows]


def _list_timeline_statement() -> sa.Executable:
    c = timeline_events.c
    return (
        sa.select(timeline_events)
        .where(c.session_id == sa.bindparam("sid"), c.owner_id == sa.bindparam("owner"))
        .where(c.seq > sa.bindparam("after", type_=sa.BigInteger))
        .order_by(c.seq)
        .limit(sa.bindparam("n", type_=sa.BigInteger))
    )
