"""Legacy JSON snapshots (a directory of ``chat-*.json`` files) and browser
localStorage dumps, which hold the same chat objects under keys.

The accepted chat shape (docs/migrating.md, "Legacy JSON snapshots"); every
field but ``messages`` is optional, and the aliases in brackets are accepted:

    {
      "id": "42" [chatId, chat_id, uuid],  (a number is fine; default: the file name)
      "title": "Trip plans" [name],
      "created_at" [createdAt, created, timestamp], "updated_at" [updatedAt, updated],
      "model", "provider", "tags": [...], "starred", "pinned", "archived",
      "metadata" [meta]: {...},
      "messages" [history, turns]: [
        {"id", "role" (user/assistant/system/developer/tool, or human, bot, ai,
         model, function), "content" [text, message] (text, or a list of parts:
         strings or {"type": "text", "text": ...}), "created_at" [timestamp, ts,
         time, createdAt], "model", "tool_calls", "input_tokens",
         "output_tokens", "metadata", "tool_events": [tool event, ...]}
      ],
      "tool_events": [{"id", "message_id" (a message "id" above), "name",
                       "input", "output", "status", "error", "started_at",
                       "finished_at"}],
      "todos": [{"content", "status" (pending/in_progress/completed),
                 "active_form" [activeForm]}],
      "summary": "text"
    }

A file may hold one chat or a list of chats. Times are ISO-8601 or epoch
seconds / milliseconds. Unknown fields go into the session's or message's
``metadata`` under ``legacy``, so nothing is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from threadkeep.importers._common import (
    Failed,
    Repairs,
    SkippedItem,
    SourceError,
    SourceItem,
    clean,
    repair_note,
    timestamp,
)
from threadkeep.model.imports import (
    ImportedMessage,
    ImportedSession,
    ImportedTodo,
    ImportedToolEvent,
    derived_id,
)

ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "bot": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "system": "system",
    "developer": "developer",
    "tool": "tool",
    "function": "tool",
}
_SESSION_KEYS = {
    "id",
    "chatId",
    "chat_id",
    "uuid",
    "title",
    "name",
    "created_at",
    "createdAt",
    "created",
    "timestamp",
    "updated_at",
    "updatedAt",
    "updated",
    "model",
    "provider",
    "tags",
    "starred",
    "pinned",
    "archived",
    "metadata",
    "meta",
    "messages",
    "history",
    "turns",
    "tool_events",
    "todos",
}
_MESSAGE_KEYS = {
    "id",
    "role",
    "content",
    "text",
    "message",
    "created_at",
    "timestamp",
    "ts",
    "time",
    "createdAt",
    "model",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "metadata",
    "tool_events",
}


def first(d: dict[str, Any], *names: str) -> Any:
    for n in names:
        if d.get(n) is not None:
            return d[n]
    return None


def is_chat(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(
        first(value, "messages", "history", "turns"), list
    )


# --- legacy JSON snapshot files ----------------------------------------------


FORMAT = "legacy-json"


def files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.glob("chat-*.json") if p.is_file())


def looks_like(path: Path) -> bool:
    return bool(path.is_dir() and files(path)) or (
        path.is_file()
        and path.name.startswith("chat-")
        and path.suffix == ".json"
        and not _is_array_of_rows(path)
    )


def _is_array_of_rows(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \r\n\t")
    return head.startswith(b"[") and b'"chat"' in head


def read(path: Path, owner_id: str) -> Iterator[SourceItem]:
    for p in files(path):
        try:
            data = json.loads(p.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            yield Failed(p.name, f"not UTF-8 (byte at {exc.start})")
            continue
        except (ValueError, RecursionError) as exc:
            yield Failed(p.name, f"not valid JSON ({exc})")
            continue
        except OSError as exc:
            yield Failed(p.name, f"cannot read: {exc.strerror or exc}")
            continue
        chats = data if isinstance(data, list) else [data]
        for i, chat in enumerate(chats):
            where = p.name if len(chats) == 1 and not isinstance(data, list) else f"{p.name}[{i}]"
            default = (
                p.stem.removeprefix("chat-") if not isinstance(data, list) else f"{p.stem}-{i}"
            )
            try:
                yield chat_session(chat, owner_id, FORMAT, where, default, str(p))
            except SourceError as exc:
                yield Failed(exc.where, exc.reason)


def chat_session(
    chat: Any,
    owner: str,
    fmt: str,
    where: str,
    default_id: str,
    source: str,
    extra_messages: list[Any] | None = None,
) -> ImportedSession:
    """One legacy chat object -> one session (see the module doc for the shape)."""
    if not isinstance(chat, dict):
        raise SourceError(where, "a chat must be a JSON object")
    raw_id = first(chat, "id", "chatId", "chat_id", "uuid")
    key = str(raw_id) if isinstance(raw_id, str | int) and str(raw_id) else default_id
    messages = first(chat, "messages", "history", "turns")
    if messages is None:
        messages = extra_messages if extra_messages is not None else None
    if not isinstance(messages, list):
        raise SourceError(where, "no 'messages' list")
    repairs = Repairs()

    def mid(local: str) -> str:
        return derived_id(owner, fmt, key, "message", local)

    out_msgs: list[ImportedMessage] = []
    local_ids: dict[str, str] = {}
    for i, m in enumerate(messages):
        w = f"{where} messages[{i}]"
        if not isinstance(m, dict):
            raise SourceError(w, "a message must be an object")
        local = first(m, "id")
        local_key = str(local) if isinstance(local, str | int) else f"#{i}"
        if local_key in local_ids:
            raise SourceError(w, f"message id {local_key!r} appears twice")
        local_ids[local_key] = mid(local_key)
        out_msgs.append(_message(m, local_ids[local_key], w, repairs, owner, fmt, key, local_ids))
    tools = chat.get("tool_events")
    if tools is not None and not isinstance(tools, list):
        raise SourceError(where, "'tool_events' must be a list")
    by_id = {m.id: m for m in out_msgs}
    loose: list[ImportedToolEvent] = []
    for i, t in enumerate(tools or []):
        ev = _tool(t, f"{where} tool_events[{i}]", repairs, owner, fmt, key, local_ids)
        target = by_id.get(ev.message_id or "")
        (target.tool_events if target is not None else loose).append(ev)
    meta = first(chat, "metadata", "meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    rest = {k: v for k, v in chat.items() if k not in _SESSION_KEYS}
    if isinstance(rest.get("summary"), str) and rest["summary"].strip():
        del rest["summary"]  # stored as the session's summary (below)
    if rest:
        meta["legacy"] = rest
    meta.setdefault("source", fmt)
    meta.setdefault("source_id", key)
    tags = chat.get("tags")
    title = first(chat, "title", "name")
    s = ImportedSession(
        id=derived_id(owner, fmt, key, "session"),
        source=f"{fmt}: {source} {key}",
        title=clean(title, repairs)[:1000] if isinstance(title, str) else None,
        model=chat["model"][:200] if isinstance(chat.get("model"), str) else None,
        provider=chat["provider"][:200] if isinstance(chat.get("provider"), str) else None,
        tags=list(dict.fromkeys(clean(t)[:100] for t in tags if isinstance(t, str) and t))[:100]
        if isinstance(tags, list)
        else [],
        starred=bool(chat.get("starred")),
        pinned=bool(chat.get("pinned")),
        archived=bool(chat.get("archived")),
        metadata=clean(meta, repairs),
        created_at=timestamp(first(chat, "created_at", "createdAt", "created", "timestamp")),
        updated_at=timestamp(first(chat, "updated_at", "updatedAt", "updated")),
        messages=out_msgs,
        tool_events=loose,
    )
    s.last_activity_at = s.updated_at
    todos = chat.get("todos")
    if isinstance(todos, list):
        for i, t in enumerate(todos):
            if not isinstance(t, dict):
                continue
            form = first(t, "active_form", "activeForm")
            s.todos.append(
                ImportedTodo(
                    clean(str(t.get("content", ""))),
                    str(t.get("status", "pending")),
                    len(s.todos),
                    active_form=clean(form) if isinstance(form, str) and form else None,
                    where=f"{where} todos[{i}]",
                )
            )
    summary = chat.get("summary")
    if isinstance(summary, str) and summary.strip():
        s.summary = clean(summary)
    s.skipped = repair_note(s.source, repairs)
    return s


def _content(value: Any, where: str) -> tuple[str, list[Any] | None]:
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    if isinstance(value, list):
        texts = []
        for p in value:
            if isinstance(p, str):
                texts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                texts.append(p["text"])
        return "\n".join(texts), value
    if isinstance(value, dict):
        return str(value.get("text") or ""), [value]
    raise SourceError(where, f"content must be text or a list of parts, not {type(value).__name__}")


def _message(
    m: dict[str, Any],
    mid: str,
    where: str,
    repairs: Repairs,
    owner: str,
    fmt: str,
    key: str,
    local_ids: dict[str, str],
) -> ImportedMessage:
    role_raw = m.get("role")
    role = ROLES.get(str(role_raw).lower()) if isinstance(role_raw, str) else None
    if role is None:
        raise SourceError(where, f"unknown role {role_raw!r} (use {', '.join(sorted(ROLES))})")
    text, parts = _content(first(m, "content", "text", "message"), where)
    meta = m.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    rest = {k: v for k, v in m.items() if k not in _MESSAGE_KEYS}
    if rest:
        meta["legacy"] = rest
    if m.get("id") is not None:
        meta.setdefault("source_id", m["id"])
    out = ImportedMessage(
        id=mid,
        role=role,
        content=clean(text, repairs),
        parts=clean(parts, repairs),
        tool_calls=clean(m["tool_calls"], repairs)
        if isinstance(m.get("tool_calls"), list)
        else None,
        model=m["model"][:200] if isinstance(m.get("model"), str) else None,
        input_tokens=_int(m.get("input_tokens")),
        output_tokens=_int(m.get("output_tokens")),
        metadata=clean(meta, repairs),
        created_at=timestamp(first(m, "created_at", "timestamp", "ts", "time", "createdAt")),
        where=where,
    )
    for i, t in enumerate(m.get("tool_events") or []):
        ev = _tool(t, f"{where}.tool_events[{i}]", repairs, owner, fmt, key, local_ids)
        ev.message_id = ev.message_id or mid
        out.tool_events.append(ev)
    return out


def _tool(
    t: Any,
    where: str,
    repairs: Repairs,
    owner: str,
    fmt: str,
    key: str,
    local_ids: dict[str, str],
) -> ImportedToolEvent:
    if not isinstance(t, dict):
        raise SourceError(where, "a tool event must be an object")
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise SourceError(where, "a tool event needs a 'name'")
    local = t.get("id")
    link = t.get("message_id")
    message_id = None
    if link is not None:
        message_id = local_ids.get(str(link))
        if message_id is None:
            raise SourceError(where, f"message_id {link!r} is not a message of this chat")
    status = str(t.get("status") or "succeeded")
    error = t.get("error")
    return ImportedToolEvent(
        id=derived_id(owner, fmt, key, "tool", str(local) if local is not None else where),
        name=clean(name)[:200],
        status=status,
        message_id=message_id,
        call_id=str(t["call_id"])[:128] if t.get("call_id") is not None else None,
        input=clean(t.get("input"), repairs),
        output=clean(t.get("output"), repairs),
        error=clean(error, repairs) if isinstance(error, str) else None,
        started_at=timestamp(t.get("started_at")),
        finished_at=timestamp(t.get("finished_at")),
    )


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 else None


# --- localStorage dumps ---------------------------------------------------------

LS_FORMAT = "localstorage"
# A domain key names chats, sessions or conversations (optionally after an
# app prefix, optionally followed by an id): "chats", "app:chat:42",
# "conversation-7", "messages:42". Anything else is a UI preference.
_DOMAIN = re.compile(
    r"^(?:(?P<prefix>.*?)[:._/-])?"
    r"(?P<kind>chats?|sessions?|conversations?|threads?|messages)"
    r"(?:[:._/-](?P<id>.+))?$",
    re.IGNORECASE,
)


def looks_like_local_storage(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() not in (".json", ""):
        return False
    try:
        with path.open("rb") as f:  # at most 64 MiB read, whatever the file's size
            data = json.loads(f.read(64 * 1024 * 1024).decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, str) for v in data.values())
        and not is_chat(data)
    )


def read_local_storage(path: Path, owner_id: str) -> Iterator[SourceItem]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        yield Failed(path.name, f"not a JSON object of key -> string ({exc})")
        return
    if not isinstance(data, dict):
        yield Failed(path.name, "a localStorage dump is a JSON object of key -> string")
        return
    chats: dict[str, tuple[str, Any]] = {}  # id -> (key, chat object)
    loose: dict[str, tuple[str, list[Any]]] = {}  # id -> (key, messages)
    for k, raw in data.items():
        where = f"{path.name} key {k!r}"
        match = _DOMAIN.match(k)
        if match is None:
            yield SkippedItem(where, "UI preference (not chat data): not imported")
            continue
        if not isinstance(raw, str):
            yield Failed(where, "a localStorage value must be a string")
            continue
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            yield SkippedItem(
                where, "looks like a chat key but its value is not JSON: not imported"
            )
            continue
        kind = match.group("kind").lower()
        cid = match.group("id")
        if kind == "messages" and cid and isinstance(value, list):
            loose[cid] = (k, value)
        elif cid and is_chat(value):
            chats[cid] = (k, value)
        elif isinstance(value, list) and value and all(is_chat(c) for c in value):
            for i, c in enumerate(value):
                chats[str(first(c, "id", "chatId", "chat_id", "uuid") or f"{k}[{i}]")] = (k, c)
        elif isinstance(value, dict) and value and all(is_chat(c) for c in value.values()):
            for ck, c in value.items():
                chats[str(first(c, "id", "chatId", "chat_id", "uuid") or ck)] = (k, c)
        elif cid and isinstance(value, dict):
            chats.setdefault(cid, (k, value))  # metadata only: messages may be under messages:<id>
        else:
            yield SkippedItem(where, "names chats but holds no chat or message list: not imported")
    for cid, (k, msgs) in loose.items():
        if cid not in chats:
            chats[cid] = (k, {"id": cid, "messages": msgs})
    for cid, (k, chat) in chats.items():
        where = f"{path.name} key {k!r}"
        extra = loose.get(cid, (k, None))[1]
        if isinstance(chat, dict) and first(chat, "messages", "history", "turns") is None:
            if extra is None:
                yield SkippedItem(where, "chat metadata without messages: not imported")
                continue
        try:
            yield chat_session(chat, owner_id, LS_FORMAT, where, cid, str(path), extra)
        except SourceError as exc:
            yield Failed(exc.where, exc.reason)
