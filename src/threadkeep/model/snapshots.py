"""Saved state of a session: snapshots (session/UI state, kept by retention
rules unless starred), checkpoints (the agent's context at a message) and the
summary of a finished session (one per session)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from threadkeep.model.record import (
    MAX_ID,
    MAX_INT,
    MAX_ITEMS,
    MAX_NAME,
    MAX_TEXT,
    RecordInput,
    RecordRow,
)


def _not_null(v: Any) -> Any:
    if v is None:
        raise ValueError("must not be null (use {} for nothing)")
    return v


class SnapshotKind(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"
    SYSTEM = "system"


class Snapshot(RecordRow):
    kind: SnapshotKind
    trigger: str | None
    description: str | None
    starred: bool
    state: Any
    summary: Any
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class NewSnapshot(RecordInput):
    """``state`` and ``summary`` are JSON; together at most max_json_bytes."""

    kind: SnapshotKind = SnapshotKind.MANUAL
    trigger: str | None = Field(default=None, max_length=MAX_NAME)
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    starred: bool = False
    state: Any = Field(default_factory=dict)
    summary: Any = None
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)

    @field_validator("state")
    @classmethod
    def _state(cls, v: Any) -> Any:
        return _not_null(v)


class SnapshotUpdate(RecordInput):
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    starred: bool | None = None


class Checkpoint(RecordRow):
    message_id: str
    label: str | None
    context: Any
    created_at: datetime
    updated_at: datetime


class NewCheckpoint(RecordInput):
    """The agent's context as it was at ``message_id`` (a message of the same
    session)."""

    message_id: str = Field(min_length=1, max_length=MAX_ID)
    label: str | None = Field(default=None, max_length=MAX_NAME)
    context: Any = Field(default_factory=dict)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)

    @field_validator("context")
    @classmethod
    def _context(cls, v: Any) -> Any:
        return _not_null(v)


class CheckpointUpdate(RecordInput):
    label: str | None = Field(default=None, max_length=MAX_NAME)


class Summary(RecordRow):
    title: str | None
    summary: str
    key_decisions: list[Any]
    artifacts: list[Any]
    final_message_count: int
    created_at: datetime
    updated_at: datetime


class NewSummary(RecordInput):
    """The session's summary; setting it again replaces it (one per session).
    ``final_message_count`` defaults to the session's message count."""

    title: str | None = Field(default=None, max_length=1_000)
    summary: str = Field(min_length=1, max_length=MAX_TEXT)
    key_decisions: list[Any] = Field(default_factory=list, max_length=MAX_ITEMS)
    artifacts: list[Any] = Field(default_factory=list, max_length=MAX_ITEMS)
    final_message_count: int | None = Field(default=None, ge=0, le=MAX_INT)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
