"""The import write: one source session, with its branches, messages and
events, in the caller's ONE transaction, with a change-log row per row.

Rows are built by the same helpers as the append path (``message_rows``,
``tool_event_row``, ``timeline_event_rows``), with the source's timestamps
instead of the time of the write, and inserted in chunks, so a long session
is streamed through the transaction rather than held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from threadkeep.errors import AlreadyExists, InvalidInput
from threadkeep.model.events import NewTimelineEvent, NewToolEvent
from threadkeep.model.imports import ImportCounts
from threadkeep.model.messages import MessageStatus, NewMessage
from threadkeep.store import sessions as session_q
from threadkeep.store.contract import WriteTx
from threadkeep.store.events import (
    insert_timeline_event_rows,
    insert_tool_event_rows,
    timeline_event_rows,
    tool_event_row,
)
from threadkeep.store.messages import insert_message_rows, message_rows
from threadkeep.store.tables import sessions

CHUNK = 500  # rows per executemany: bounded memory, few round trips


@dataclass
class ToolItem:
    event: NewToolEvent
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int | None = None


@dataclass
class EventItem:
    event: NewTimelineEvent
    created_at: datetime | None = None
    seq: int | None = None  # kept as given (must grow); None: the next one


@dataclass
class MessageItem:
    message: NewMessage
    created_at: datetime | None
    status: MessageStatus
    tool_events: list[ToolItem] = field(default_factory=list)
    events: list[EventItem] = field(default_factory=list)
    where: str | None = None


@dataclass
class SessionPlan:
    """One session row to insert (validated), and what goes into it."""

    id: str
    fields: dict[str, Any]
    items: Iterable[MessageItem]
    events: list[EventItem]
    tool_events: list[ToolItem] = field(default_factory=list)
    parent_id: str | None = None
    fork_seq: int | None = None
    # Counters to keep as given (threadkeep's own export); None: computed.
    totals: dict[str, int] = field(default_factory=dict)


def existing_owner(conn: sa.Connection, session_id: str) -> str | None:
    """The owner of ``session_id``, or None when there is no such session."""
    got = conn.execute(sa.select(sessions.c.owner_id).where(sessions.c.id == session_id)).first()
    return None if got is None else str(got[0])


def import_plans(tx: WriteTx, owner_id: str, plans: list[SessionPlan]) -> ImportCounts | None:
    """Write ``plans`` (a session, then its branches, parents first). None
    when the first session already exists for this owner: it was imported
    before, and nothing is written. Another owner's session with that id is
    :class:`AlreadyExists` (ids are derived per owner, so this means an id was
    given explicitly)."""
    owner = existing_owner(tx.conn, plans[0].id)
    if owner == owner_id:
        return None
    if owner is not None:
        raise AlreadyExists("session", plans[0].id)
    counts = ImportCounts()
    known: set[str] = set()  # message ids written so far: events may only point at these
    heads: dict[str, int] = {}  # head_seq of each session written so far
    for plan in plans:
        if plan.parent_id is not None:
            head = heads.get(plan.parent_id)
            if head is None:
                raise InvalidInput(plan.id, f"branch of {plan.parent_id!r}, which comes later")
            if plan.fork_seq is None or not 0 <= plan.fork_seq <= head:
                raise InvalidInput(plan.id, f"fork point must be between 0 and {head}")
        heads[plan.id] = _write_plan(tx, owner_id, plan, known, counts)
    return counts


def _write_plan(
    tx: WriteTx, owner_id: str, plan: SessionPlan, known: set[str], counts: ImportCounts
) -> int:
    sid = plan.id
    base = plan.fork_seq or 0
    fields = dict(plan.fields)
    version = fields.pop("version", None) or 1
    last_activity = fields.pop("last_activity_at", None)
    updated = fields.pop("updated_at", None)
    fields.update(parent_session_id=plan.parent_id, fork_seq=plan.fork_seq, head_seq=base)
    session_q.insert_session(tx, owner_id, sid, fields)
    counts.sessions += 1

    seq, event_seq, in_tok, out_tok = base, 0, 0, 0
    newest: datetime | None = fields.get("created_at")
    msgs: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    evts: list[dict[str, Any]] = []

    def flush() -> None:
        insert_message_rows(tx, owner_id, sid, msgs)
        insert_tool_event_rows(tx, owner_id, sid, tools)
        insert_timeline_event_rows(tx, owner_id, sid, evts)
        tx.flush_changes()  # bounded memory: the change rows go out with their chunk
        counts.messages += len(msgs)
        counts.tool_events += len(tools)
        counts.timeline_events += len(evts)
        msgs.clear()
        tools.clear()
        evts.clear()

    def add_events(items: list[EventItem], where: str | None) -> None:
        nonlocal event_seq
        for e in items:
            _check_link(e.event.message_id, known, where)
            if e.seq is not None:
                if e.seq <= event_seq:
                    raise InvalidInput(where or "event", f"event seq {e.seq} does not grow")
                event_seq = e.seq
            else:
                event_seq += 1
            at = e.created_at or tx.now
            evts.extend(timeline_event_rows([e.event], owner_id, sid, at, event_seq - 1))

    def add_tools(items: list[ToolItem], at: datetime, where: str | None) -> None:
        for t in items:
            _check_link(t.event.message_id, known, where)
            row = tool_event_row(t.event, owner_id, sid, t.created_at or at)
            if t.updated_at is not None:
                row["updated_at"] = t.updated_at
            if t.version is not None:
                row["version"] = t.version
            tools.append(row)

    for item in plan.items:
        m = item.message
        if m.id is None or m.id in known:
            raise InvalidInput(item.where or "message", f"message id {m.id!r} appears twice")
        seq += 1
        at = item.created_at or tx.now
        if newest is None or at > newest:
            newest = at
        msgs.extend(message_rows([m], owner_id, sid, at, seq - 1, tx.txid, item.status))
        known.add(m.id)
        in_tok += m.input_tokens or 0
        out_tok += m.output_tokens or 0
        add_tools(item.tool_events, at, item.where)
        add_events(item.events, item.where)
        if len(msgs) >= CHUNK or len(evts) >= CHUNK or len(tools) >= CHUNK:
            flush()
    add_tools(plan.tool_events, tx.now, None)
    add_events(plan.events, None)
    flush()

    values: dict[str, Any] = {
        "head_seq": seq,
        "event_seq": max(event_seq, plan.totals.get("event_seq", 0)),
        "input_tokens": plan.totals.get("input_tokens", in_tok),
        "output_tokens": plan.totals.get("output_tokens", out_tok),
        "last_activity_at": last_activity or newest or tx.now,
        "updated_at": updated or newest or tx.now,
        "version": version,
    }
    updated_row = tx.conn.execute(
        sessions.update()
        .where(sessions.c.id == sid, sessions.c.owner_id == owner_id)
        .values(**values)
        .returning(*sessions.c)
    ).one()
    session_q.log_session(tx, "update", updated_row)
    return seq


def _check_link(message_id: str | None, known: set[str], where: str | None) -> None:
    if message_id is not None and message_id not in known:
        raise InvalidInput(
            where or "event",
            f"an event refers to message {message_id!r}, which is not before it in this session",
        )
