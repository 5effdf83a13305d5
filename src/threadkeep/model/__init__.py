"""Domain types and their validation: one definition per entity."""

from threadkeep.model.changes import Change, Operation
from threadkeep.model.common import Actor, Committed, Page
from threadkeep.model.events import (
    NewTimelineEvent,
    NewToolEvent,
    TimelineEvent,
    ToolEvent,
    ToolEventUpdate,
    ToolStatus,
)
from threadkeep.model.messages import Message, MessageStatus, NewMessage, Role
from threadkeep.model.sessions import NewSession, Session, SessionFilter, SessionPatch
from threadkeep.model.users import User

__all__ = [
    "Actor",
    "Change",
    "Committed",
    "Message",
    "MessageStatus",
    "NewMessage",
    "NewSession",
    "NewTimelineEvent",
    "NewToolEvent",
    "Operation",
    "Page",
    "Role",
    "Session",
    "SessionFilter",
    "SessionPatch",
    "TimelineEvent",
    "ToolEvent",
    "ToolEventUpdate",
    "ToolStatus",
    "User",
]
