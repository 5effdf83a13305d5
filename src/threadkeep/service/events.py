"""Tool and timeline event operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from threadkeep.model.common import Actor, Committed
from threadkeep.model.events import (
    NewTimelineEvent,
    NewToolEvent,
    TimelineEvent,
    ToolEvent,
    ToolEventUpdate,
    ToolStatus,
)
from threadkeep.model.text import check_size, json_size
from threadkeep.service import args
from threadkeep.service.base import check_actor, coerce
from threadkeep.service.messages import MessageOps
from threadkeep.store import events as event_q


class EventOps(MessageOps):
    def record_tool_events(
        self, actor: Actor, session_id: str, events: Sequence[NewToolEvent | Mapping[str, Any]]
    ) -> Committed[list[ToolEvent]]:
        """Record tool calls (usually status ``started``) in one transaction."""
        done = self.append(actor, session_id, tool_events=events)
        return Committed(done.value.tool_events, done.txid)

    def start_tool_event(
        self, actor: Actor, session_id: str, event: NewToolEvent | Mapping[str, Any]
    ) -> Committed[ToolEvent]:
        done = self.record_tool_events(actor, session_id, [event])
        return Committed(done.value[0], done.txid)

    def update_tool_event(
        self, actor: Actor, event_id: str, update: ToolEventUpdate | Mapping[str, Any]
    ) -> Committed[ToolEvent]:
        """Change a tool call's status, output or error."""
        owner = check_actor(actor)
        event_id = args.key("event_id", event_id)
        args.mapping_or_model("update", update, ToolEventUpdate)
        u = coerce(ToolEventUpdate, update, "update")
        if u.output is not None:
            check_size("output", json_size(u.output), self.limits.max_json_bytes)
        return self.engine.write(lambda tx: event_q.update_tool_event(tx, owner, event_id, u))

    def finish_tool_event(
        self,
        actor: Actor,
        event_id: str,
        *,
        output: Any = None,
        error: str | None = None,
        status: ToolStatus | None = None,
        finished_at: datetime | None = None,
    ) -> Committed[ToolEvent]:
        """Mark a tool call finished: succeeded, or failed when ``error`` is given."""
        final = status or (ToolStatus.FAILED if error else ToolStatus.SUCCEEDED)
        update: dict[str, Any] = {"status": final, "finished_at": finished_at}
        # Only what the caller gives replaces what an earlier update recorded.
        if output is not None:
            update["output"] = output
        if error is not None:
            update["error"] = error
        return self.update_tool_event(actor, event_id, update)

    def get_tool_event(self, actor: Actor, event_id: str) -> ToolEvent:
        owner = check_actor(actor)
        event_id = args.key("event_id", event_id)
        return self.engine.read(lambda c: event_q.get_tool_event(c, owner, event_id))

    def list_tool_events(
        self, actor: Actor, session_id: str, *, message_id: str | None = None
    ) -> list[ToolEvent]:
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        message_id = args.optional_key("message_id", message_id)
        return self.engine.read(
            lambda c: event_q.list_tool_events(c, owner, session_id, message_id)
        )

    def append_timeline_events(
        self,
        actor: Actor,
        session_id: str,
        events: Sequence[NewTimelineEvent | Mapping[str, Any]],
    ) -> Committed[list[TimelineEvent]]:
        """Append typed events to the session's timeline, in order."""
        done = self.append(actor, session_id, timeline_events=events)
        return Committed(done.value.timeline_events, done.txid)

    def list_timeline_events(
        self,
        actor: Actor,
        session_id: str,
        *,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[TimelineEvent]:
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        args.optional_integer("after_seq", after_seq)
        if limit is not None:
            self._page_limit(limit)
        return self.engine.read(
            lambda c: event_q.list_timeline_events(c, owner, session_id, after_seq, limit)
        )
