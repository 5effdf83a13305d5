"""What the session-record models share: the input base class that refuses
unstorable text and JSON in every field, and the field size limits.

The session record is everything an assistant keeps about a session besides
its messages and events: todos, misalignments, hook decisions, repo
bindings, snapshots, checkpoints, summaries, recordings, file changes and
analytics events (one module per family beside this one).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from threadkeep.model.text import check_json, check_text

MAX_ID = 128
MAX_NAME = 200
MAX_TEXT = 100_000  # characters of a free-text field (descriptions, reasons...)
MAX_PATH = 4096
MAX_ITEMS = 1_000  # items of a list field (evidence, key decisions...)
MAX_INT = 2**63 - 1


class RecordInput(BaseModel):
    """Base of every input model here: unknown fields are refused, and every
    string (NUL bytes, lone surrogates) and JSON value (NaN, huge numbers,
    depth) is checked before anything reaches a database."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _storable(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.field_name or "value"
        if isinstance(v, str):
            return check_text(name, v)
        if isinstance(v, dict):
            return check_json(name, v)
        if isinstance(v, list) and not any(isinstance(x, BaseModel) for x in v):
            return check_json(name, v)  # a list of models was checked field by field
        if isinstance(v, int | float) and not isinstance(v, bool):
            # A bare number in a JSON field (a snapshot's state may be 1e30):
            # jsonb would keep it as an integer no reader can take back.
            return check_json(name, v)
        return v


class RecordRow(BaseModel):
    """Base of every stored session-record row."""

    model_config = ConfigDict(frozen=True)

    id: str
    owner_id: str
    session_id: str
