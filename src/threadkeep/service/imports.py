"""Importing one source session: validate it, then write it whole in one
transaction (or, dry, count what would be written and write nothing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import pydantic
import sqlalchemy as sa

from threadkeep.blobs.contract import Source as Source  # re-exported for aio.py
from threadkeep.blobs.contract import check_sha256
from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor
from threadkeep.model.events import NewTimelineEvent, NewToolEvent
from threadkeep.model.imports import (
    ImportCounts,
    ImportedEvent,
    ImportedMessage,
    ImportedRecord,
    ImportedSession,
    ImportedToolEvent,
    ImportOutcome,
    derived_id,
)
from threadkeep.model.messages import MessageStatus, NewMessage
from threadkeep.model.repos import NewRepoBinding
from threadkeep.model.sessions import NewSession
from threadkeep.model.snapshots import NewSummary
from threadkeep.model.text import (
    check_json,
    check_size,
    check_text,
    json_size,
    message_size,
    text_size,
)
from threadkeep.model.todos import NewTodo
from threadkeep.model.uploads import check_filename, check_media_type
from threadkeep.service import args
from threadkeep.service.base import check_actor, coerce
from threadkeep.service.uploads import UploadOps
from threadkeep.store import imports as import_q
from threadkeep.store import sessions as session_q
from threadkeep.store.changes import row_json
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import uploads as uploads_table
from threadkeep.store.types import UTCDateTime

T = TypeVar("T")
_SCOPE = ("owner_id", "session_id")  # implied by the session a record follows


def not_yet_stored(s: ImportedSession) -> list[tuple[str, str]]:
    """What the source holds that the import does not store, as (where,
    reason) report entries. Todos, the repo binding, the summary and the
    rows of threadkeep's own export are written (``store.imports.
    write_record``); what is left is file references without their bytes."""
    out: list[tuple[str, str]] = []
    if s.uploads:
        out.append(
            (
                s.source,
                f"{len(s.uploads)} file reference(s): the source holds no file bytes, "
                "so no upload is stored",
            )
        )
    for b in s.branches:
        out.extend(not_yet_stored(b))
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


class ImportOps(UploadOps):
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

    def _plan(self, s: ImportedSession, skipped: list[tuple[str, str]]) -> import_q.SessionPlan:
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
        plan = import_q.SessionPlan(
            id=args.key(f"{where}.id", s.id),
            fields=fields,
            items=_Validated(self, s),
            events=[self._event_item(e, where) for e in s.events],
            tool_events=[self._tool_item(t, where) for t in s.tool_events],
            totals=totals,
            parent_id=None if s.parent_id is None else args.key(f"{where}.parent", s.parent_id),
            fork_seq=None if s.fork_seq is None else args.integer(f"{where}.fork", s.fork_seq),
        )
        self._session_record(s, plan, skipped)
        return plan

    def _plans(
        self, s: ImportedSession, skipped: list[tuple[str, str]]
    ) -> list[import_q.SessionPlan]:
        """The session, then its branches (one flat list, parents first)."""
        root = self._plan(s, skipped)
        root.parent_id = root.fork_seq = None
        return [root, *(self._plan(b, skipped) for b in s.branches)]

    # --- the session record -------------------------------------------------

    def _session_record(
        self, s: ImportedSession, plan: import_q.SessionPlan, skipped: list[tuple[str, str]]
    ) -> None:
        """Todos, repo binding, summary and exported rows of one session, checked
        as their own service methods check them. Ids the source does not give
        are derived from the session's (itself derived from the source), so a
        second import finds the rows the first one wrote."""
        sid = plan.id
        if s.todos:
            plan.todos = []
            for i, t in enumerate(s.todos):
                where = t.where or f"{s.source} todo {i + 1}"
                todo: dict[str, Any] = {
                    "content": t.content,
                    "status": t.status,
                    "active_form": t.active_form,
                    "id": t.id or derived_id(sid, "todo", str(i)),
                }
                plan.todos.append(coerce(NewTodo, todo, where))
        b = s.repo_binding
        if b is not None:
            where = f"{s.source} repo binding"
            binding: dict[str, Any] = {
                "path": b.path,
                "remote_url": b.url,
                "branch": b.branch,
                "commit_sha": b.commit,
                "bound_at": b.bound_at or s.created_at,
                "id": derived_id(sid, "repo-binding"),
            }
            try:
                plan.binding = coerce(NewRepoBinding, binding, where)
            except InvalidInput as exc:
                # Not worth failing a transcript for: the session's metadata
                # keeps what the source said, and the report says why.
                skipped.append((where, f"not stored as a repo binding: {exc}"))
        if s.summary:
            where = f"{s.source} summary"
            summary = {"summary": s.summary, "id": derived_id(sid, "summary")}
            plan.summary = coerce(NewSummary, summary, where)
            check_size(where, text_size(plan.summary.summary), self.limits.max_message_bytes)
        seen: set[tuple[str, Any]] = set()
        for r in s.records:
            key = (r.table, r.row.get("id") if isinstance(r.row, dict) else None)
            if key in seen:
                raise InvalidInput(r.where, f"{r.table} row {key[1]!r} appears twice")
            seen.add(key)
            if r.table == uploads_table.name:
                row = self._upload_row(r, skipped)
                if row is not None:
                    plan.uploads.append(row)
            else:
                plan.records.append(self._record_item(r))

    def _columns(self, table: Any, row: Any, where: str) -> dict[str, Any]:
        """A row of ``table`` as threadkeep's export writes it (every column but
        owner_id and session_id), each value checked against its column."""
        names = [c.name for c in table.c if c.name not in ("owner_id", "session_id")]
        if not isinstance(row, dict):
            raise InvalidInput(where, f"a {table.name} row must be an object")
        if set(row) != set(names):
            missing, extra = sorted(set(names) - set(row)), sorted(set(row) - set(names))
            raise InvalidInput(
                where,
                f"a {table.name} row has the columns {', '.join(names)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(extra)}" if extra else ""),
            )
        out: dict[str, Any] = {}
        for col in table.c:
            if col.name not in row:
                continue
            f, v, t = f"{where}.{col.name}", row[col.name], col.type
            if v is None:
                if not col.nullable:
                    raise InvalidInput(f, "must not be null")
            elif isinstance(t, UTCDateTime):
                v = _aware(f, _parse_time(f, v))
            elif isinstance(t, sa.Boolean):
                if not isinstance(v, bool):
                    raise InvalidInput(f, "must be true or false")
            elif isinstance(t, sa.Integer):
                v = args.integer(f, v)
            elif isinstance(t, sa.Float):
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 2**63:
                    raise InvalidInput(f, "must be a number of at least 0")
                v = float(v)
            elif isinstance(t, sa.String):
                if not isinstance(v, str):
                    raise InvalidInput(f, f"must be a string, not {type(v).__name__}")
                check_text(f, v)
                if t.length is not None and len(v) > t.length:
                    raise InvalidInput(f, f"must be at most {t.length} characters")
                check_size(f, text_size(v), self.limits.max_message_bytes)
            else:  # JSON
                check_json(f, v)
                check_size(f, json_size(v), self.limits.max_json_bytes)
            out[col.name] = v
        out["id"] = args.key(f"{where}.id", out["id"])
        return out

    def _record_item(self, r: ImportedRecord) -> import_q.RecordItem:
        kind = import_q.RECORD_KINDS.get(r.table)
        if kind is None:
            raise InvalidInput(r.where, f"unknown session-record table {r.table!r}")
        row = self._columns(kind.table, r.row, r.where)
        try:  # enums, evidence items...: what the entity's own model accepts
            kind.model.model_validate({**row, "owner_id": "-", "session_id": "-"})
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise InvalidInput(f"{r.where}.{loc}", err["msg"]) from None
        problem = _row_problem(r.table, row)
        if problem is not None:
            raise InvalidInput(r.where, problem)
        item = import_q.RecordItem(kind, row, r.where)
        for name in ("message_id", "tool_event_id"):
            if row.get(name) is not None:
                (item.message_ids if name == "message_id" else item.tool_event_ids).add(row[name])
        for ev in row.get("evidence") or []:
            (item.message_ids if ev["kind"] == "message" else item.tool_event_ids).add(ev["id"])
        return item

    def _upload_row(
        self, r: ImportedRecord, skipped: list[tuple[str, str]]
    ) -> dict[str, Any] | None:
        """An upload row of the export, or None (reported) when this store's
        blob store does not hold its bytes: a row is never stored without them."""
        row = self._columns(uploads_table, r.row, r.where)
        row["filename"] = _at(r.where, lambda: check_filename(row["filename"]))
        row["media_type"] = _at(r.where, lambda: check_media_type(row["media_type"]))
        row["sha256"] = check_sha256(f"{r.where}.sha256", row["sha256"])
        # Touched, not just looked up: a collection or an erasure before
        # this import commits then spares the bytes (blobs/contract.py).
        size = self.blobs.touch(row["sha256"])
        if size is None and r.bytes_in_source:
            # A dry run of an archive, whose bytes a real run stores first. (Gone
            # again by a real run's write: _hold_blobs refuses the session.)
            return row
        if size is None:
            skipped.append(
                (
                    r.where,
                    f"upload {row['id']} ({row['filename']}): its bytes are not in this "
                    "store's blob store, so it is not imported (copy the blobs first, "
                    "docs/blobs.md, or upload the file again)",
                )
            )
            return None
        if size != row["size"]:
            skipped.append(
                (
                    r.where,
                    f"upload {row['id']} ({row['filename']}): the export gives it "
                    f"{row['size']} bytes but its blob holds {size}, so it is not imported",
                )
            )
            return None
        return row

    def store_import_blob(self, source: Source, sha256: str) -> None:
        """Store file bytes that an import brings along (a user archive's
        ``blobs/<sha256>``), before the rows that name them: durably, checked
        against ``sha256``, at most the upload size limit. Bytes no row ends
        up naming are collected like any unused blob (docs/blobs.md).

        Raises:
            ChecksumMismatch: the bytes are not ``sha256``'s (nothing stored).
            TooLarge: more than ``max_upload_bytes``.
        """
        expected = check_sha256("sha256", sha256)
        self.blobs.put(source, max_bytes=self.limits.max_upload_bytes, expected_sha256=expected)

    def export_records(self, actor: Actor, session_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Every session-record row (todos, repo bindings, summaries, snapshots,
        checkpoints, misalignments, hook decisions, recordings, file changes,
        analytics events) and upload row of one session, as (table, row): the
        row's columns but owner_id and session_id, timestamps as ISO 8601
        text. What threadkeep's own export writes and its importer reads back.

        Raises:
            SessionNotFound: no such session for this user.
        """
        owner = check_actor(actor)
        sid = args.key("session_id", session_id)

        def read(conn: Any) -> list[tuple[str, dict[str, Any]]]:
            session_q.get_row(conn, owner, sid)
            return [
                (table, {k: v for k, v in row_json(r._mapping).items() if k not in _SCOPE})
                for table, r in import_q.session_records(conn, owner, sid)
            ]

        return self.engine.read(read)

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
        skipped = [*session.skipped, *not_yet_stored(session)]
        for b in session.branches:
            skipped.extend(b.skipped)
        plans = self._plans(session, skipped)
        if dry_run:
            # (A real import asks the same inside its write transaction.)
            holder = self.engine.read(lambda c: import_q.existing_owner(c, plans[0].id))
            if holder == owner:  # what a write would add is counted by the caller
                return ImportOutcome(plans[0].id, "unchanged", ImportCounts(), skipped)
            return ImportOutcome(plans[0].id, "would_create", _dry_counts(plans), skipped)

        shas = list({row["sha256"] for plan in plans for row in plan.uploads})

        def op(tx: WriteTx) -> tuple[str, ImportCounts]:
            self._hold_blobs(tx, shas)
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
        counts.todos += len(plan.todos or [])
        counts.repo_bindings += plan.binding is not None
        counts.summaries += plan.summary is not None
        counts.uploads += len(plan.uploads)
        for r in plan.records:
            if r.kind.table.name in ("todos", "repo_bindings", "summaries"):
                setattr(counts, r.kind.table.name, getattr(counts, r.kind.table.name) + 1)
            else:
                counts.records += 1
    return counts


def _parse_time(field: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be an ISO 8601 timestamp")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 timestamp") from None


def _at(where: str, check: Callable[[], T]) -> T:
    """Run a check whose error names a bare field, naming the record too."""
    try:
        return check()
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.{exc.field}", exc.reason) from None


def _row_problem(table: str, row: dict[str, Any]) -> str | None:
    """The tables' CHECK constraints the models do not already hold."""
    if table == "repo_bindings":
        if row["path"] is None and row["remote_url"] is None:
            return "a repo binding needs a path or a remote_url"
        if row["unbound_at"] is not None and row["unbound_at"] < row["bound_at"]:
            return "a repo binding cannot end before it began"
    if table == "misalignments" and row["resolution"] is not None and row["resolved_at"] is None:
        return "a resolution needs resolved_at"
    return None
