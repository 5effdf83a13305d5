"""Messages: the ordered turns of a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from threadkeep.model.events import TimelineEvent, ToolEvent
from threadkeep.model.text import check_json, check_text

MAX_ID = 128


class Role(StrEnum):
    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    STREAMING = "streaming"  # an assistant reply whose tokens are still arriving
    INCOMPLETE = "incomplete"  # the stream stopped before it was finished


class Message(BaseModel):
    """A message as stored. ``seq`` is its 1-based position in the session's
    history, assigned inside the writing transaction: contiguous and unique.
    ``session_id`` is the session that physically holds it; a branch's history
    includes its parent's messages up to the fork point."""

    model_config = ConfigDict(frozen=True)

    id: str
    owner_id: str
    session_id: str
    seq: int
    role: Role
    content: str
    parts: list[Any] | None
    tool_calls: list[Any] | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    client_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    status: MessageStatus = MessageStatus.COMPLETE


class NewMessage(BaseModel):
    """A message to append. ``client_id`` makes the append idempotent: a retry
    with the same ``client_id`` in the same session returns the stored message
    instead of writing a second one. ``id`` may be chosen by the caller so that
    tool and timeline events in the same batch can point at the message."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = ""
    parts: list[Any] | None = None
    tool_calls: list[Any] | None = None
    model: str | None = Field(default=None, max_length=200)
    input_tokens: int | None = Field(default=None, ge=0, le=2**63 - 1)
    output_tokens: int | None = Field(default=None, ge=0, le=2**63 - 1)
    client_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("content", "model", "client_id", "id")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("message", v)

    @field_validator("parts", "tool_calls", "metadata")
    @classmethod
    def _json(cls, v: Any) -> Any:
        if v is not None:
            check_json("message", v)
        return v


@dataclass(frozen=True, slots=True)
class Appended:
    """What one append wrote (or, for an idempotent retry, found)."""

    messages: list[Message]
    tool_events: list[ToolEvent] = field(default_factory=list)
    timeline_events: list[TimelineEvent] = field(default_factory=list)
