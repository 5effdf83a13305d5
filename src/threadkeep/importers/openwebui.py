"""Open WebUI chat export: ``chat-export-<ms>.json``, a JSON array of chat rows
(read one chat at a time).

Mapping: a chat -> a session (title, tags, pinned, archived); its
``history.messages`` tree -> messages, the path to ``currentId`` as the main
line and every other path (regenerations, edits, the parallel answers of a
multi-model chat) as a branch. A chat converted from ChatGPT has
``parentId`` and ``childrenIds`` disagreeing: a child claimed by exactly
one parent's ``childrenIds`` takes that parent, else its ``parentId``.
Very old chats with only the flat ``chat.messages`` list become one line.
Tool calls come from ``output[]`` (function_call / function_call_output,
linked by ``call_id``) or, in older messages, from the ``<details
type="tool_calls">`` blocks inside the content; the content itself is kept
as it was. ``done: false`` -> status ``incomplete``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threadkeep.importers._common import (
    Failed,
    Repairs,
    SourceError,
    SourceItem,
    clean,
    json_array,
    linearize,
    obj,
    repair_note,
    timestamp,
)
from threadkeep.model.imports import (
    ImportedMessage,
    ImportedSession,
    ImportedToolEvent,
    derived_id,
)

FORMAT = "open-webui"
ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_DETAILS = re.compile(r"<details\s+([^>]*\btype=[\"']tool_calls[\"'][^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r"(\w+)=(?:\"([^\"]*)\"|'([^']*)')")


def looks_like(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(64 * 1024)
    return (
        head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"[")
        and b'"chat"' in head
        and (b'"history"' in head or b'"messages"' in head)
    )


def read(path: Path, owner_id: str) -> Iterator[SourceItem]:
    try:
        for index, row in json_array(path):
            where = f"{path.name} chat {index}"
            try:
                yield _chat(row, owner_id, where, path)
            except SourceError as exc:
                yield Failed(exc.where, exc.reason)
    except SourceError as exc:
        yield Failed(exc.where, exc.reason)


def _chat(row: Any, owner: str, where: str, path: Path) -> ImportedSession:
    if not isinstance(row, dict) or not isinstance(row.get("chat"), dict):
        raise SourceError(where, "a chat row must be an object with a 'chat' object")
    chat = row["chat"]
    cid = row.get("id") or chat.get("id")
    if not isinstance(cid, str) or not cid:
        raise SourceError(where, "the chat has no id")
    where = f"{path.name} chat {cid}"
    repairs = Repairs()
    history = obj(chat.get("history"))
    tree = history.get("messages")
    flat = chat.get("messages") if isinstance(chat.get("messages"), list) else []
    msgs: dict[str, dict[str, Any]] = {}
    parents: dict[str, str | None] = {}
    if isinstance(tree, dict) and tree:
        for key, m in tree.items():
            if not isinstance(m, dict):
                raise SourceError(f"{where} message {key}", "a message must be an object")
            msgs[key] = m
        claims: dict[str, list[str]] = {}
        for key, m in msgs.items():
            kids = m.get("childrenIds")
            for c in kids if isinstance(kids, list) else []:
                if isinstance(c, str) and c in msgs:
                    claims.setdefault(c, []).append(key)
        for key, m in msgs.items():
            claimed = claims.get(key, [])
            pid = m.get("parentId")
            if pid is not None and not isinstance(pid, str):
                raise SourceError(f"{where} message {key}", "parentId must be a string or null")
            parents[key] = claimed[0] if len(claimed) == 1 else pid
    else:
        prev: str | None = None
        for i, m in enumerate(flat):
            if not isinstance(m, dict):
                raise SourceError(f"{where} message {i}", "a message must be an object")
            key = str(m.get("id") or f"#{i}")
            msgs[key] = m
            parents[key] = prev
            prev = key
    chat_time = timestamp(row.get("created_at")) or timestamp(chat.get("timestamp"))
    place = {k: i for i, k in enumerate(msgs)}
    order = sorted(
        msgs,
        key=lambda k: (
            (timestamp(msgs[k].get("timestamp")) or chat_time or _EPOCH).timestamp(),
            place[k],
        ),
    )
    current = history.get("currentId")
    if not isinstance(current, str) or current not in msgs:
        last = flat[-1] if flat and isinstance(flat[-1], dict) else {}
        current = last.get("id") if last.get("id") in msgs else None
    try:
        lines, orphans = linearize(parents, order, active_leaf=current)
    except ValueError as exc:
        raise SourceError(f"{where} message {exc}", "cycle in the parent chain") from None

    def mid(key: str) -> str:
        return derived_id(owner, FORMAT, cid, key)

    built = {
        k: _message(k, msgs[k], mid(k), f"{where} message {k}", repairs, chat_time, owner, cid)
        for k in order
    }
    sid = derived_id(owner, FORMAT, cid, "session")
    source = f"{FORMAT}: {path} {cid}"

    def line_id(i: int) -> str:
        return sid if i == 0 else derived_id(owner, FORMAT, cid, "branch", lines[i].keys[0])

    meta_tags = row.get("meta", {}).get("tags") if isinstance(row.get("meta"), dict) else None
    tags = [
        clean(t)[:100] for t in (meta_tags or chat.get("tags") or []) if isinstance(t, str) and t
    ]
    models = chat.get("models") if isinstance(chat.get("models"), list) else []
    title = row.get("title") or chat.get("title")
    sessions = [
        ImportedSession(
            id=line_id(i),
            source=source,
            title=clean(title, repairs)[:1000] if isinstance(title, str) else None,
            model=models[0][:200] if models and isinstance(models[0], str) else None,
            provider="open-webui",
            tags=list(dict.fromkeys(tags))[:100],
            pinned=bool(row.get("pinned")),
            archived=bool(row.get("archived")),
            metadata={"source": FORMAT, "chat_id": cid, "models": clean(models, repairs)}
            if i == 0
            else {"source": FORMAT, "branch_of": sid},
            created_at=chat_time,
            updated_at=timestamp(row.get("updated_at")),
            last_activity_at=timestamp(row.get("updated_at")),
            messages=[built[k] for k in ln.keys],
            parent_id=None if ln.parent is None else line_id(ln.parent),
            fork_seq=ln.fork_seq,
        )
        for i, ln in enumerate(lines)
    ]
    main = sessions[0]
    main.branches = sessions[1:]
    main.uploads = [f for f in chat.get("files") or [] if isinstance(f, dict)]
    main.skipped = [
        (f"{where} message {k}", "its parent is not in the export: imported as a branch start")
        for k in orphans
    ]
    main.skipped.extend(repair_note(source, repairs))
    return main


_EPOCH = datetime.fromtimestamp(0, UTC)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(
    key: str,
    m: dict[str, Any],
    mid: str,
    where: str,
    repairs: Repairs,
    dflt: Any,
    owner: str,
    cid: str,
) -> ImportedMessage:
    role = ROLES.get(str(m.get("role")))
    if role is None:
        raise SourceError(where, f"unknown role {m.get('role')!r}")
    content = m.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise SourceError(where, "content must be text")
    meta = {
        k: v
        for k, v in m.items()
        if k not in ("content", "role", "model", "timestamp", "childrenIds", "output")
    }
    at = timestamp(m.get("timestamp")) or dflt
    usage = obj(m.get("usage"))
    out = ImportedMessage(
        id=mid,
        role=role,
        content=clean(content, repairs),
        parts=clean(m["output"], repairs) if isinstance(m.get("output"), list) else None,
        model=m["model"][:200] if isinstance(m.get("model"), str) else None,
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        metadata=clean(meta, repairs),
        created_at=at,
        status="incomplete" if m.get("done") is False else "complete",
        where=where,
    )
    calls: dict[str, ImportedToolEvent] = {}
    for item in m.get("output") or []:
        if not isinstance(item, dict) or not isinstance(item.get("call_id"), str):
            continue
        call_id = item["call_id"]
        ev = calls.setdefault(call_id, _event(owner, cid, mid, call_id, at))
        if item.get("type") == "function_call":
            ev.name = str(item.get("name") or "tool")[:200]
            args = item.get("arguments")
            ev.input = clean(_json_or_text(args) if isinstance(args, str) else args, repairs)
        elif item.get("type") == "function_call_output":
            ev.output = clean(item.get("output"), repairs)
    for match in _DETAILS.finditer(content):
        attrs = {a: html.unescape(b or c) for a, b, c in _ATTR.findall(match.group(1))}
        call_id = attrs.get("id") or f"details-{match.start()}"
        if call_id in calls:
            continue
        ev = _event(owner, cid, mid, call_id, at)
        ev.name = (attrs.get("name") or "tool")[:200]
        ev.input = clean(_json_or_text(attrs.get("arguments", "")), repairs)
        ev.output = clean(_json_or_text(attrs.get("result", "")), repairs)
        if attrs.get("done") == "false":
            ev.status = "started"
            ev.finished_at = None
        calls[call_id] = ev
    out.tool_events = list(calls.values())
    return out


def _event(owner: str, cid: str, mid: str, call_id: str, at: Any) -> ImportedToolEvent:
    return ImportedToolEvent(
        id=derived_id(owner, FORMAT, cid, "tool", mid, call_id),
        name="tool",
        status="succeeded",
        message_id=mid,
        call_id=call_id[:128],
        started_at=at,
        finished_at=at,
    )


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 else None
