"""Importing one source session: validate it, then write it whole in one
transaction (or, dry, count what would be written and write nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor
from threadkeep.model.events import NewTimelineEvent, NewToolEvent
from threadkeep.model.imports import (
    ImportCounts,
    ImportedEvent,
    ImportedMessage,
    ImportedSession,
    ImportedToolEvent,
    ImportOutcome,
)
from threadkeep.model.messages import MessageStatus, NewMessage
from threadkeep.model.sessions import NewSession
from threadkeep.model.text import check_size, json_size, message_size
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor, coerce
from threadkeep.store import imports as import_q
from threadkeep.store.contract import WriteTx


def not_yet_stored(s: ImportedSession) -> list[tuple[str, str]]:
    """What the source holds that this build has no table for, as
    (where, reason) report entries. THE wiring point: when todos, repo
    bindings, summaries and uploads can be stored, write them in
    ``store.imports.import_plans`` and drop their line here."""
    out: list[tuple[str, str]] = []
    if s.todos:
        out.append((s.source, f"{len(s.todos)} todo item(s): todos are not stored yet"))
    if s.repo_binding is not None:
        out.append((s.source, "repo binding (cwd / git branch): not stored yet"))
    if s.summary:
        out.append((s.source, "session summary: summaries are not stored yet"))
    if s.uploads:
        out.append((s.source, f"{len(s.uploads)} upload(s): uploads are not stored yet"))
    for b in s.branches:
        out.extend(not_yet_stored(b))  # a branch has none of its own today
    return out


def _aware(field: str, value: datetime | None) -> datetime | None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidInput(field, "must be a timezone-aware datetime")
    return value


class _Validated:
    """The plan's message items, validated as they are read (re-iterable)."""

    def __init__(self, ops: ImportOps, s: ImportedSession) -> None:
        self.ops, self.s = ops, s

    def __iter__(self) -> Iterator[import_q.MessageItem]:
        for i, m in enumerate(self.s.messages):
            yield self.ops._message_item(m, m.where or f"{self.s.source} message {i + 1}")


