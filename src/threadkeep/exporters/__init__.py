"""Exporters: take sessions out of threadkeep, through the library API.

* ``jsonl``: lossless and re-importable (``threadkeep import --format
  threadkeep``): a header line, then per session its row and its own
  messages, tool events, timeline events and records (every session-record
  row, and the uploads' metadata: not their bytes), parents before branches;
* ``json``: the same content as one JSON document, for tools that want one;
* ``markdown``: transcripts for people (branches shown with their fork point).

Everything is read page by page, so memory stays bounded by one page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from threadkeep.errors import InvalidInput
from threadkeep.importers.threadkeep_jsonl import FORMAT, VERSION
from threadkeep.model.common import Actor
from threadkeep.model.sessions import Session

FORMATS = ("jsonl", "json", "markdown")
PAGE = 1000


@dataclass
class ExportCounts:
    sessions: int = 0
    messages: int = 0
    tool_events: int = 0
    timeline_events: int = 0
    records: int = 0  # session-record and upload rows


def session_tree(tk: Any, actor: Actor, session_ids: list[str] | None) -> list[Session]:
    """The sessions to export, each root followed by its branches (parents
    first). ``None``: every session of the actor, trashed ones included."""
    if session_ids is not None:
        wanted = [tk.get_session(actor, sid) for sid in session_ids]
        everything = _all_sessions(tk, actor)
        by_parent = _children(everything)
        out: list[Session] = []
        seen: set[str] = set()
        for s in wanted:
            for one in _with_branches(s, by_parent):
                if one.id not in seen:
                    seen.add(one.id)
                    out.append(one)
        return _parents_first(out)
    everything = _all_sessions(tk, actor)
    by_parent = _children(everything)
    roots = [s for s in everything if s.parent_session_id is None]
    roots.sort(key=lambda s: (s.created_at, s.id))
    return [one for r in roots for one in _with_branches(r, by_parent)]


def _all_sessions(tk: Any, actor: Actor) -> list[Session]:
    out: list[Session] = []
    for trashed in (False, True):
        cursor = None
        while True:
            page = tk.list_sessions(actor, trashed=trashed, limit=PAGE, cursor=cursor)
            out.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return out


def _children(sessions: list[Session]) -> dict[str | None, list[Session]]:
    by_parent: dict[str | None, list[Session]] = {}
    for s in sessions:
        by_parent.setdefault(s.parent_session_id, []).append(s)
    for kids in by_parent.values():
        kids.sort(key=lambda s: (s.created_at, s.id))
    return by_parent


def _with_branches(root: Session, by_parent: dict[str | None, list[Session]]) -> list[Session]:
    out, stack = [], [root]
    while stack:
        s = stack.pop()
        out.append(s)
        stack.extend(reversed(by_parent.get(s.id, [])))
    return out


def _parents_first(sessions: list[Session]) -> list[Session]:
    ids = {s.id for s in sessions}
    done: set[str] = set()
    out: list[Session] = []
    pending = list(sessions)
    while pending:
        rest = []
        for s in pending:
            if (
                s.parent_session_id is None
                or s.parent_session_id not in ids
                or (s.parent_session_id in done)
            ):
                out.append(s)
                done.add(s.id)
            else:
                rest.append(s)
        if len(rest) == len(pending):  # pragma: no cover - a cycle cannot be stored
            out.extend(rest)
            break
        pending = rest
    return out


def own_messages(tk: Any, actor: Actor, s: Session) -> Iterator[Any]:
    """The session's own messages (a branch's, after its fork point), by page."""
    after = s.fork_seq or 0
    while after < s.head_seq:
        page = tk.get_messages(actor, s.id, after_seq=after, limit=PAGE)
        if not page:
            break
        yield from page
        after = page[-1].seq


def _dump(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json")
    return out


def export(
    tk: Any,
    actor: Actor,
    out: IO[str],
    *,
    format: str,
    session_ids: list[str] | None = None,
    on_session: Callable[[Session, ExportCounts], None] | None = None,
) -> ExportCounts:
    """Write the actor's sessions (or ``session_ids`` and their branches) to
    ``out`` in ``format``."""
    if format not in FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")
    counts = ExportCounts()
    sessions = session_tree(tk, actor, session_ids)
    writer = {"jsonl": _JsonlWriter, "json": _JsonWriter, "markdown": _MarkdownWriter}[format](out)
    writer.start(actor)
    for s in sessions:
        writer.session(s)
        counts.sessions += 1
        for m in own_messages(tk, actor, s):
            writer.message(m)
            counts.messages += 1
        tools = tk.list_tool_events(actor, s.id)
        events = tk.list_timeline_events(actor, s.id)
        writer.events(tools, events)
        counts.tool_events += len(tools)
        counts.timeline_events += len(events)
        records = tk.export_records(actor, s.id)
        writer.records(records)
        counts.records += len(records)
        writer.end_session(s)
        if on_session is not None:
            on_session(s, counts)
    writer.finish()
    return counts


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _JsonlWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def start(self, actor: Actor) -> None:
        now = datetime.now(UTC).isoformat()
        self.out.write(
            _line(
                {"format": FORMAT, "version": VERSION, "exported_at": now, "owner": actor.user_id}
            )
            + "\n"
        )

    def session(self, s: Session) -> None:
        self.out.write(_line({"type": "session", "data": _dump(s)}) + "\n")

    def message(self, m: Any) -> None:
        self.out.write(_line({"type": "message", "data": _dump(m)}) + "\n")

    def events(self, tools: list[Any], events: list[Any]) -> None:
        for t in tools:
            self.out.write(_line({"type": "tool_event", "data": _dump(t)}) + "\n")
        for e in events:
            self.out.write(_line({"type": "timeline_event", "data": _dump(e)}) + "\n")

    def records(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        for table, row in records:
            self.out.write(_line({"type": "record", "table": table, "data": row}) + "\n")

    def end_session(self, s: Session) -> None:
        pass

    def finish(self) -> None:
        pass


class _JsonWriter(_JsonlWriter):
    """One document: {"format", "version", "sessions": [{"session",
    "messages", "tool_events", "timeline_events", "records"}]}, written as
    it goes."""

    def start(self, actor: Actor) -> None:
        self.first = True
        head = _line({"format": FORMAT, "version": VERSION, "owner": actor.user_id})
        self.out.write(head[:-1] + ',"sessions":[')

    def session(self, s: Session) -> None:
        self.out.write(("" if self.first else ",") + '\n{"session":' + _line(_dump(s)))
        self.out.write(',"messages":[')
        self.first = False
        self.first_message = True

    def message(self, m: Any) -> None:
        self.out.write(("" if self.first_message else ",") + "\n" + _line(_dump(m)))
        self.first_message = False

    def events(self, tools: list[Any], events: list[Any]) -> None:
        self.out.write('],"tool_events":' + _line([_dump(t) for t in tools]))
        self.out.write(',"timeline_events":' + _line([_dump(e) for e in events]))

    def records(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        rows = [{"table": table, "data": row} for table, row in records]
        self.out.write(',"records":' + _line(rows) + "}")

    def finish(self) -> None:
        self.out.write("\n]}\n")


class _MarkdownWriter(_JsonlWriter):
    def start(self, actor: Actor) -> None:
        self.out.write(f"# threadkeep export for {actor.user_id}\n")

    def session(self, s: Session) -> None:
        self.out.write(f"\n## {s.title or 'Untitled session'}\n\n")
        self.out.write(f"- id: `{s.id}`\n- created: {s.created_at.isoformat()}\n")
        if s.model:
            self.out.write(f"- model: {s.model}\n")
        if s.tags:
            self.out.write(f"- tags: {', '.join(s.tags)}\n")
        if s.parent_session_id is not None:
            self.out.write(f"- branch of `{s.parent_session_id}` after message {s.fork_seq}\n")
        if s.deleted_at is not None:
            self.out.write("- in the trash\n")

    def message(self, m: Any) -> None:
        when = m.created_at.strftime("%Y-%m-%d %H:%M")
        self.out.write(f"\n### {m.seq}. {m.role.value} ({when})\n\n")
        self.out.write((m.content or "").rstrip() + "\n")
        for call in m.tool_calls or []:
            name = call.get("name") if isinstance(call, dict) else None
            self.out.write(f"\n> tool call: {name or 'tool'}\n")

    def events(self, tools: list[Any], events: list[Any]) -> None:
        if tools:
            self.out.write("\n#### Tool calls\n\n")
            for t in tools:
                self.out.write(f"- {t.name}: {t.status.value}\n")

    def records(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        """For people: the summary and the todo list; the other records are
        for machines (the JSONL export has them)."""
        for table, row in records:
            if table == "summaries":
                self.out.write(f"\n#### Summary\n\n{row['summary'].rstrip()}\n")
        todo_rows = [row for table, row in records if table == "todos"]
        if todo_rows:
            self.out.write("\n#### Todos\n\n")
            marks = {"completed": "x", "in_progress": "~", "pending": " "}
            for row in sorted(todo_rows, key=lambda r: (r["position"], r["id"])):
                self.out.write(f"- [{marks.get(row['status'], ' ')}] {row['content']}\n")
