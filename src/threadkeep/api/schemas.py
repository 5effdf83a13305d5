"""Request and response bodies of the HTTP API.

Entities are the domain models themselves (one definition per entity, in
``threadkeep.model``); this module adds only the envelopes: lists, pages, and
the ``txid`` that every write answers with, which sync clients wait for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from threadkeep.model.events import (
    NewTimelineEvent,
    NewToolEvent,
    TimelineEvent,
    ToolEvent,
    ToolStatus,
)
from threadkeep.model.messages import Message, NewMessage
from threadkeep.model.sessions import Session
from threadkeep.model.uploads import Upload
from threadkeep.model.users import User
from threadkeep.service.tokens import ApiToken, IssuedToken, Scope

_TXID = Field(description="The id of the committing transaction; sync clients wait for it.")
MAX_ID = 128
# Integers past a signed 64-bit column are refused here, the same on both
# engines (PostgreSQL and SQLite would each fail in their own way).
MAX_INT = 2**63 - 1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- sessions --------------------------------------------------------------------


class SessionWritten(Session):
    """A session as a write left it."""

    txid: int = _TXID


class SessionPage(BaseModel):
    items: list[Session]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class SessionList(BaseModel):
    items: list[Session]


class Purged(BaseModel):
    txid: int = _TXID


# --- messages --------------------------------------------------------------------


class AppendRequest(_Body):
    """Messages, tool events and timeline events appended in one transaction."""

    messages: list[NewMessage] = Field(default_factory=list)
    tool_events: list[NewToolEvent] = Field(default_factory=list)
    timeline_events: list[NewTimelineEvent] = Field(default_factory=list)


class AppendResult(BaseModel):
    """What the append wrote, or, for an idempotent retry, what it found."""

    messages: list[Message]
    tool_events: list[ToolEvent]
    timeline_events: list[TimelineEvent]
    txid: int = _TXID


class MessageList(BaseModel):
    items: list[Message]


class MessageWritten(Message):
    """A message as a write left it."""

    txid: int = _TXID


class FinishMessage(_Body):
    """The end of a streaming message: the fields of the NDJSON stream's
    ``done`` line. ``incomplete`` is how an app closes a stream whose writer
    it knows is gone, keeping the text that arrived."""

    status: Literal["complete", "incomplete"] = "complete"
    content: str | None = Field(
        default=None, description="Replaces the text gathered so far (e.g. the exact reply)."
    )
    input_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_INT)
    model: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] | None = Field(
        default=None, description="Replaces the message's metadata."
    )


# --- branches --------------------------------------------------------------------


class ForkRequest(_Body):
    """Where to fork: give exactly one of ``at_seq`` and ``at_message_id``."""

    at_seq: int | None = Field(default=None, ge=0, le=MAX_INT)
    at_message_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    title: str | None = Field(default=None, max_length=1_000)


class RewindRequest(_Body):
    """Where to rewind to: give exactly one of ``to_seq`` and ``to_message_id``."""

    to_seq: int | None = Field(default=None, ge=0, le=MAX_INT)
    to_message_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    branch_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class RewindResult(BaseModel):
    session: Session
    branch: Session | None = Field(description="The branch holding what followed, if anything.")
    txid: int = _TXID


# --- events ----------------------------------------------------------------------


class ToolEventWritten(ToolEvent):
    txid: int = _TXID


class FinishToolEvent(_Body):
    """A tool call's end: succeeded, or failed when ``error`` is given."""

    output: Any = None
    error: str | None = None
    status: ToolStatus | None = None
    finished_at: datetime | None = None


class ToolEventList(BaseModel):
    items: list[ToolEvent]


class TimelineAppendRequest(_Body):
    events: list[NewTimelineEvent]


class TimelineWritten(BaseModel):
    events: list[TimelineEvent]
    txid: int = _TXID


class TimelineList(BaseModel):
    items: list[TimelineEvent]


# --- users and tokens -------------------------------------------------------------


class Me(BaseModel):
    user: User
    token: ApiToken


class TokenCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: [Scope.READ, Scope.WRITE])
    expires_at: datetime | None = Field(
        default=None, description="With a time zone; in the future."
    )


class TokenIssued(IssuedToken):
    """The new token; ``token`` is shown only in this answer."""

    txid: int = _TXID


class TokenWritten(ApiToken):
    txid: int = _TXID


class TokenList(BaseModel):
    items: list[ApiToken]


# --- uploads ---------------------------------------------------------------------


class UploadWritten(Upload):
    """An upload as a write left it (stored, or just deleted)."""

    txid: int = _TXID


class UploadList(BaseModel):
    items: list[Upload]


# --- operations ------------------------------------------------------------------


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    database: str
    migrations: str
