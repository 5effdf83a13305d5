"""model.trusted builds the same instances as pydantic's model_construct."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from threadkeep import Message, MessageStatus, Role, Session, TimelineEvent, ToolEvent, ToolStatus
from threadkeep.model.trusted import trusted

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)

ROWS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        Message,
        {
            "id": "m1", "owner_id": "u", "session_id": "s", "seq": 3, "role": Role.USER,
            "content": "hi", "parts": None, "tool_calls": [{"x": 1}], "model": None,
            "input_tokens": 5, "output_tokens": None, "client_id": "c", "metadata": {"k": "v"},
            "created_at": NOW, "status": MessageStatus.COMPLETE,
        },
    ),
    (
        Session,
        {
            "id": "s", "owner_id": "u", "title": "t", "model": None, "provider": None,
            "state": "active", "tags": ["a"], "starred": True, "pinned": False,
            "archived": False, "metadata": {}, "parent_session_id": None, "fork_seq": None,
            "head_seq": 3, "event_seq": 0, "input_tokens": 1, "output_tokens": 2,
            "cost_usd": 0.5, "version": 2, "created_at": NOW, "updated_at": NOW,
            "last_activity_at": NOW, "deleted_at": None,
        },
    ),
    (
        ToolEvent,
        {
            "id": "t", "owner_id": "u", "session_id": "s", "message_id": None, "call_id": "c",
            "name": "grep", "status": ToolStatus.SUCCEEDED, "input": {"q": 1}, "output": [1],
            "error": None, "started_at": NOW, "finished_at": NOW, "duration_ms": 0,
            "version": 1, "created_at": NOW, "updated_at": NOW,
        },
    ),
    (
        TimelineEvent,
        {
            "id": "e", "owner_id": "u", "session_id": "s", "seq": 1, "kind": "k",
            "payload": None, "message_id": "m1", "created_at": NOW,
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(("model", "values"), ROWS, ids=[m.__name__ for m, _ in ROWS])
def test_trusted_equals_model_construct(model: type[BaseModel], values: dict[str, Any]) -> None:
    fast = trusted(model, dict(values))
    slow = model.model_construct(**values)
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set


def test_trusted_covers_every_field_of_the_models_it_builds() -> None:
    for model, values in ROWS:
        assert set(values) == set(model.model_fields), model.__name__
