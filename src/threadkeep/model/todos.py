"""Todos: the agent's task list for a session, in order (as agents' TodoWrite
tools keep it)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from threadkeep.model.record import MAX_ID, RecordInput, RecordRow

MAX_TODO = 10_000


class TodoStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class Todo(RecordRow):
    """One item of the list; ``position`` orders the list (0 first)."""

    position: int
    content: str
    status: TodoStatus
    active_form: str | None
    created_at: datetime
    updated_at: datetime


class NewTodo(RecordInput):
    """An item of the list. In a whole-list replace, an ``id`` the session
    already holds updates that item; a new or absent id adds one."""

    content: str = Field(min_length=1, max_length=MAX_TODO)
    status: TodoStatus = TodoStatus.PENDING
    active_form: str | None = Field(default=None, max_length=MAX_TODO)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class TodoUpdate(RecordInput):
    """A change to one item: only the given fields change."""

    content: str | None = Field(default=None, min_length=1, max_length=MAX_TODO)
    status: TodoStatus | None = None
    active_form: str | None = Field(default=None, max_length=MAX_TODO)
