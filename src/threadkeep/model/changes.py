"""Rows of the change log that sync reads."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Operation(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


class Change(BaseModel):
    """One row change. ``offset`` orders the log; a reader that asks for
    ``offset > last_seen`` never skips a committed change (see store/changes.py)."""

    model_config = ConfigDict(frozen=True)

    offset: int
    txid: int
    table: str
    key: str
    op: Operation
    row: dict[str, Any] | None
    owner_id: str
    session_id: str | None
    created_at: datetime
