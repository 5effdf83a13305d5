"""threadkeep's own JSONL export (``threadkeep export --format jsonl``), read
back losslessly: ids, seqs, timestamps, counters and branches as they were.

Layout (one JSON object per line): a header ``{"format": "threadkeep",
"version": 1}``, then per session a ``{"type": "session", "data": ...}``
line followed by its own messages, tool events and timeline events
(``"type": "message" | "tool_event" | "timeline_event"``), then its records
(``{"type": "record", "table": "todos", "data": ...}``: every session-record
table, and ``uploads`` for the uploads' metadata). A session without
``parent_session_id`` starts a group; its branches follow it, parents first.
Each group is one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from threadkeep.importers._common import (
    Failed,
    SourceError,
    SourceItem,
    decode_record,
    json_lines,
    timestamp,
)
from threadkeep.model.imports import (
    ImportedEvent,
    ImportedMessage,
    ImportedRecord,
    ImportedSession,
    ImportedToolEvent,
)

FORMAT = "threadkeep"
VERSION = 1


def looks_like(path: Path) -> bool:
    if not path.is_file():
        return False
    for _, _, raw in json_lines(path):
        try:
            head = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(head, dict) and head.get("format") == FORMAT
    return False


class _Group:
    def __init__(self, root: ImportedSession, where: str) -> None:
        self.root = root
        self.where = where
        self.by_id = {root.id: root}
        self.expected: dict[str, int] = {}
        self.error: SourceError | None = None


def read(path: Path, owner_id: str) -> Iterator[SourceItem]:
    return read_records(_file_records(path))


def _file_records(path: Path) -> Iterator[Record]:
    """The file's records after its header line, each decoded or the error
    that decoding it raised."""
    header = False
    for lineno, _, raw in json_lines(path):
        where = f"{path.name} line {lineno}"
        try:
            rec = decode_record(raw, where)
        except SourceError as exc:
            if not header:
                raise
            yield where, exc
            continue
        if not header:
            header = True
            if not isinstance(rec, dict) or rec.get("format") != FORMAT:
                raise SourceError(where, "not a threadkeep export (no header line)")
            if rec.get("version") != VERSION:
                raise SourceError(where, f"export version {rec.get('version')!r} is unknown")
            continue
        yield where, rec


#: One record of the export and where it is (file and line): a decoded line,
#: or the SourceError that decoding it raised.
Record = tuple[str, Any]


def read_records(
    records: Iterator[Record], *, blobs_in_source: Mapping[str, int] | None = None
) -> Iterator[SourceItem]:
    """Source sessions from records in the export's order: each session line
    followed by its own rows, a root session before its branches, parents
    first. A root and its branches are one item (one transaction); a bad
    record fails its group, and the others go on. ``records`` may raise
    SourceError for the whole source (a bad header): one Failed, nothing else.
    (Also the reader of a user archive, importers/threadkeep_archive.py.)

    ``blobs_in_source``: sha256 -> size of the file bytes the source itself
    holds (an archive's, stored before its rows): an upload row naming them
    is imported with them, and a dry run counts it so."""
    blobs = blobs_in_source or {}
    group: _Group | None = None
    current: ImportedSession | None = None
    # After a session line that cannot be read: its rows are skipped (the
    # one failure reported names that line), and the group before it, whole
    # already, is not failed for it.
    skipping = False
    try:
        for where, rec in records:
            try:
                if isinstance(rec, SourceError):
                    raise rec
                if not isinstance(rec, dict) or not isinstance(rec.get("data"), dict):
                    raise SourceError(where, 'expected {"type": ..., "data": {...}}')
                kind, data = rec.get("type"), rec["data"]
                if kind == "session":
                    try:
                        s = _session(data, where)
                    except (SourceError, KeyError, TypeError, ValueError) as exc:
                        if group is not None:
                            yield _finish(group)
                        group = current = None
                        skipping = True
                        reason = exc.reason if isinstance(exc, SourceError) else str(exc)
                        yield Failed(where, f"a session that cannot be read ({reason})")
                        continue
                    skipping = False
                    if s.parent_id is None or group is None or s.parent_id not in group.by_id:
                        if group is not None:
                            yield _finish(group)
                        group = _Group(s, where)
                        if s.parent_id is not None:
                            # Its own failed group: its rows are skipped with it,
                            # and the report names it, not the group before.
                            group.error = SourceError(
                                where, f"branch of {s.parent_id}, which is not before it"
                            )
                    else:
                        group.root.branches.append(s)
                        group.by_id[s.id] = s
                    group.expected[s.id] = int(data.get("head_seq", 0))
                    current = s
                    continue
                if skipping:
                    continue
                if group is None or current is None:
                    raise SourceError(where, "a record before any session")
                if group.error is not None:
                    continue
                _add(current, kind, rec, data, where, blobs)
            except SourceError as exc:
                if group is None:
                    yield Failed(exc.where, exc.reason)
                elif group.error is None:
                    group.error = exc
            except (KeyError, TypeError, ValueError) as exc:
                err = SourceError(where, f"malformed record ({exc})")
                if group is None:
                    yield Failed(err.where, err.reason)
                elif group.error is None:
                    group.error = err
    except SourceError as exc:  # the source as a whole
        yield Failed(exc.where, exc.reason)
        return
    if group is not None:
        yield _finish(group)


def _add(
    current: ImportedSession,
    kind: Any,
    rec: dict[str, Any],
    data: Any,
    where: str,
    blobs: Mapping[str, int],
) -> None:
    """One row of ``current``'s, in its place."""
    if kind == "message":
        msgs = current.messages
        assert isinstance(msgs, list)
        m = _message(data, where)
        want = (current.fork_seq or 0) + len(msgs) + 1
        if data.get("seq") != want:
            raise SourceError(where, f"message seq {data.get('seq')!r}, expected {want}")
        msgs.append(m)
    elif kind == "tool_event":
        current.tool_events.append(_tool(data, where))
    elif kind == "timeline_event":
        current.events.append(_event(data, where))
    elif kind == "record":
        table = rec.get("table")
        if not isinstance(table, str):
            raise SourceError(where, "a record needs its table's name")
        own = table == "uploads" and blobs.get(data.get("sha256")) == data.get("size")
        current.records.append(ImportedRecord(table, data, where, bytes_in_source=own))
    else:
        raise SourceError(where, f"unknown record type {kind!r}")


def _finish(group: _Group) -> SourceItem:
    if group.error is not None:
        return Failed(group.error.where, group.error.reason, group.root.id)
    for s in [group.root, *group.root.branches]:
        msgs = s.messages
        assert isinstance(msgs, list)
        if (s.fork_seq or 0) + len(msgs) != group.expected[s.id]:
            return Failed(
                group.where,
                f"session {s.id} says head_seq {group.expected[s.id]} but "
                f"{len(msgs)} of its own messages follow it (fork at {s.fork_seq or 0})",
                group.root.id,
            )
    return group.root


def _req(d: dict[str, Any], name: str, where: str) -> Any:
    if name not in d:
        raise SourceError(where, f"missing field {name!r}")
    return d[name]


def _session(d: dict[str, Any], where: str) -> ImportedSession:
    return ImportedSession(
        id=_req(d, "id", where),
        source=f"{FORMAT}: {where}",
        title=d.get("title"),
        model=d.get("model"),
        provider=d.get("provider"),
        state=d.get("state", "active"),
        tags=d.get("tags") or [],
        starred=bool(d.get("starred")),
        pinned=bool(d.get("pinned")),
        archived=bool(d.get("archived")),
        metadata=d.get("metadata") or {},
        created_at=timestamp(d.get("created_at")),
        updated_at=timestamp(d.get("updated_at")),
        last_activity_at=timestamp(d.get("last_activity_at")),
        deleted_at=timestamp(d.get("deleted_at")),
        cost_usd=d.get("cost_usd", 0.0),
        version=d.get("version"),
        event_seq=d.get("event_seq"),
        input_tokens=d.get("input_tokens"),
        output_tokens=d.get("output_tokens"),
        messages=[],
        parent_id=d.get("parent_session_id"),
        fork_seq=d.get("fork_seq"),
    )


def _message(d: dict[str, Any], where: str) -> ImportedMessage:
    return ImportedMessage(
        id=_req(d, "id", where),
        role=_req(d, "role", where),
        content=d.get("content", ""),
        parts=d.get("parts"),
        tool_calls=d.get("tool_calls"),
        model=d.get("model"),
        input_tokens=d.get("input_tokens"),
        output_tokens=d.get("output_tokens"),
        client_id=d.get("client_id"),
        metadata=d.get("metadata") or {},
        created_at=timestamp(d.get("created_at")),
        status=d.get("status", "complete"),
        where=where,
    )


def _tool(d: dict[str, Any], where: str) -> ImportedToolEvent:
    return ImportedToolEvent(
        id=_req(d, "id", where),
        name=_req(d, "name", where),
        status=d.get("status", "succeeded"),
        message_id=d.get("message_id"),
        call_id=d.get("call_id"),
        input=d.get("input"),
        output=d.get("output"),
        error=d.get("error"),
        started_at=timestamp(d.get("started_at")),
        finished_at=timestamp(d.get("finished_at")),
        created_at=timestamp(d.get("created_at")),
        updated_at=timestamp(d.get("updated_at")),
        version=d.get("version"),
    )


def _event(d: dict[str, Any], where: str) -> ImportedEvent:
    return ImportedEvent(
        id=_req(d, "id", where),
        kind=_req(d, "kind", where),
        payload=d.get("payload"),
        message_id=d.get("message_id"),
        created_at=timestamp(d.get("created_at")),
        seq=d.get("seq"),
    )
