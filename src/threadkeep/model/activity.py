"""What happened in a session, for replay and for accounting: recordings
(replayable event lists) and analytics events (type, model, tokens, cost,
duration)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from threadkeep.model.record import MAX_ID, MAX_INT, MAX_NAME, RecordInput, RecordRow


class Recording(RecordRow):
    name: str | None
    events: list[Any]
    event_count: int
    duration_ms: int | None
    created_at: datetime
    updated_at: datetime


class NewRecording(RecordInput):
    """The events, in replay order (JSON; at most max_json_bytes)."""

    name: str | None = Field(default=None, max_length=MAX_NAME)
    events: list[Any] = Field(default_factory=list)
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_INT)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class RecordingUpdate(RecordInput):
    """A new name, or the events replaced (e.g. a recording still growing)."""

    name: str | None = Field(default=None, max_length=MAX_NAME)
    events: list[Any] | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_INT)


class AnalyticsEvent(RecordRow):
    event_type: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    duration_ms: int | None
    properties: Any
    created_at: datetime
    updated_at: datetime


class NewAnalyticsEvent(RecordInput):
    event_type: str = Field(min_length=1, max_length=100)
    model: str | None = Field(default=None, max_length=MAX_NAME)
    input_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    cost_usd: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_INT)
    properties: Any = None
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class AnalyticsEventUpdate(RecordInput):
    """A correction of the recorded figures."""

    model: str | None = Field(default=None, max_length=MAX_NAME)
    input_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    cost_usd: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_INT)
    properties: Any = None
