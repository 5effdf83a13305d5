"""Recordings and analytics events of a session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import error_responses
from threadkeep.api.record_schemas import (
    AnalyticsEventList,
    AnalyticsEventsWritten,
    AnalyticsEventWritten,
    AnalyticsRecord,
    Deleted,
    RecordingList,
    RecordingWritten,
    written,
)
from threadkeep.api.routes._params import RowId, SessionId
from threadkeep.api.schemas import MAX_INT
from threadkeep.model.activity import (
    AnalyticsEvent,
    AnalyticsEventUpdate,
    NewRecording,
    Recording,
    RecordingUpdate,
)

router = APIRouter(tags=["activity"])


@router.post(
    "/v1/sessions/{session_id}/recordings",
    status_code=201,
    summary="Store a recording",
    responses=error_responses(404, 409, body=True),
)
def create_recording(
    session_id: SessionId, body: NewRecording, principal: Writer, tk: TK
) -> RecordingWritten:
    """A replayable list of the session's events."""
    return written(RecordingWritten, tk.create_recording(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/recordings",
    summary="List recordings",
    responses=error_responses(404),
)
def list_recordings(session_id: SessionId, principal: Reader, tk: TK) -> RecordingList:
    return RecordingList(items=tk.list_recordings(principal.actor, session_id))


@router.get(
    "/v1/sessions/{session_id}/recordings/{recording_id}",
    summary="Get a recording",
    responses=error_responses(404),
)
def get_recording(
    session_id: SessionId, recording_id: RowId, principal: Reader, tk: TK
) -> Recording:
    return tk.get_recording(principal.actor, session_id, recording_id)


@router.patch(
    "/v1/sessions/{session_id}/recordings/{recording_id}",
    summary="Update a recording",
    responses=error_responses(404, 409, body=True),
)
def update_recording(
    session_id: SessionId, recording_id: RowId, body: RecordingUpdate, principal: Writer, tk: TK
) -> RecordingWritten:
    return written(
        RecordingWritten, tk.update_recording(principal.actor, session_id, recording_id, body)
    )


@router.delete(
    "/v1/sessions/{session_id}/recordings/{recording_id}",
    summary="Delete a recording",
    responses=error_responses(404, body=True),
)
def delete_recording(
    session_id: SessionId, recording_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_recording(principal.actor, session_id, recording_id).txid)


@router.post(
    "/v1/sessions/{session_id}/analytics-events",
    status_code=201,
    summary="Record analytics events",
    responses=error_responses(404, 409, body=True),
)
def record_analytics_events(
    session_id: SessionId, body: AnalyticsRecord, principal: Writer, tk: TK
) -> AnalyticsEventsWritten:
    """Usage metrics (type, model, tokens, cost, duration), in one transaction."""
    done = tk.record_analytics_events(principal.actor, session_id, body.events)
    return AnalyticsEventsWritten(items=done.value, txid=done.txid)


@router.get(
    "/v1/sessions/{session_id}/analytics-events",
    summary="List analytics events",
    responses=error_responses(404),
)
def list_analytics_events(
    session_id: SessionId,
    principal: Reader,
    tk: TK,
    event_type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> AnalyticsEventList:
    return AnalyticsEventList(
        items=tk.list_analytics_events(
            principal.actor, session_id, event_type=event_type, limit=limit
        )
    )


@router.get(
    "/v1/sessions/{session_id}/analytics-events/{analytics_event_id}",
    summary="Get a analytics event",
    responses=error_responses(404),
)
def get_analytics_event(
    session_id: SessionId, analytics_event_id: RowId, principal: Reader, tk: TK
) -> AnalyticsEvent:
    return tk.get_analytics_event(principal.actor, session_id, analytics_event_id)


@router.patch(
    "/v1/sessions/{session_id}/analytics-events/{analytics_event_id}",
    summary="Update a analytics event",
    responses=error_responses(404, 409, body=True),
)
def update_analytics_event(
    session_id: SessionId,
    analytics_event_id: RowId,
    body: AnalyticsEventUpdate,
    principal: Writer,
    tk: TK,
) -> AnalyticsEventWritten:
    return written(
        AnalyticsEventWritten,
        tk.update_analytics_event(principal.actor, session_id, analytics_event_id, body),
    )


@router.delete(
    "/v1/sessions/{session_id}/analytics-events/{analytics_event_id}",
    summary="Delete a analytics event",
    responses=error_responses(404, body=True),
)
def delete_analytics_event(
    session_id: SessionId, analytics_event_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(
        txid=tk.delete_analytics_event(principal.actor, session_id, analytics_event_id).txid
    )
