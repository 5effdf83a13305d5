"""The import write: one source session, with its branches, messages,
events and session record (todos, repo binding, summary, the rows of
threadkeep's own export), in the caller's ONE transaction, with a change-log
row per row.

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
from threadkeep.model.repos import NewRepoBinding
from threadkeep.model.snapshots import NewSummary
from threadkeep.model.todos import NewTodo
from threadkeep.store import activity as activity_q
from threadkeep.store import oversight as oversight_q
from threadkeep.store import records as record_q
from threadkeep.store import repos as repo_q
from threadkeep.store import sessions as session_q
from threadkeep.store import snapshots as snapshot_q
from threadkeep.store import todos as todo_q
from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx
from threadkeep.store.events import (
    insert_timeline_event_rows,
    insert_tool_event_rows,
    timeline_event_rows,
    tool_event_row,
)
from threadkeep.store.messages import insert_message_rows, message_rows
from threadkeep.store.tables import (
    messages,
    repo_bindings,
    sessions,
    summaries,
    timeline_events,
    todos,
    tool_events,
    uploads,
)

CHUNK = 500  # rows per executemany: bounded memory, few round trips

# Every session-record table, by name (threadkeep's own export names them).
RECORD_KINDS: dict[str, record_q.Kind[Any]] = {
    k.table.name: k
    for k in (
        todo_q.TODO,
        oversight_q.MISALIGNMENT,
        oversight_q.HOOK_DECISION,
        repo_q.REPO_BINDING,
        snapshot_q.SNAPSHOT,
        snapshot_q.CHECKPOINT,
        snapshot_q.SUMMARY,
        activity_q.RECORDING,
        repo_q.FILE_CHANGE,
        activity_q.ANALYTICS_EVENT,
    )
}


def session_records(conn: sa.Connection, owner_id: str, session_id: str) -> list[tuple[str, Any]]:
    """Every session-record row and upload row of one session, as (table,
    row), table by table, each in (created_at, id) order: what threadkeep's
    own export writes after the session's events."""
    out: list[tuple[str, Any]] = []
    for table in [*(k.table for k in RECORD_KINDS.values()), uploads]:
        c = table.c
        q = (
            sa.select(table)
            .where(c.session_id == session_id, c.owner_id == owner_id)
            .order_by(c.created_at, c.id)
        )
        out.extend((table.name, r) for r in conn.execute(q))
    return out


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
class RecordItem:
    """A checked row of a session-record table, and the messages and tool
    events it names (checked against the store when it is written)."""

    kind: record_q.Kind[Any]
    row: dict[str, Any]
    where: str
    message_ids: set[str] = field(default_factory=set)
    tool_event_ids: set[str] = field(default_factory=set)


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
    # The session record (see write_record): None / empty: the source has none.
    todos: list[NewTodo] | None = None
    binding: NewRepoBinding | None = None
    summary: NewSummary | None = None
    # Rows of threadkeep's own export, checked, kept as they were, and upload
    # rows whose bytes the blob store holds.
    records: list[RecordItem] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)


def existing_owner(conn: sa.Connection, session_id: str) -> str | None:
    """The owner of ``session_id``, or None when there is no such session."""
    got = conn.execute(sa.select(sessions.c.owner_id).where(sessions.c.id == session_id)).first()
    return None if got is None else str(got[0])


