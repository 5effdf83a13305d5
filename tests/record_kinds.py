"""The kinds of the session record (todos, misalignments, ... analytics
events), each with how the library creates, reads, updates and deletes it: one
table that the record's own tests and the change-log replay property share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from threadkeep import (
    Actor,
    InvalidInput,
    InvalidText,
    MessageNotFound,
    Threadkeep,
    ThreadkeepError,
    TooLarge,
    ToolEventNotFound,
)

BIG = "x" * 100_001  # over every free-text field's limit


@dataclass
class Ctx:
    """A user with a live session holding a message and a tool event."""

    tk: Threadkeep
    actor: Actor
    sid: str
    message_id: str
    tool_event_id: str


def make_ctx(tk: Threadkeep) -> Ctx:
    actor = Actor(tk.create_user("ada").value.id)
    s = tk.create_session(actor, title="record").value
    m = tk.append_message(actor, s.id, {"role": "user", "content": "hi"}).value
    ev = tk.start_tool_event(actor, s.id, {"name": "edit", "message_id": m.id}).value
    return Ctx(tk, actor, s.id, m.id, ev.id)


Make = Callable[[Ctx, dict[str, Any]], Any]


@dataclass(frozen=True)
class Kind:
    """How to drive one kind of row through the library."""

    table: str
    create: Make  # (ctx, extra fields) -> Committed[row]
    fields: Callable[[Ctx], dict[str, Any]]  # a valid new row
    update: dict[str, Any]  # a valid change
    get: Callable[[Ctx, str], Any]
    list: Callable[[Ctx], list[Any]]
    patch: Callable[[Ctx, str, dict[str, Any]], Any]
    delete: Callable[[Ctx, str], Any]
    # Bad new rows: (case name, fields to merge into a valid row, error).
    bad: list[tuple[str, dict[str, Any], type[ThreadkeepError]]] = field(default_factory=list)


def _op(name: str) -> Callable[..., Any]:
    """ctx.tk.<name>(ctx.actor, ctx.sid, *args)."""
    return lambda c, *a: getattr(c.tk, name)(c.actor, c.sid, *a)


def kind(
    table: str, create: str, noun: str, fields: Callable[[Ctx], dict[str, Any]], **kw: Any
) -> Kind:
    def make(c: Ctx, extra: dict[str, Any]) -> Any:
        return getattr(c.tk, create)(c.actor, c.sid, {**fields(c), **extra})

    return Kind(
        table=table,
        create=make,
        fields=fields,
        get=_op(f"get_{noun}"),
        list=_op(f"list_{noun}s"),
        patch=_op(f"update_{noun}"),
        delete=_op(f"delete_{noun}"),
        **kw,
    )


NUL = "bad\x00text"
KINDS = [
    kind(
        "todos",
        "add_todo",
        "todo",
        fields=lambda c: {"content": "write tests", "active_form": "Writing tests"},
        update={"status": "completed"},
        bad=[
            ("enum", {"status": "done"}, InvalidInput),
            ("oversized", {"content": "x" * 10_001}, InvalidInput),
            ("nul", {"content": NUL}, InvalidText),
            ("empty", {"content": ""}, InvalidInput),
        ],
    ),
    kind(
        "misalignments",
        "record_misalignment",
        "misalignment",
        fields=lambda c: {
            "kind": "scope_creep",
            "severity": "high",
            "description": "edited files it was told to leave",
            "evidence": [
                {"kind": "message", "id": c.message_id},
                {"kind": "tool_event", "id": c.tool_event_id},
            ],
            "detected_by": "judge-1",
        },
        update={"resolution": "reverted"},
        bad=[
            ("enum", {"severity": "apocalyptic"}, InvalidInput),
            ("evidence_enum", {"evidence": [{"kind": "file", "id": "x"}]}, InvalidInput),
            ("oversized", {"description": BIG}, InvalidInput),
            ("nul", {"detected_by": NUL}, InvalidText),
            (
                "dangling_message",
                {"evidence": [{"kind": "message", "id": "nope"}]},
                MessageNotFound,
            ),
            (
                "dangling_tool_event",
                {"evidence": [{"kind": "tool_event", "id": "nope"}]},
                ToolEventNotFound,
            ),
        ],
    ),
    kind(
        "hookify_decisions",
        "record_hook_decision",
        "hook_decision",
        fields=lambda c: {
            "rule_id": "no-rm-rf",
            "rule_name": "No rm -rf",
            "event": "tool_call",
            "decision": "block",
            "reason": "destructive",
            "tool_event_id": c.tool_event_id,
            "message_id": c.message_id,
        },
        update={"reason": "destructive command"},
        bad=[
            ("enum", {"decision": "maybe"}, InvalidInput),
            ("event_enum", {"event": "lunch"}, InvalidInput),
            ("oversized", {"rule_id": "r" * 201}, InvalidInput),
            ("nul", {"reason": NUL}, InvalidText),
            ("dangling_tool_event", {"tool_event_id": "nope"}, ToolEventNotFound),
            ("dangling_message", {"message_id": "nope"}, MessageNotFound),
        ],
    ),
    kind(
        "repo_bindings",
        "bind_repo",
        "repo_binding",
        fields=lambda c: {"path": "/src/app", "remote_url": "https://git.example/app.git"},
        update={"commit_sha": "abc123"},
        bad=[
            ("no_target", {"path": None, "remote_url": None}, InvalidInput),
            ("oversized", {"path": "p" * 4097}, InvalidInput),
            ("nul", {"branch": NUL}, InvalidText),
        ],
    ),
    kind(
        "snapshots",
        "create_snapshot",
        "snapshot",
        fields=lambda c: {"kind": "auto", "trigger": "idle", "state": {"panel": [1, 2]}},
        update={"starred": True, "description": "keep"},
        bad=[
            ("enum", {"kind": "sometimes"}, InvalidInput),
            ("oversized", {"state": {"blob": "x" * 2_000}}, TooLarge),
            ("nul", {"state": {"k": NUL}}, InvalidText),
            ("nan", {"state": {"k": float("nan")}}, InvalidText),
            ("null_state", {"state": None}, InvalidInput),
            # A bare number beyond 64 bits: jsonb would keep it, and no reader
            # (the export, sync, orjson) could take it back out.
            ("huge_scalar_state", {"state": 10**30}, InvalidText),
            ("huge_float_state", {"state": 1e30}, InvalidText),
            ("nan_scalar_state", {"state": float("nan")}, InvalidText),
        ],
    ),
    kind(
        "checkpoints",
        "create_checkpoint",
        "checkpoint",
        fields=lambda c: {"message_id": c.message_id, "context": {"files": ["a.py"]}},
        update={"label": "before refactor"},
        bad=[
            ("dangling_message", {"message_id": "nope"}, MessageNotFound),
            ("oversized", {"context": {"blob": "x" * 2_000}}, TooLarge),
            ("nul", {"label": NUL}, InvalidText),
            ("extra_field", {"colour": "red"}, InvalidInput),
            ("null_context", {"context": None}, InvalidInput),
        ],
    ),
    kind(
        "recordings",
        "create_recording",
        "recording",
        fields=lambda c: {"name": "run 1", "events": [{"t": 0, "e": "start"}], "duration_ms": 5},
        update={"events": [{"t": 0}, {"t": 1}], "name": "run 1b"},
        bad=[
            ("negative", {"duration_ms": -1}, InvalidInput),
            ("oversized", {"events": ["x" * 2_000]}, TooLarge),
            ("nul", {"name": NUL}, InvalidText),
        ],
    ),
    kind(
        "file_changes",
        "record_file_change",
        "file_change",
        fields=lambda c: {
            "path": "src/app.py",
            "kind": "modify",
            "diff": "-a\n+b\n",
            "tool_event_id": c.tool_event_id,
        },
        update={"diff": "-a\n+c\n"},
        bad=[
            ("enum", {"kind": "teleport"}, InvalidInput),
            ("oversized", {"diff": "d" * 1_001}, TooLarge),
            ("nul", {"path": NUL}, InvalidText),
            ("dangling_tool_event", {"tool_event_id": "nope"}, ToolEventNotFound),
        ],
    ),
    kind(
        "analytics_events",
        "record_analytics_event",
        "analytics_event",
        fields=lambda c: {
            "event_type": "llm_call",
            "model": "m1",
            "input_tokens": 10,
            "output_tokens": 20,
            "cost_usd": 0.25,
            "duration_ms": 300,
        },
        update={"cost_usd": 0.5},
        bad=[
            ("negative", {"input_tokens": -1}, InvalidInput),
            ("huge", {"output_tokens": 2**63}, InvalidInput),
            ("oversized", {"properties": {"blob": "x" * 2_000}}, TooLarge),
            ("nul", {"event_type": NUL}, InvalidText),
        ],
    ),
]
IDS = [k.table for k in KINDS]
BAD = [(k, name, extra, err) for k in KINDS for name, extra, err in k.bad]
