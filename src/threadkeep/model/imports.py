"""What an importer hands to the store: one source session, format-neutral.

Every importer (legacy JSON, localStorage, Claude Code, ChatGPT, Open WebUI,
threadkeep's own JSONL) turns its source into :class:`ImportedSession` values;
``service/imports.py`` writes each one in ONE transaction. Besides
messages and events it carries the session record the source holds: the
todo list, a repo binding and a summary (stored in the same transaction as
the messages), the rows of every session-record table and the uploads'
metadata of threadkeep's own export (``records``), and file references
without bytes (``uploads``: reported as skipped, see
``service.imports.not_yet_stored``).

Ids are chosen by the importer, derived deterministically from the source
(:func:`derived_id`), so importing the same source twice finds what the first
run wrote and changes nothing.

``messages`` is any *re-iterable* (a list, or an object whose ``__iter__``
re-reads the source): the store may run a write function twice (PostgreSQL
retries a serialization failure), and a spent generator would then write a
session without its messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Fixed forever: changing it would re-import every source as new sessions.
IMPORT_NAMESPACE = uuid.UUID("8f9d2b5e-3c41-4d7a-9b0e-6a1c2f4e8d37")


def derived_id(owner_id: str, *parts: str) -> str:
    """A stable id for a source object: the same owner and source parts give
    the same id on every run, different owners never collide."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, "\x1f".join((owner_id, *parts))))


@dataclass
class ImportedToolEvent:
    id: str
    name: str
    status: str = "succeeded"
    message_id: str | None = None
    call_id: str | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Only threadkeep's own export carries these; other sources leave them None.
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int | None = None


@dataclass
class ImportedEvent:
    """A timeline event (anything that is not a message)."""

    id: str
    kind: str
    payload: Any = None
    message_id: str | None = None
    created_at: datetime | None = None
    # Only threadkeep's own export: the event's seq in its session (kept, gaps
    # and all); other sources leave it None and events are numbered in order.
    seq: int | None = None


@dataclass
class ImportedMessage:
    id: str
    role: str
    content: str = ""
    parts: list[Any] | None = None
    tool_calls: list[Any] | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    client_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    status: str = "complete"
    # Written right after this message, in the same session.
    tool_events: list[ImportedToolEvent] = field(default_factory=list)
    events: list[ImportedEvent] = field(default_factory=list)
    # Where it came from, for error messages ("file.jsonl line 12").
    where: str | None = None


@dataclass
class ImportedTodo:
    content: str
    status: str
    position: int
    message_id: str | None = None  # the message whose tool call set the list
    active_form: str | None = None
    # None: derived from the session id and the position, so a later list
    # from the same source updates the same rows.
    id: str | None = None
    where: str | None = None  # "file.jsonl line 12", for error messages


@dataclass
class ImportedRepoBinding:
    path: str | None = None
    url: str | None = None
    branch: str | None = None
    commit: str | None = None
    bound_at: datetime | None = None  # None: the session's created_at


@dataclass
class ImportedRecord:
    """A row of a session-record table (``todos``, ``snapshots``...) or of
    ``uploads``, as threadkeep's own export holds it: every column but
    ``owner_id`` and ``session_id``, timestamps as ISO 8601 text."""

    table: str
    row: dict[str, Any]
    where: str
    #: An upload row whose bytes the source itself holds (a user archive's
    #: blobs, checked and stored before the rows): a dry run counts it.
    bytes_in_source: bool = False


@dataclass
class ImportedSession:
    """One source session (or, with ``parent_id``/``fork_seq``, one of its
    branches: a branch shares its parent's first ``fork_seq`` messages)."""

    id: str
    source: str  # e.g. "claude-code: /path/x.jsonl"
    title: str | None = None
    model: str | None = None
    provider: str | None = None
    state: str = "active"
    tags: list[str] = field(default_factory=list)
    starred: bool = False
    pinned: bool = False
    archived: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_activity_at: datetime | None = None
    deleted_at: datetime | None = None
    cost_usd: float = 0.0
    # Only threadkeep's own export: counters as they were (a rewound session
    # keeps its token totals and event counter); None: computed from the rows.
    version: int | None = None
    event_seq: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    messages: Iterable[ImportedMessage] = ()
    # Session-level tool and timeline events, written after the messages.
    tool_events: list[ImportedToolEvent] = field(default_factory=list)
    events: list[ImportedEvent] = field(default_factory=list)
    # Branches, parents listed before their children; written in the same
    # transaction as the session.
    branches: list[ImportedSession] = field(default_factory=list)
    parent_id: str | None = None
    fork_seq: int | None = None
    # The session record, written in the session's transaction: the todo
    # list as the source last had it, the repo binding, the summary.
    todos: list[ImportedTodo] = field(default_factory=list)
    repo_binding: ImportedRepoBinding | None = None
    summary: str | None = None
    # Session-record and upload rows of threadkeep's own export, kept as
    # they were (ids, timestamps).
    records: list[ImportedRecord] = field(default_factory=list)
    # File references without their bytes (Open WebUI's ``files``): reported
    # as skipped, never stored as uploads that have no content.
    uploads: list[dict[str, Any]] = field(default_factory=list)
    # Source records the importer read but does not map, with the reason
    # (``where``, ``reason``): they go into the import report.
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ImportCounts:
    sessions: int = 0
    messages: int = 0
    tool_events: int = 0
    timeline_events: int = 0
    todos: int = 0  # rows inserted or changed (a list set again counts its items)
    repo_bindings: int = 0
    summaries: int = 0
    uploads: int = 0
    # Rows of the other session-record tables (threadkeep's own export).
    records: int = 0

    def add(self, other: ImportCounts) -> None:
        for name in self.as_dict():
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def changed(self) -> bool:
        return any(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        return {
            "sessions": self.sessions,
            "messages": self.messages,
            "tool_events": self.tool_events,
            "timeline_events": self.timeline_events,
            "todos": self.todos,
            "repo_bindings": self.repo_bindings,
            "summaries": self.summaries,
            "uploads": self.uploads,
            "records": self.records,
        }


@dataclass
class ImportOutcome:
    """What importing one source session did (or, dry, would do).

    ``status``: ``created``; ``unchanged`` (already imported: nothing written);
    ``would_create`` (dry run)."""

    session_id: str
    status: str
    counts: ImportCounts
    skipped: list[tuple[str, str]] = field(default_factory=list)
    txid: int | None = None  # the transaction that wrote it (None: nothing written)