def import_plans(tx: WriteTx, owner_id: str, plans: list[SessionPlan]) -> tuple[str, ImportCounts]:
    """Write ``plans`` (a session, then its branches, parents first).

    Returns (status, rows written): ``created``; or, when the session was
    imported before, ``updated`` (the source grew: what it holds beyond the
    stored rows is appended) or ``unchanged`` (nothing new, nothing written).
    A source that changed in any other way (a stored message differs, a
    branch moved) raises InvalidInput and nothing is written. Another
    owner's session with that id is :class:`AlreadyExists` (ids are derived
    per owner, so this means an id was given explicitly)."""
    owner = existing_owner(tx.conn, plans[0].id)
    if owner is not None and owner != owner_id:
        raise AlreadyExists("session", plans[0].id)
    grow = owner is not None
    counts = ImportCounts()
    known: set[str] = set()  # message ids written so far: events may only point at these
    heads: dict[str, int] = {}  # head_seq of each session written so far
    # Every stored session is locked before the first change row is flushed:
    # on PostgreSQL a transaction is ordered in the log by its first change
    # row (store/changes.py), which must come after every lock it waits for.
    stored = {plan.id: _existing(tx, owner_id, plan) if grow else None for plan in plans}
    for plan in plans:
        existing = stored[plan.id]
        if plan.parent_id is not None and existing is None:
            head = heads.get(plan.parent_id)
            if head is None:
                raise InvalidInput(plan.id, f"branch of {plan.parent_id!r}, which comes later")
            if plan.fork_seq is None or not 0 <= plan.fork_seq <= head:
                raise InvalidInput(plan.id, f"fork point must be between 0 and {head}")
        heads[plan.id] = _write_plan(tx, owner_id, plan, known, counts, existing)
    for plan in plans:  # after every message: a record may name one of a branch's
        write_record(tx, owner_id, plan, counts)
    if not grow:
        return "created", counts
    return ("updated" if counts.changed() else "unchanged"), counts


def write_record(tx: WriteTx, owner_id: str, plan: SessionPlan, counts: ImportCounts) -> None:
    """The session record of one plan, through the entities' own store
    helpers. What an earlier import of the same source wrote (same derived
    ids, same values) is left alone, so a second import changes nothing."""
    sid = plan.id
    if plan.todos:
        if not _same_todos(tx.conn, owner_id, sid, plan.todos):
            todo_q.replace_todos(tx, owner_id, sid, plan.todos)  # the source's last list wins
            counts.todos += len(plan.todos)
    if plan.binding is not None:
        b = repo_bindings.c
        held = tx.conn.execute(
            sa.select(b.id).where(b.session_id == sid, b.owner_id == owner_id).limit(1)
        ).first()
        if held is None:  # a binding made since (by hand) is the user's: kept
            repo_q.bind_repo(tx, owner_id, sid, plan.binding)
            counts.repo_bindings += 1
    if plan.summary is not None:
        c = summaries.c
        old = tx.conn.execute(
            sa.select(c.id, c.title, c.summary).where(c.session_id == sid, c.owner_id == owner_id)
        ).first()
        new = plan.summary
        # One per session: the source's replaces what an earlier import of it
        # wrote; a summary set by other means is kept.
        ours = old is not None and old.id == new.id
        if old is None or (ours and (old.summary, old.title) != (new.summary, new.title)):
            snapshot_q.set_summary(tx, owner_id, sid, new)
            counts.summaries += 1
    for item in plan.records:
        kind, row = item.kind, item.row
        if _stored(tx.conn, kind.table, owner_id, sid, row["id"]):
            continue
        missing = _missing_reference(tx.conn, owner_id, item.message_ids, item.tool_event_ids)
        if missing is not None:
            raise InvalidInput(
                item.where, f"names {missing!r}: no message or tool event of this user has that id"
            )
        _check_one_per_session(tx.conn, owner_id, sid, item)
        record_q.check_ids_free(tx.conn, kind, [row["id"]])
        record_q.insert(tx, kind, owner_id, sid, [row])
        if kind.table is todos:
            counts.todos += 1
        elif kind.table is repo_bindings:
            counts.repo_bindings += 1
        elif kind.table is summaries:
            counts.summaries += 1
        else:
            counts.records += 1
    for row in plan.uploads:
        if _stored(tx.conn, uploads, owner_id, sid, row["id"]):
            continue
        if tx.conn.execute(sa.select(uploads.c.id).where(uploads.c.id == row["id"])).first():
            raise AlreadyExists("upload", row["id"])
        full = {**row, "owner_id": owner_id, "session_id": sid}
        tx.conn.execute(uploads.insert(), full)
        tx.log("uploads", row["id"], "insert", row_json(full), owner_id, sid)
        counts.uploads += 1


