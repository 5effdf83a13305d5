"""Sessions: a conversation or agent run, and the branches forked from it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from threadkeep.model.text import check_json, check_text

MAX_ID = 128
MAX_TITLE = 1_000
MAX_TAGS = 100
MAX_TAG = 100
MAX_SHORT = 200


class Session(BaseModel):
    """A session as stored.

    ``parent_session_id`` and ``fork_seq`` make a branch: the branch's history is
    its parent's history up to ``fork_seq`` followed by its own messages, whose
    ``seq`` continue from ``fork_seq + 1``. ``head_seq`` is the seq of the last
    message, so it is also the number of messages in the history.
    ``version`` grows on every metadata change and guards updates.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    owner_id: str
    title: str | None
    model: str | None
    provider: str | None
    state: str
    tags: list[str]
    starred: bool
    pinned: bool
    archived: bool
    metadata: dict[str, Any]
    parent_session_id: str | None
    fork_seq: int | None
    head_seq: int
    event_seq: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    version: int
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime
    deleted_at: datetime | None

    @property
    def message_count(self) -> int:
        return self.head_seq


def _check_tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    out: list[str] = []
    for t in tags:
        check_text("tags", t)
        if not t or len(t) > MAX_TAG:
            raise ValueError(f"a tag is 1 to {MAX_TAG} characters")
        if t not in out:
            out.append(t)
    return out


class NewSession(BaseModel):
    """What a caller may set when creating a session. ``id`` is optional: the
    server picks a UUID when it is absent."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    title: str | None = Field(default=None, max_length=MAX_TITLE)
    model: str | None = Field(default=None, max_length=MAX_SHORT)
    provider: str | None = Field(default=None, max_length=MAX_SHORT)
    state: str = Field(default="active", min_length=1, max_length=64)
    tags: list[str] = Field(default_factory=list)
    starred: bool = False
    pinned: bool = False
    archived: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", "title", "model", "provider", "state")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("session", v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return _check_tags(v)

    @field_validator("metadata")
    @classmethod
    def _meta(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_json("metadata", v)
        return v


class SessionPatch(BaseModel):
    """A partial update: only the fields that are set change."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=MAX_TITLE)
    model: str | None = Field(default=None, max_length=MAX_SHORT)
    provider: str | None = Field(default=None, max_length=MAX_SHORT)
    state: str | None = Field(default=None, min_length=1, max_length=64)
    tags: list[str] | None = None
    starred: bool | None = None
    pinned: bool | None = None
    archived: bool | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("title", "model", "provider", "state")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("session", v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_tags(v)

    @field_validator("metadata")
    @classmethod
    def _meta(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            check_json("metadata", v)
        return v

    def changes(self) -> dict[str, Any]:
        """The fields the caller set (explicit None clears title/model/provider)."""
        return self.model_dump(exclude_unset=True)


class SessionFilter(BaseModel):
    """Filters for listing sessions; None means "either"."""

    model_config = ConfigDict(extra="forbid")

    starred: bool | None = None
    pinned: bool | None = None
    archived: bool | None = None
    tag: str | None = Field(default=None, max_length=MAX_TAG)
    title_contains: str | None = Field(default=None, max_length=MAX_TITLE)
    trashed: bool = False

    @field_validator("tag", "title_contains")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return None if v is None else check_text("filter", v)
