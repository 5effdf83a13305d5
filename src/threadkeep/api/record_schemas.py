"""Request and response bodies of the session-record routes (todos,
snapshots...): the rows are the domain models themselves; this adds the
envelopes, each write answering with the ``txid`` sync clients wait for."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from threadkeep.model.activity import AnalyticsEvent, NewAnalyticsEvent, Recording
from threadkeep.model.common import Committed
from threadkeep.model.oversight import HookDecision, Misalignment
from threadkeep.model.repos import FileChange, RepoBinding
from threadkeep.model.snapshots import Checkpoint, Snapshot, Summary
from threadkeep.model.todos import NewTodo, Todo

_TXID = Field(description="The id of the committing transaction; sync clients wait for it.")

W = TypeVar("W", bound=BaseModel)


def written(cls: type[W], done: Committed[Any]) -> W:
    """``done``'s row with its txid, as a route answers a write."""
    return cls.model_construct(**dict(done.value), txid=done.txid)


class Deleted(BaseModel):
    txid: int = _TXID


class TodoWritten(Todo):
    txid: int = _TXID


class TodoList(BaseModel):
    items: list[Todo]


class TodoReplace(BaseModel):
    """The whole list, in order (an empty list clears it)."""

    model_config = ConfigDict(extra="forbid")

    todos: list[NewTodo]


class TodosWritten(BaseModel):
    items: list[Todo]
    txid: int = _TXID


class MisalignmentWritten(Misalignment):
    txid: int = _TXID


class MisalignmentList(BaseModel):
    items: list[Misalignment]


class HookDecisionWritten(HookDecision):
    txid: int = _TXID


class HookDecisionList(BaseModel):
    items: list[HookDecision]


class RepoBindingWritten(RepoBinding):
    txid: int = _TXID


class RepoBindingList(BaseModel):
    items: list[RepoBinding]


class ActiveRepoBinding(BaseModel):
    binding: RepoBinding | None = Field(description="Null when the session is bound to none.")


class Unbound(BaseModel):
    binding: RepoBinding | None = Field(description="The binding that ended, if there was one.")
    txid: int = _TXID


class SnapshotWritten(Snapshot):
    txid: int = _TXID


class SnapshotList(BaseModel):
    items: list[Snapshot]


class CheckpointWritten(Checkpoint):
    txid: int = _TXID


class CheckpointList(BaseModel):
    items: list[Checkpoint]


class SummaryWritten(Summary):
    txid: int = _TXID


class RecordingWritten(Recording):
    txid: int = _TXID


class RecordingList(BaseModel):
    items: list[Recording]


class FileChangeWritten(FileChange):
    txid: int = _TXID


class FileChangeList(BaseModel):
    items: list[FileChange]


class AnalyticsEventWritten(AnalyticsEvent):
    txid: int = _TXID


class AnalyticsEventList(BaseModel):
    items: list[AnalyticsEvent]


class AnalyticsRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[NewAnalyticsEvent] = Field(min_length=1)


class AnalyticsEventsWritten(BaseModel):
    items: list[AnalyticsEvent]
    txid: int = _TXID