def _check_one_per_session(conn: sa.Connection, owner_id: str, sid: str, item: RecordItem) -> None:
    """A session has one summary and one active repo binding: an exported one
    that meets another (set since the export) is refused, not merged."""
    table = item.kind.table
    c = table.c
    if table is summaries:
        what = "a summary"
        q = sa.select(c.id).where(c.session_id == sid, c.owner_id == owner_id)
    elif table is repo_bindings and item.row["unbound_at"] is None:
        what = "an active repo binding"
        q = sa.select(c.id).where(
            c.session_id == sid, c.owner_id == owner_id, c.unbound_at.is_(None)
        )
    else:
        return
    if conn.execute(q.limit(1)).first() is not None:
        raise InvalidInput(
            item.where,
            f"the session has {what} already (not this one): delete it to import this one",
        )


def _stored(conn: sa.Connection, table: sa.Table, owner_id: str, sid: str, key: str) -> bool:
    c = table.c
    q = sa.select(c.id).where(c.id == key, c.owner_id == owner_id, c.session_id == sid)
    return conn.execute(q).first() is not None


def _same_todos(conn: sa.Connection, owner_id: str, sid: str, items: list[NewTodo]) -> bool:
    c = todos.c
    rows = conn.execute(
        sa.select(c.id, c.position, c.content, c.status, c.active_form)
        .where(c.session_id == sid, c.owner_id == owner_id)
        .order_by(c.position, c.id)
    ).all()
    want = [(i.id, p, i.content, i.status.value, i.active_form) for p, i in enumerate(items)]
    return [tuple(r) for r in rows] == want


def _missing_reference(
    conn: sa.Connection, owner_id: str, message_ids: set[str], tool_event_ids: set[str]
) -> str | None:
    """The first id a record of threadkeep's export names that another owner
    holds a message / tool event with (None: none). Owner-wide, not
    session-wide: a rewind moves messages into a branch, and the records that
    named them stay where they were.

    An id that no row holds at all is kept: it is what purging that branch
    leaves in the source store, whose records then name messages that are
    gone, and its own export must import. Nothing reads a record's ids as a
    way to another row, so a name is all it is."""
    for table, wanted in ((messages, message_ids), (tool_events, tool_event_ids)):
        if not wanted:
            continue
        c = table.c
        theirs = conn.execute(
            sa.select(c.id)
            .where(c.id.in_(sorted(wanted)), c.owner_id != owner_id)
            .order_by(c.id)
            .limit(1)
        ).scalar()
        if theirs is not None:
            return str(theirs)
    return None


def _check_not_moved(conn: sa.Connection, owner_id: str, session_id: str, ids: list[str]) -> None:
    """Refuse to add messages the owner holds in another session already: a
    rewind in threadkeep moved them from the imported session to a branch, and
    the source's growth would add them again (and fail on their ids)."""
    c = messages.c
    moved = conn.execute(
        sa.select(c.id, c.session_id)
        .where(c.id.in_(ids), c.owner_id == owner_id, c.session_id != session_id)
        .limit(1)
    ).first()
    if moved is not None:
        raise InvalidInput(
            session_id,
            f"message {moved.id!r} is in session {moved.session_id!r} now (a rewind moved "
            "it there): the imported session changed since it was imported and cannot be "
            "added to; purge it and its branches, then import again",
        )


