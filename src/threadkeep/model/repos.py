"""Repositories: which repository a session works on (bindings, with their
history), and the file changes the agent made."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import AwareDatetime, Field, model_validator

from threadkeep.model.record import MAX_ID, MAX_PATH, RecordInput, RecordRow


class RepoBinding(RecordRow):
    """A repository the session is (``unbound_at`` null) or was bound to."""

    path: str | None
    remote_url: str | None
    branch: str | None
    commit_sha: str | None
    bound_at: datetime
    unbound_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.unbound_at is None


class NewRepoBinding(RecordInput):
    """A repository by local path, remote URL, or both."""

    path: str | None = Field(default=None, min_length=1, max_length=MAX_PATH)
    remote_url: str | None = Field(default=None, min_length=1, max_length=2048)
    branch: str | None = Field(default=None, min_length=1, max_length=255)
    commit_sha: str | None = Field(default=None, min_length=1, max_length=64)
    bound_at: AwareDatetime | None = None
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.path is None and self.remote_url is None:
            raise ValueError("give a path, a remote_url, or both")
        return self


class RepoBindingUpdate(RecordInput):
    """The binding moved along: a new branch or commit."""

    branch: str | None = Field(default=None, min_length=1, max_length=255)
    commit_sha: str | None = Field(default=None, min_length=1, max_length=64)


class FileChangeKind(StrEnum):
    CREATE = "create"
    MODIFY = "modify"
    DELETE = "delete"
    RENAME = "rename"


class FileChange(RecordRow):
    tool_event_id: str | None
    path: str
    kind: FileChangeKind
    old_path: str | None
    diff: str | None
    created_at: datetime
    updated_at: datetime


class NewFileChange(RecordInput):
    """A change to one file, linked to the tool event that made it."""

    path: str = Field(min_length=1, max_length=MAX_PATH)
    kind: FileChangeKind = FileChangeKind.MODIFY
    old_path: str | None = Field(default=None, min_length=1, max_length=MAX_PATH)
    diff: str | None = None  # size-checked against max_message_bytes
    tool_event_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class FileChangeUpdate(RecordInput):
    diff: str | None = None
