"""Claude Code transcripts: a project directory of ``*.jsonl`` files.

Mapping (docs/migrating.md has the table):

* one ``<sessionId>.jsonl`` file -> one session (subagent files
  ``<sessionId>/subagents/agent-*.jsonl`` and ``agent-*.jsonl`` -> their own
  session, marked ``sidechain`` and linked to the spawning Task call);
* ``user`` / ``assistant`` records -> messages (a user record holding only
  tool results -> role ``tool``); the ``parentUuid`` tree -> the main line
  (path to the newest leaf, stitched across ``/compact`` through
  ``logicalParentUuid``) and branches (real rewinds); a lagging tool result
  or other side leaf stays in its parent's line;
* ``tool_use`` linked to its ``tool_result`` by id -> a tool event;
* ``system`` / ``attachment`` / ``progress`` records and records without a
  uuid (file-history-snapshot, queue-operation...) -> timeline events;
* ``ai-title`` / ``custom-title`` -> the title; ``summary`` -> the summary;
  the last TodoWrite list (in file order) -> the session's todos; the first
  ``cwd`` / ``gitBranch`` -> the repo binding (and the session's metadata).

Streaming: the first pass keeps a small index per record (uuid, parent,
byte offset); messages are read again, one line at a time, while the
transaction writes them. A 1 GB transcript never sits in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from threadkeep.importers._common import (
    Failed,
    Repairs,
    SkippedItem,
    SourceError,
    SourceItem,
    clean,
    decode_record,
    json_lines,
    linearize,
    read_line_at,
    repair_note,
    timestamp,
)
from threadkeep.model.imports import (
    ImportedEvent,
    ImportedMessage,
    ImportedRepoBinding,
    ImportedSession,
    ImportedTodo,
    ImportedToolEvent,
    derived_id,
)

FORMAT = "claude-code"
_MESSAGE_TYPES = ("user", "assistant")
_TITLE_TYPES = ("custom-title", "ai-title")


def files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.jsonl") if p.is_file())


def looks_like(path: Path) -> bool:
    """A ``*.jsonl`` file (or a directory of them) whose first record has a
    Claude Code ``type`` and ``sessionId`` or is a ``summary``."""
    for p in files(path)[:3]:
        for _, _, raw in json_lines(p):
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                break
            return isinstance(rec, dict) and (
                "sessionId" in rec or rec.get("type") in ("summary", "file-history-snapshot")
            )
    return False


def read(path: Path, owner_id: str) -> Iterator[SourceItem]:
    for p in files(path):
        try:
            s = _Transcript(p, owner_id).session()
            if s is None:
                yield SkippedItem(
                    p.name, "no messages or events (only summary or title records): not imported"
                )
                continue
            yield s
        except SourceError as exc:
            yield Failed(exc.where, exc.reason)
        except OSError as exc:
            yield Failed(p.name, f"cannot read: {exc.strerror or exc}")


@dataclass(slots=True)
class _Node:
    line: int
    offset: int
    parent: str | None  # effective: the nearest message ancestor
    user_prompt: bool  # a typed user prompt (text), not a tool result


@dataclass
class _Index:
    nodes: dict[str, _Node] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    # message uuid (or "" for none) -> (line, offset) of records written as its events
    events: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _Transcript:
    def __init__(self, path: Path, owner_id: str) -> None:
        self.path = path
        self.owner = owner_id
        self.name = path.name
        agent = path.stem if path.stem.startswith("agent-") else None
        # The file's own key: its stem; a subagent's is "<session>/<agent>".
        session_dir = path.parent.parent.name if path.parent.name == "subagents" else None
        self.key = f"{session_dir}/{path.stem}" if session_dir and agent else path.stem
        self.agent = agent
        self.session_dir = session_dir
        self.repairs = Repairs()

    def id(self, *parts: str) -> str:
        return derived_id(self.owner, FORMAT, self.key, *parts)

    # --- pass 1: the index -----------------------------------------------

    def session(self) -> ImportedSession | None:
        """The transcript as a session; None when it holds no message or event."""
        idx = _Index()
        raw_parent: dict[str, str | None] = {}
        kinds: dict[str, bool] = {}  # uuid -> is a message record
        last_anchor = ""  # the latest message in file order: where loose records go
        title: str | None = None
        summary: str | None = None
        model: str | None = None
        first_ts: datetime | None = None
        last_ts: datetime | None = None
        binding: ImportedRepoBinding | None = None
        todos: list[ImportedTodo] = []
        meta: dict[str, Any] = {"source": FORMAT, "file": self.key}
        pending: tuple[int, str] | None = None  # a bad line: fatal unless it is the last
        first_line: dict[str, int] = {}
        lines = 0

        for lineno, offset, raw in json_lines(self.path):
            lines += 1
            where = f"{self.name} line {lineno}"
            if pending is not None:
                raise SourceError(f"{self.name} line {pending[0]}", pending[1])
            try:
                rec = decode_record(raw, where)
            except SourceError as exc:
                pending = (lineno, exc.reason)
                continue
            if not isinstance(rec, dict):
                raise SourceError(where, f"a record must be a JSON object, not {_kind(rec)}")
            rtype = rec.get("type")
            uid = rec.get("uuid")
            ts = timestamp(rec.get("timestamp"))
            if ts is not None:
                first_ts = ts if first_ts is None or ts < first_ts else first_ts
                last_ts = ts if last_ts is None or ts > last_ts else last_ts
            if binding is None and isinstance(rec.get("cwd"), str):
                branch = rec.get("gitBranch")
                binding = ImportedRepoBinding(
                    path=clean(rec["cwd"]), branch=clean(branch) if branch else None
                )
                meta["cwd"] = binding.path
                if binding.branch:
                    meta["git_branch"] = binding.branch
            if rtype in _TITLE_TYPES:
                text = rec.get("customTitle") or rec.get("aiTitle") or rec.get("title")
                if isinstance(text, str) and (title is None or rtype == "custom-title"):
                    title = clean(text)[:1000]
            if rtype == "summary":
                if isinstance(rec.get("summary"), str):
                    summary = clean(rec["summary"])
                continue
            if uid is None:
                idx.events.setdefault(last_anchor, []).append((lineno, offset))
                continue
            if not isinstance(uid, str) or not uid or len(uid) > 100:
                raise SourceError(where, "uuid must be a non-empty string")
            parent = rec.get("parentUuid")
            if rtype == "system" and rec.get("subtype") == "compact_boundary" and parent is None:
                parent = rec.get("logicalParentUuid")  # stitch /compact onto what it continues
            if parent is not None and not isinstance(parent, str):
                raise SourceError(where, "parentUuid must be a string or null")
            if uid in raw_parent:
                first = first_line[uid]
                idx.skipped.append(
                    (where, f"uuid {uid} already read at line {first}: kept the first")
                )
                continue
            first_line[uid] = lineno
            raw_parent[uid] = parent
            is_message = rtype in _MESSAGE_TYPES and isinstance(rec.get("message"), dict)
            kinds[uid] = is_message
            if is_message:
                msg = rec["message"]
                idx.nodes[uid] = _Node(lineno, offset, parent, _is_prompt(rec, msg))
                idx.order.append(uid)
                last_anchor = uid
                if rtype == "assistant" and isinstance(msg.get("model"), str):
                    if msg["model"] != "<synthetic>":
                        model = msg["model"]
                for block in _blocks(msg.get("content")):
                    if block.get("type") == "tool_use" and block.get("name") == "TodoWrite":
                        todos = _todos(block.get("input"), self.id(uid), where)
            else:
                # Loose structural records become events of their message ancestor,
                # resolved after the pass (the parent may come later in the file).
                idx.events.setdefault("\x00" + uid, []).append((lineno, offset))
        if pending is not None:
            if pending[0] != lines:  # pragma: no cover - raised in the loop
                raise SourceError(f"{self.name} line {pending[0]}", pending[1])
            idx.skipped.append(
                (
                    f"{self.name} line {pending[0]}",
                    f"last line unreadable ({pending[1]}): "
                    "a transcript still being written? skipped",
                )
            )

        # Effective parents: through non-message records, to the nearest message.
        def anchor(uid: str | None, where: str) -> str | None:
            steps = 0
            while uid is not None and uid in kinds and not kinds[uid]:
                uid = raw_parent[uid]
                steps += 1
                if steps > len(kinds):
                    raise SourceError(where, f"cycle in the parentUuid chain through {uid}")
            return uid

        for node in idx.nodes.values():
            node.parent = anchor(node.parent, f"{self.name} line {node.line}")
        for key in [k for k in idx.events if k.startswith("\x00")]:
            uid = key[1:]
            at = anchor(raw_parent[uid], f"{self.name} line {first_line[uid]}")
            target = at if at in idx.nodes else ""
            idx.events.setdefault(target, []).extend(idx.events.pop(key))

        try:
            lines_, orphans = linearize(
                {k: n.parent for k, n in idx.nodes.items()},
                idx.order,
                inline=lambda k: not idx.nodes[k].user_prompt,
            )
        except ValueError as exc:
            bad = idx.nodes[str(exc)]
            raise SourceError(
                f"{self.name} line {bad.line}", f"cycle in the parentUuid chain at {exc}"
            ) from None
        for k in orphans:
            n = idx.nodes[k]
            idx.skipped.append(
                (
                    f"{self.name} line {n.line}",
                    f"parent {n.parent} is not in this file: imported as the start of a branch",
                )
            )

        if not idx.nodes and not any(idx.events.values()):
            return None
        reader = _Reader(self, idx, [ln.keys for ln in lines_])
        sid = self.id("session")
        if self.agent:
            meta["sidechain"] = True
            meta["agent_id"] = self.agent.removeprefix("agent-")
            if self.session_dir:
                meta["parent_session_id"] = derived_id(
                    self.owner, FORMAT, self.session_dir, "session"
                )
            meta.update(_agent_meta(self.path))
            title = title or meta.get("description")
        sessions = [
            ImportedSession(
                id=sid if i == 0 else self.id("branch", ln.keys[0]),
                source=f"{FORMAT}: {self.path}",
                title=title,
                model=model,
                provider="anthropic",
                metadata=meta if i == 0 else {"source": FORMAT, "branch_of": sid},
                created_at=first_ts,
                last_activity_at=last_ts,
                updated_at=last_ts,
                messages=_LineMessages(reader, i),
                parent_id=None
                if ln.parent is None
                else (sid if ln.parent == 0 else self.id("branch", lines_[ln.parent].keys[0])),
                fork_seq=ln.fork_seq,
            )
            for i, ln in enumerate(lines_)
        ]
        main = sessions[0]
        main.branches = sessions[1:]
        with self.path.open("rb") as f:
            main.events = list(reader.events("", f))  # records before the first message
        main.todos = todos
        main.repo_binding = binding
        main.summary = summary
        main.skipped = idx.skipped
        main.skipped.extend(repair_note(main.source, self.repairs))
        return main


def _kind(v: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(v), type(v).__name__
    )


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _is_prompt(rec: dict[str, Any], msg: dict[str, Any]) -> bool:
    if rec.get("type") != "user":
        return False
    content = msg.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    return any(b.get("type") == "text" for b in _blocks(content))


def _todos(value: Any, message_id: str, where: str) -> list[ImportedTodo]:
    items = value.get("todos") if isinstance(value, dict) else None
    if not isinstance(items, list):
        return []
    out: list[ImportedTodo] = []
    for t in items:
        if not isinstance(t, dict):
            continue
        form = t.get("activeForm")
        out.append(
            ImportedTodo(
                content=clean(str(t.get("content", ""))),
                status=str(t.get("status", "pending")),
                position=len(out),
                message_id=message_id,
                active_form=clean(form) if isinstance(form, str) and form else None,
                where=f"{where} todos[{len(out)}]",
            )
        )
    return out


def _agent_meta(path: Path) -> dict[str, Any]:
    meta = path.with_suffix(".meta.json")
    try:
        got = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(got, dict):
        return {}
    out = {}
    for src, dst in (
        ("agentType", "agent_type"),
        ("description", "description"),
        ("toolUseId", "tool_use_id"),
    ):
        if isinstance(got.get(src), str):
            out[dst] = clean(got[src])
    return out


class _LineMessages:
    """The messages of one line, read from the file on each iteration."""

    def __init__(self, reader: _Reader, line: int) -> None:
        self.reader, self.line = reader, line

    def __iter__(self) -> Iterator[ImportedMessage]:
        return self.reader.messages(self.line)


@dataclass
class _Call:
    message_id: str
    name: str
    input: Any
    at: datetime | None


class _Reader:
    """Pass 2: turns indexed records into messages and events."""

    def __init__(self, t: _Transcript, idx: _Index, lines: list[list[str]]) -> None:
        self.t, self.idx, self.lines = t, idx, lines
        self.calls: dict[str, _Call] = {}
        self.last_api_id: str | None = None

    def events(self, anchor: str, f: IO[bytes]) -> Iterator[ImportedEvent]:
        for lineno, offset in self.idx.events.get(anchor, ()):
            where = f"{self.t.name} line {lineno}"
            rec = read_line_at(f, offset, where)
            if not isinstance(rec, dict):
                raise SourceError(where, "a record must be a JSON object")
            kind = str(rec.get("type") or "record")
            sub = rec.get("subtype")
            if isinstance(sub, str):
                kind = f"{kind}.{sub}"
            yield ImportedEvent(
                id=self.t.id("record", str(lineno)),
                kind=f"claude.{kind}"[:100],
                payload=clean(rec, self.t.repairs),
                message_id=None if not anchor else self.t.id(anchor),
                created_at=timestamp(rec.get("timestamp")),
            )

    def messages(self, line: int) -> Iterator[ImportedMessage]:
        if line == 0:
            self.calls.clear()
        self.last_api_id = None
        held: ImportedMessage | None = None
        with self.t.path.open("rb") as f:
            for uid in self.lines[line]:
                node = self.idx.nodes[uid]
                where = f"{self.t.name} line {node.line}"
                rec = read_line_at(f, node.offset, where)
                msg = self._message(uid, rec, where)
                msg.events.extend(self.events(uid, f))
                if held is not None:
                    yield held
                held = msg
        if held is not None:
            if line == len(self.lines) - 1:
                # Calls that never got a result: recorded as started, not lost.
                for call_id, c in self.calls.items():
                    held.tool_events.append(self._tool_event(call_id, c, "started", None, None))
                self.calls.clear()
            yield held

    def _tool_event(
        self,
        call_id: str,
        c: _Call,
        status: str,
        output: Any,
        done: datetime | None,
        error: str | None = None,
    ) -> ImportedToolEvent:
        return ImportedToolEvent(
            id=self.t.id("tool", call_id),
            name=(c.name or "tool")[:200],
            status=status,
            message_id=c.message_id,
            call_id=call_id[:128],
            input=c.input,
            output=output,
            error=error,
            started_at=c.at,
            finished_at=done,
        )

    def _message(self, uid: str, rec: dict[str, Any], where: str) -> ImportedMessage:
        r = self.t.repairs
        msg = rec.get("message")
        if not isinstance(msg, dict):
            raise SourceError(where, "message must be an object")
        mid = self.t.id(uid)
        at = timestamp(rec.get("timestamp"))
        content = msg.get("content")
        blocks = _blocks(content)
        if content is not None and not isinstance(content, str | list):
            raise SourceError(
                where, f"message.content must be text or a list, not {_kind(content)}"
            )
        meta: dict[str, Any] = {"uuid": uid}
        if rec.get("parentUuid") is not None:
            meta["parent_uuid"] = rec["parentUuid"]
        for src, dst in (
            ("isMeta", "is_meta"),
            ("isCompactSummary", "is_compact_summary"),
            ("isSidechain", "is_sidechain"),
            ("agentId", "agent_id"),
        ):
            if rec.get(src):
                meta[dst] = rec[src]
        text = (
            content
            if isinstance(content, str)
            else "\n\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        )
        role = "assistant" if rec.get("type") == "assistant" else "user"
        out = ImportedMessage(
            id=mid,
            role=role,
            content="",
            created_at=at,
            where=where,
            parts=clean(content, r) if isinstance(content, list) else None,
        )
        if role == "assistant":
            api_id = msg.get("id") if isinstance(msg.get("id"), str) else None
            meta["message_id"] = api_id
            if isinstance(rec.get("requestId"), str):
                meta["request_id"] = rec["requestId"]
            if msg.get("stop_reason") is not None:
                meta["stop_reason"] = msg["stop_reason"]
            out.model = msg["model"][:200] if isinstance(msg.get("model"), str) else None
            usage = msg.get("usage")
            # One API response is split over several lines, each repeating its
            # usage: count it once, on the first line of the response.
            if isinstance(usage, dict) and (api_id is None or api_id != self.last_api_id):
                meta["usage"] = usage
                out.input_tokens = _tokens(usage.get("input_tokens"))
                out.output_tokens = _tokens(usage.get("output_tokens"))
            self.last_api_id = api_id
            calls = [b for b in blocks if b.get("type") == "tool_use"]
            if calls:
                out.tool_calls = clean(calls, r)
            for b in calls:
                call_id = b.get("id")
                if isinstance(call_id, str) and call_id:
                    self.calls[call_id] = _Call(
                        mid, str(b.get("name") or "tool"), clean(b.get("input"), r), at
                    )
        else:
            self.last_api_id = None
            results = [b for b in blocks if b.get("type") == "tool_result"]
            if results and len(results) == len(blocks):
                role = out.role = "tool"
                text = "\n\n".join(_result_text(b.get("content")) for b in results)
            extra = rec.get("toolUseResult")
            for b in results:
                call_id = b.get("tool_use_id")
                if not isinstance(call_id, str) or call_id not in self.calls:
                    continue
                call = self.calls.pop(call_id)
                output = {"content": b.get("content")}
                if extra is not None:
                    output["result"] = extra
                failed = bool(b.get("is_error"))
                out.tool_events.append(
                    self._tool_event(
                        call_id,
                        call,
                        "failed" if failed else "succeeded",
                        clean(output, r),
                        at,
                        clean(_result_text(b.get("content")), r) if failed else None,
                    )
                )
        out.content = clean(text, r)
        out.metadata = clean(meta, r)
        return out


def _tokens(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 else None


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return "" if content is None else json.dumps(content)