def _check_unchanged(
    conn: sa.Connection, owner_id: str, session_id: str, items: list[MessageItem]
) -> None:
    """Refuse source messages that an earlier import stored under the same id
    with other text: a reply exported while it was still streaming and whole
    the next time, an answer regenerated in place. Keeping the stored one
    would drop what the source holds now without a word."""
    if not items:
        return
    c = messages.c
    stored = {
        r.id: r
        for r in conn.execute(
            sa.select(c.id, c.role, c.content, c.parts, c.tool_calls).where(
                c.id.in_([i.message.id for i in items]),
                c.owner_id == owner_id,
                c.session_id == session_id,
            )
        )
    }
    for item in items:
        m, r = item.message, stored.get(item.message.id)
        if r is None or (r.role, r.content, r.parts, r.tool_calls) != (
            m.role.value,
            m.content,
            m.parts,
            m.tool_calls,
        ):
            raise InvalidInput(
                item.where or "message",
                f"the source changed since it was imported (message {m.id!r} is stored "
                "with other content): it cannot be added to; delete the imported "
                "session first",
            )


@dataclass
class _Stored:
    """What an earlier import of the same source wrote for one session."""

    row: Any
    message_ids: list[str]  # its own messages, in seq order
    tool_events: dict[str, bool]  # id -> finished
    timeline_events: set[str]


def _existing(tx: WriteTx, owner_id: str, plan: SessionPlan) -> _Stored | None:
    c = sessions.c
    row = tx.conn.execute(
        sa.select(sessions).where(c.id == plan.id, c.owner_id == owner_id).with_for_update()
    ).first()
    if row is None:
        return None
    if row.parent_session_id != plan.parent_id or row.fork_seq != plan.fork_seq:
        raise InvalidInput(
            plan.id,
            "the source's branches changed since it was imported (a branch starts "
            "elsewhere now): it cannot be added to; delete the imported session first",
        )
    ids = list(
        tx.conn.execute(
            sa.select(messages.c.id)
            .where(messages.c.session_id == plan.id, messages.c.owner_id == owner_id)
            .order_by(messages.c.seq)
        ).scalars()
    )
    t = tool_events.c
    tools = {
        r.id: r.status in ("succeeded", "failed", "cancelled")
        for r in tx.conn.execute(
            sa.select(t.id, t.status).where(t.session_id == plan.id, t.owner_id == owner_id)
        )
    }
    e = timeline_events.c
    evts = set(
        tx.conn.execute(
            sa.select(e.id).where(e.session_id == plan.id, e.owner_id == owner_id)
        ).scalars()
    )
    return _Stored(row, ids, tools, evts)


