"""Oversight of an agent: misalignments (detected deviations from the user's
intent, with evidence) and hook decisions (what hook rules decided about the
agent's tool calls, prompts and stops)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, Field

from threadkeep.model.record import MAX_ID, MAX_ITEMS, MAX_NAME, MAX_TEXT, RecordInput, RecordRow


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class EvidenceKind(StrEnum):
    MESSAGE = "message"
    TOOL_EVENT = "tool_event"


class Evidence(RecordInput):
    """A reference to a message or tool event of the same session."""

    model_config = RecordInput.model_config | {"frozen": True}

    kind: EvidenceKind
    id: str = Field(min_length=1, max_length=MAX_ID)


class Misalignment(RecordRow):
    kind: str
    severity: Severity
    description: str
    evidence: list[Evidence]
    detected_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    created_at: datetime
    updated_at: datetime


class NewMisalignment(RecordInput):
    kind: str = Field(min_length=1, max_length=100)
    severity: Severity = Severity.MEDIUM
    description: str = Field(min_length=1, max_length=MAX_TEXT)
    evidence: list[Evidence] = Field(default_factory=list, max_length=MAX_ITEMS)
    detected_by: str | None = Field(default=None, max_length=MAX_NAME)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class MisalignmentUpdate(RecordInput):
    """A change: only the given fields change. Giving a ``resolution`` resolves
    the misalignment (``resolved_at`` defaults to now); ``resolved_at: null``
    reopens it (and clears the resolution)."""

    kind: str | None = Field(default=None, min_length=1, max_length=100)
    severity: Severity | None = None
    description: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    evidence: list[Evidence] | None = Field(default=None, max_length=MAX_ITEMS)
    detected_by: str | None = Field(default=None, max_length=MAX_NAME)
    resolution: str | None = Field(default=None, max_length=MAX_TEXT)
    resolved_at: AwareDatetime | None = None


class HookEvent(StrEnum):
    TOOL_CALL = "tool_call"
    PROMPT = "prompt"
    STOP = "stop"


class Decision(StrEnum):
    ALLOW = "allow"
    WARN = "warn"
    BLOCK = "block"


class HookDecision(RecordRow):
    rule_id: str
    rule_name: str | None
    event: HookEvent
    decision: Decision
    reason: str | None
    tool_event_id: str | None
    message_id: str | None
    created_at: datetime
    updated_at: datetime


class NewHookDecision(RecordInput):
    """A rule's decision on an agent event, linked to the tool event or
    message it judged (both of the same session)."""

    rule_id: str = Field(min_length=1, max_length=MAX_NAME)
    rule_name: str | None = Field(default=None, max_length=MAX_NAME)
    event: HookEvent
    decision: Decision
    reason: str | None = Field(default=None, max_length=MAX_TEXT)
    tool_event_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    message_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)


class HookDecisionUpdate(RecordInput):
    rule_name: str | None = Field(default=None, max_length=MAX_NAME)
    reason: str | None = Field(default=None, max_length=MAX_TEXT)