class ImportOps(ServiceBase):
    def _message_item(self, m: ImportedMessage, where: str) -> import_q.MessageItem:
        fields = {
            "id": m.id,
            "role": m.role,
            "content": m.content,
            "parts": m.parts,
            "tool_calls": m.tool_calls,
            "model": m.model,
            "input_tokens": m.input_tokens,
            "output_tokens": m.output_tokens,
            "client_id": m.client_id,
            "metadata": m.metadata,
        }
        new = coerce(NewMessage, fields, where)
        check_size(
            where,
            message_size(new.content, new.parts, new.tool_calls, new.metadata),
            self.limits.max_message_bytes,
        )
        try:
            status = MessageStatus(m.status)
        except ValueError:
            raise InvalidInput(f"{where}.status", f"unknown status {m.status!r}") from None
        return import_q.MessageItem(
            message=new,
            created_at=_aware(f"{where}.created_at", m.created_at),
            status=status,
            tool_events=[self._tool_item(t, where) for t in m.tool_events],
            events=[self._event_item(e, where) for e in m.events],
            where=where,
        )

    def _tool_item(self, t: ImportedToolEvent, where: str) -> import_q.ToolItem:
        fields = {
            "id": t.id,
            "name": t.name,
            "status": t.status,
            "message_id": t.message_id,
            "call_id": t.call_id,
            "input": t.input,
            "output": t.output,
            "error": t.error,
            "started_at": t.started_at,
            "finished_at": t.finished_at,
        }
        event = coerce(NewToolEvent, fields, f"{where} tool event")
        check_size(
            f"{where} tool event",
            json_size(event.input) + json_size(event.output),
            self.limits.max_json_bytes,
        )
        if t.version is not None:
            args.integer(f"{where} tool event version", t.version, minimum=1)
        return import_q.ToolItem(
            event,
            _aware(f"{where} tool event created_at", t.created_at),
            _aware(f"{where} tool event updated_at", t.updated_at),
            t.version,
        )

    def _event_item(self, e: ImportedEvent, where: str) -> import_q.EventItem:
        fields = {"id": e.id, "kind": e.kind, "payload": e.payload, "message_id": e.message_id}
        event = coerce(NewTimelineEvent, fields, f"{where} event")
        check_size(f"{where} event", json_size(event.payload), self.limits.max_json_bytes)
        seq = None if e.seq is None else args.integer(f"{where} event seq", e.seq, minimum=1)
        return import_q.EventItem(event, _aware(f"{where} event created_at", e.created_at), seq)

    def _plan(self, s: ImportedSession) -> import_q.SessionPlan:
        where = s.source
        new = coerce(
            NewSession,
            {
                "id": s.id,
                "title": s.title,
                "model": s.model,
                "provider": s.provider,
                "state": s.state,
                "tags": s.tags,
                "starred": s.starred,
                "pinned": s.pinned,
                "archived": s.archived,
                "metadata": s.metadata,
            },
            where,
        )
        check_size(where, json_size(new.metadata), self.limits.max_json_bytes)
        fields: dict[str, Any] = new.model_dump(exclude={"id"})
        for name in ("created_at", "updated_at", "last_activity_at", "deleted_at"):
            value = _aware(f"{where}.{name}", getattr(s, name))
            if value is not None:
                fields[name] = value
        if s.version is not None:
            fields["version"] = args.integer(f"{where}.version", s.version, minimum=1)
        if not isinstance(s.cost_usd, int | float) or s.cost_usd != s.cost_usd:
            raise InvalidInput(f"{where}.cost_usd", "must be a number")
        fields["cost_usd"] = float(s.cost_usd)
        totals = {
            name: args.integer(f"{where}.{name}", getattr(s, name))
            for name in ("event_seq", "input_tokens", "output_tokens")
            if getattr(s, name) is not None
        }
        return import_q.SessionPlan(
            id=args.key(f"{where}.id", s.id),
            fields=fields,
            items=_Validated(self, s),
            events=[self._event_item(e, where) for e in s.events],
            tool_events=[self._tool_item(t, where) for t in s.tool_events],
            totals=totals,
            parent_id=None if s.parent_id is None else args.key(f"{where}.parent", s.parent_id),
            fork_seq=None if s.fork_seq is None else args.integer(f"{where}.fork", s.fork_seq),
        )

    def _plans(self, s: ImportedSession) -> list[import_q.SessionPlan]:
        """The session, then its branches (one flat list, parents first)."""
        root = self._plan(s)
        root.parent_id = root.fork_seq = None
        return [root, *(self._plan(b) for b in s.branches)]

    def import_session(
        self, actor: Actor, session: ImportedSession, *, dry_run: bool = False
    ) -> ImportOutcome:
        """Write one source session, its branches, messages, tool events and
        timeline events in ONE transaction, with their change-log rows.

        Ids come from the source (see ``model.imports.derived_id``). When the
        session was imported before, the source is compared with what is
        stored: what it holds beyond that (a transcript that grew) is added
        (``updated``), or nothing is written (``unchanged``); a source that
        changed in any other way raises InvalidInput. With ``dry_run``
        everything is read and validated, nothing is written, and the outcome
        says ``would_create`` (or ``unchanged`` for a session imported before).

        Raises:
            InvalidInput / InvalidText / TooLarge: a bad record (the field names
                the source file and line); nothing of the session is written.
            AlreadyExists: another user holds a session with that id.
        """
        owner = check_actor(actor)
        if not isinstance(session, ImportedSession):
            raise InvalidInput("session", "must be an ImportedSession")
        plans = self._plans(session)
        skipped = [*session.skipped, *not_yet_stored(session)]
        for b in session.branches:
            skipped.extend(b.skipped)
        holder = self.engine.read(lambda c: import_q.existing_owner(c, plans[0].id))
        if dry_run:
            if holder == owner:  # what a write would add is counted by the caller
                return ImportOutcome(plans[0].id, "unchanged", ImportCounts(), skipped)
            return ImportOutcome(plans[0].id, "would_create", _dry_counts(plans), skipped)

        def op(tx: WriteTx) -> tuple[str, ImportCounts]:
            return import_q.import_plans(tx, owner, plans)

        done = self.engine.write(op)
        status, counts = done.value
        txid = None if status == "unchanged" else done.txid
        return ImportOutcome(plans[0].id, status, counts, skipped, txid)


def _dry_counts(plans: list[import_q.SessionPlan]) -> ImportCounts:
    """Read and validate every item, as the write would, counting them."""
    counts = ImportCounts()
    seen: set[str] = set()
    for plan in plans:
        counts.sessions += 1
        for item in plan.items:
            mid = item.message.id or ""
            if mid in seen:
                raise InvalidInput(item.where or "message", f"message id {mid!r} appears twice")
            seen.add(mid)
            counts.messages += 1
            counts.tool_events += len(item.tool_events)
            counts.timeline_events += len(item.events)
        counts.timeline_events += len(plan.events)
        counts.tool_events += len(plan.tool_events)
    return counts