def _write_plan(
    tx: WriteTx,
    owner_id: str,
    plan: SessionPlan,
    known: set[str],
    counts: ImportCounts,
    stored: _Stored | None = None,
) -> int:
    """Write one session; with ``stored`` (an earlier import of it), only
    what the source holds beyond it. Returns the session's head_seq."""
    sid = plan.id
    base = plan.fork_seq or 0
    fields = dict(plan.fields)
    version = fields.pop("version", None) or 1
    last_activity = fields.pop("last_activity_at", None)
    updated = fields.pop("updated_at", None)
    if stored is None:
        fields.update(parent_session_id=plan.parent_id, fork_seq=plan.fork_seq, head_seq=base)
        session_q.insert_session(tx, owner_id, sid, fields)
        counts.sessions += 1
        seq, event_seq, in_tok, out_tok = base, 0, 0, 0
        newest: datetime | None = fields.get("created_at")
    else:
        r = stored.row
        seq, event_seq = r.head_seq, r.event_seq
        in_tok, out_tok, newest = r.input_tokens, r.output_tokens, r.last_activity_at
    old = stored.message_ids if stored is not None else []
    position = 0  # how many of the source's items this loop has seen
    before = (counts.messages, counts.tool_events, counts.timeline_events)
    msgs: list[dict[str, Any]] = []
    tools: list[dict[str, Any]] = []
    evts: list[dict[str, Any]] = []
    held: list[MessageItem] = []  # stored by the earlier import: compared in chunks

    def compare() -> None:
        _check_unchanged(tx.conn, owner_id, sid, held)
        held.clear()

    def flush() -> None:
        if stored is not None and msgs:
            _check_not_moved(tx.conn, owner_id, sid, [r["id"] for r in msgs])
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
            if stored is not None and e.event.id in stored.timeline_events:
                continue  # written by the earlier import
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
            if stored is not None and t.event.id in stored.tool_events:
                if not stored.tool_events[t.event.id] and t.event.status.finished:
                    _finish_tool_event(tx, owner_id, t)  # its result arrived since
                    counts.tool_events += 1
                continue
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
        position += 1
        if position <= len(old):
            if old[position - 1] != m.id:
                raise InvalidInput(
                    item.where or "message",
                    "the source changed since it was imported (this message is not the "
                    "one stored at its place): it cannot be added to; delete the "
                    "imported session first",
                )
            known.add(m.id)
            held.append(item)
            if len(held) >= CHUNK:
                compare()
            add_tools(item.tool_events, item.created_at or tx.now, item.where)
            add_events(item.events, item.where)
            continue
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
    compare()
    add_tools(plan.tool_events, tx.now, None)
    add_events(plan.events, None)
    if position < len(old):
        raise InvalidInput(
            plan.id,
            f"the source holds {position} of this session's messages, the database "
            f"{len(old)}: it changed since it was imported and cannot be added to",
        )
    flush()
    if stored is not None and before == (
        counts.messages,
        counts.tool_events,
        counts.timeline_events,
    ):
        return int(seq)  # nothing new for this session: its row stays as it is

    values: dict[str, Any] = {
        "head_seq": seq,
        "event_seq": max(event_seq, plan.totals.get("event_seq", 0)),
        "input_tokens": plan.totals.get("input_tokens", in_tok),
        "output_tokens": plan.totals.get("output_tokens", out_tok),
        "last_activity_at": last_activity or newest or tx.now,
        "updated_at": updated or newest or tx.now,
        "version": version,
    }
    if stored is not None:  # growing: counters from the rows, the source's times
        values.update(
            event_seq=event_seq,
            input_tokens=in_tok,
            output_tokens=out_tok,
            last_activity_at=max(stored.row.last_activity_at, newest or tx.now),
            updated_at=tx.now,
            version=stored.row.version + 1,
        )
    updated_row = tx.conn.execute(
        sessions.update()
        .where(sessions.c.id == sid, sessions.c.owner_id == owner_id)
        .values(**values)
        .returning(*sessions.c)
    ).one()
    # Only what changed: a logged deleted_at would tell sync the session just
    # left the trash (store/sessions.py log_session), an insert of a held key.
    session_q.log_session(tx, "update", updated_row, values)
    return seq


def _finish_tool_event(tx: WriteTx, owner_id: str, t: ToolItem) -> None:
    """A call stored as ``started`` whose result the source holds now."""
    e = t.event
    c = tool_events.c
    row = tx.conn.execute(
        tool_events.update()
        .where(c.id == e.id, c.owner_id == owner_id)
        .values(
            status=e.status.value,
            output=e.output,
            error=e.error,
            finished_at=e.finished_at or tx.now,
            duration_ms=_duration(e.started_at, e.finished_at),
            updated_at=tx.now,
            version=c.version + 1,
        )
        .returning(*tool_events.c)
    ).one()
    tx.log("tool_events", row.id, "update", row_json(row._mapping), owner_id, row.session_id)


def _duration(started: datetime | None, finished: datetime | None) -> int | None:
    if started is None or finished is None:
        return None
    return max(0, int((finished - started).total_seconds() * 1000))


def _check_link(message_id: str | None, known: set[str], where: str | None) -> None:
    if message_id is not None and message_id not in known:
        raise InvalidInput(
            where or "event",
            f"an event refers to message {message_id!r}, which is not before it in this session",
        )
