"""Tool events (a tool call's life) and timeline events (everything else that
happens in a session, in order)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from threadkeep.model.text import check_json, check_text

MAX_ID = 128


class ToolStatus(StrEnum):
    STARTED = "started"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (ToolStatus.SUCCEEDED, ToolStatus.FAILED, ToolStatus.CANCELLED)


class ToolEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    owner_id: str
    session_id: str
    message_id: str | None
    call_id: str | None
    name: str
    status: ToolStatus
    input: Any
    output: Any
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    version: int
    created_at: datetime
    updated_at: datetime


class NewToolEvent(BaseModel):
    """A tool call that started (or, with a finished status, one recorded whole)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    input: Any = None
    output: Any = None
    error: str | None = None
    status: ToolStatus = ToolStatus.STARTED
    message_id: str | None = Field(default=None, max_length=MAX_ID)
    call_id: str | None = Field(default=None, max_length=MAX_ID)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None

    @field_validator("name", "error", "message_id", "call_id", "id")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("tool_event", v)

    @field_validator("input", "output")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return check_json("tool_event", v)


class ToolEventUpdate(BaseModel):
    """A change to a running tool call: new status, output, error."""

    model_config = ConfigDict(extra="forbid")

    status: ToolStatus | None = None
    output: Any = None
    error: str | None = None
    finished_at: AwareDatetime | None = None

    @field_validator("error")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("tool_event", v)

    @field_validator("output")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return check_json("tool_event", v)


class TimelineEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    owner_id: str
    session_id: str
    seq: int
    kind: str
    payload: Any
    message_id: str | None
    created_at: datetime


class NewTimelineEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=100)
    payload: Any = None
    message_id: str | None = Field(default=None, max_length=MAX_ID)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)

    @field_validator("kind", "message_id", "id")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("timeline_event", v)

    @field_validator("payload")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return check_json("timeline_event", v)
