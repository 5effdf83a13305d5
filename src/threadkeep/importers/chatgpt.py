"""ChatGPT data export: ``conversations.json`` (a JSON array of conversations,
read one conversation at a time).

Mapping: a conversation -> a session; its ``mapping`` node tree -> messages:
the path from the root to ``current_node`` is the main line, every other
path a branch forked where it leaves (edits, regenerations). Nodes without a
message (the root) are skipped through. An assistant node whose
``recipient`` is a tool (``python``, ``browser``...) is a tool call; its
child ``tool`` node with that author name is the result: one tool event.
Every message keeps its whole ``content`` object in ``parts`` and its
``metadata``, so nothing of the source is dropped; hidden nodes are kept and
marked ``hidden``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
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

FORMAT = "chatgpt"
ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def looks_like(path: Path) -> bool:
    if path.is_dir():
        path = path / "conversations.json"
    if not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(64 * 1024)
    return head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"[") and (
        b'"mapping"' in head or b'"current_node"' in head
    )


def read(path: Path, owner_id: str) -> Iterator[SourceItem]:
    if path.is_dir():
        path = path / "conversations.json"
    try:
        for index, conv in json_array(path):
            where = f"{path.name} conversation {index}"
            try:
                yield _conversation(conv, owner_id, where, path)
            except SourceError as exc:
                yield Failed(exc.where, exc.reason)
    except SourceError as exc:
        yield Failed(exc.where, exc.reason)


def _text(content: dict[str, Any]) -> str:
    kind = content.get("content_type")
    if isinstance(content.get("parts"), list):
        out = []
        for p in content["parts"]:
            if isinstance(p, str):
                out.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                out.append(p["text"])
        return "\n".join(out)
    if kind == "thoughts" and isinstance(content.get("thoughts"), list):
        return "\n\n".join(
            str(t.get("content") or t.get("summary") or "")
            for t in content["thoughts"]
            if isinstance(t, dict)
        )
    for key in ("text", "content", "result", "user_instructions"):
        if isinstance(content.get(key), str):
            return str(content[key])
    return ""


def _conversation(conv: Any, owner: str, where: str, path: Path) -> ImportedSession:
    if not isinstance(conv, dict):
        raise SourceError(where, "a conversation must be a JSON object")
    cid = conv.get("conversation_id") or conv.get("id")
    if not isinstance(cid, str) or not cid:
        raise SourceError(where, "the conversation has no id")
    where = f"{path.name} conversation {cid}"
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict):
        raise SourceError(where, "no message tree (mapping): a corrupted entry, not imported")
    repairs = Repairs()
    conv_time = timestamp(conv.get("create_time"))

    def mid(node: str) -> str:
        return derived_id(owner, FORMAT, cid, node)

    raw_parent: dict[str, str | None] = {}
    messages: dict[str, dict[str, Any]] = {}
    for key, node in mapping.items():
        if not isinstance(node, dict):
            raise SourceError(f"{where} node {key}", "a node must be an object")
        parent = node.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise SourceError(f"{where} node {key}", "parent must be a node id or null")
        raw_parent[key] = parent
        msg = node.get("message")
        if isinstance(msg, dict):
            messages[key] = msg
        elif msg is not None:
            raise SourceError(f"{where} node {key}", "message must be an object or null")

    def anchor(key: str | None) -> str | None:
        steps = 0
        while key is not None and key in raw_parent and key not in messages:
            key = raw_parent[key]
            steps += 1
            if steps > len(raw_parent):
                raise SourceError(where, f"cycle in the parent chain through node {key}")
        return key

    parents = {k: anchor(raw_parent[k]) for k in messages}
    times = {k: timestamp(m.get("create_time")) for k, m in messages.items()}
    # "Newest" is by time; nodes without one borrow their parent's.
    order = sorted(messages, key=lambda k: (_time_of(k, times, parents, conv_time), k))
    current = conv.get("current_node")
    leaf = anchor(current) if isinstance(current, str) else None
    try:
        lines, orphans = linearize(parents, order, active_leaf=leaf)
    except ValueError as exc:
        raise SourceError(f"{where} node {exc}", "cycle in the parent chain") from None

    calls: dict[str, tuple[str, ImportedMessage]] = {}  # call node -> recipient, message
    built: dict[str, ImportedMessage] = {}
    for k in order:
        built[k] = _message(k, messages[k], mid(k), f"{where} node {k}", repairs, conv_time)
    for k in order:  # tool call -> the tool result that answers it
        m = messages[k]
        recipient = m.get("recipient")
        if built[k].role == "assistant" and isinstance(recipient, str) and recipient != "all":
            calls[k] = (recipient, built[k])
    for k in order:
        p = parents[k]
        if built[k].role != "tool" or p not in calls:
            continue
        name, call = calls.pop(p)
        result = built[k]
        status = messages[k].get("status")
        built[k].tool_events.append(
            ImportedToolEvent(
                id=derived_id(owner, FORMAT, cid, "tool", p),
                name=name[:200],
                status="failed" if status not in (None, "finished_successfully") else "succeeded",
                message_id=call.id,
                call_id=p[:128],
                input={"text": call.content, "content": call.parts},
                output={"text": result.content, "content": result.parts},
                started_at=call.created_at,
                finished_at=result.created_at,
            )
        )

    sid = derived_id(owner, FORMAT, cid, "session")
    source = f"{FORMAT}: {path} {cid}"

    def line_id(i: int) -> str:
        return sid if i == 0 else derived_id(owner, FORMAT, cid, "branch", lines[i].keys[0])

    sessions = [
        ImportedSession(
            id=line_id(i),
            source=source,
            title=clean(conv.get("title"), repairs) if isinstance(conv.get("title"), str) else None,
            model=conv.get("default_model_slug")
            if isinstance(conv.get("default_model_slug"), str)
            else None,
            provider="openai",
            archived=bool(conv.get("is_archived")),
            starred=bool(conv.get("is_starred")),
            metadata={"source": FORMAT, "conversation_id": cid}
            if i == 0
            else {"source": FORMAT, "branch_of": sid},
            created_at=conv_time,
            updated_at=timestamp(conv.get("update_time")),
            last_activity_at=timestamp(conv.get("update_time")),
            messages=[built[k] for k in ln.keys],
            parent_id=None if ln.parent is None else line_id(ln.parent),
            fork_seq=ln.fork_seq,
        )
        for i, ln in enumerate(lines)
    ]
    main = sessions[0]
    main.branches = sessions[1:]
    main.skipped = [
        (f"{where} node {k}", "its parent is not in the export: imported as a branch start")
        for k in orphans
    ]
    main.skipped.extend(repair_note(source, repairs))
    return main


def _time_of(
    k: str, times: dict[str, datetime | None], parents: dict[str, str | None], dflt: Any
) -> float:
    seen = 0
    cur: str | None = k
    while cur is not None and seen <= len(times):
        t = times.get(cur)
        if t is not None:
            return t.timestamp()
        cur = parents.get(cur)
        seen += 1
    return dflt.timestamp() if isinstance(dflt, datetime) else 0.0


def _message(
    key: str, m: dict[str, Any], mid: str, where: str, repairs: Repairs, dflt: datetime | None
) -> ImportedMessage:
    author = obj(m.get("author"))
    role = ROLES.get(str(author.get("role")))
    if role is None:
        raise SourceError(where, f"unknown author role {author.get('role')!r}")
    content = obj(m.get("content"))
    meta: dict[str, Any] = {"node_id": key}
    for name in ("status", "end_turn", "weight", "recipient", "channel"):
        if m.get(name) is not None:
            meta[name] = m[name]
    if isinstance(author.get("name"), str):
        meta["author_name"] = author["name"]
    raw_meta = obj(m.get("metadata"))
    if raw_meta:
        meta["chatgpt"] = raw_meta
    hidden = (
        raw_meta.get("is_visually_hidden_from_conversation")
        or m.get("weight") == 0.0
        or content.get("content_type") == "user_editable_context"
    )
    if hidden:
        meta["hidden"] = True
    model = raw_meta.get("model_slug")
    return ImportedMessage(
        id=mid,
        role=role,
        content=clean(_text(content), repairs),
        parts=[clean(content, repairs)] if content else None,
        model=model[:200] if isinstance(model, str) else None,
        metadata=clean(meta, repairs),
        created_at=timestamp(m.get("create_time")) or dflt,
        status="complete" if m.get("status") in (None, "finished_successfully") else "incomplete",
        where=where,
    )
