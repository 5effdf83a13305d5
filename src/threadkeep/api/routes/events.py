"""Tool events (a tool call's life) and timeline events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import error_responses
from threadkeep.api.routes._params import EventId, SessionId
from threadkeep.api.schemas import (
    MAX_INT,
    FinishToolEvent,
    TimelineAppendRequest,
    TimelineList,
    TimelineWritten,
    ToolEventList,
    ToolEventWritten,
)
from threadkeep.model.common import Committed
from threadkeep.model.events import NewToolEvent, ToolEvent, ToolEventUpdate

router = APIRouter(tags=["events"])


def _written(done: Committed[ToolEvent]) -> ToolEventWritten:
    return ToolEventWritten.model_construct(**dict(done.value), txid=done.txid)


@router.post(
    "/v1/sessions/{session_id}/tool-events",
    status_code=201,
    summary="Start a tool call",
    responses=error_responses(404, 409, body=True),
)
def start_tool_event(
    session_id: SessionId, body: NewToolEvent, principal: Writer, tk: TK
) -> ToolEventWritten:
    """Record a tool call (status ``started`` unless given)."""
    return _written(tk.start_tool_event(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/tool-events",
    summary="List tool calls",
    responses=error_responses(404),
)
def list_tool_events(
    session_id: SessionId,
    principal: Reader,
    tk: TK,
    message_id: Annotated[str | None, Query(max_length=128)] = None,
) -> ToolEventList:
    """The session's tool calls in order, or those of one message."""
    return ToolEventList(
        items=tk.list_tool_events(principal.actor, session_id, message_id=message_id)
    )


@router.get("/v1/tool-events/{event_id}", summary="Get a tool call", responses=error_responses(404))
def get_tool_event(event_id: EventId, principal: Reader, tk: TK) -> ToolEvent:
    return tk.get_tool_event(principal.actor, event_id)


@router.patch(
    "/v1/tool-events/{event_id}",
    summary="Update a tool call",
    responses=error_responses(404, 409, body=True),
)
def update_tool_event(
    event_id: EventId, body: ToolEventUpdate, principal: Writer, tk: TK
) -> ToolEventWritten:
    """Change a tool call's status, output or error."""
    return _written(tk.update_tool_event(principal.actor, event_id, body))


@router.post(
    "/v1/tool-events/{event_id}/finish",
    summary="Finish a tool call",
    responses=error_responses(404, 409, body=True),
)
def finish_tool_event(
    event_id: EventId, body: FinishToolEvent, principal: Writer, tk: TK
) -> ToolEventWritten:
    """Mark the call finished: succeeded, or failed when ``error`` is given."""
    done = tk.finish_tool_event(
        principal.actor,
        event_id,
        output=body.output,
        error=body.error,
        status=body.status,
        finished_at=body.finished_at,
    )
    return _written(done)


@router.post(
    "/v1/sessions/{session_id}/timeline-events",
    status_code=201,
    summary="Append timeline events",
    responses=error_responses(404, 409, body=True),
)
def append_timeline_events(
    session_id: SessionId, body: TimelineAppendRequest, principal: Writer, tk: TK
) -> TimelineWritten:
    """Append typed events to the session's activity stream, in order."""
    done = tk.append_timeline_events(principal.actor, session_id, body.events)
    return TimelineWritten(events=done.value, txid=done.txid)


@router.get(
    "/v1/sessions/{session_id}/timeline-events",
    summary="Read the timeline",
    responses=error_responses(404),
)
def list_timeline_events(
    session_id: SessionId,
    principal: Reader,
    tk: TK,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> TimelineList:
    """The session's timeline, oldest first; page with ``after_seq``."""
    return TimelineList(
        items=tk.list_timeline_events(principal.actor, session_id, after_seq=after_seq, limit=limit)
    )
