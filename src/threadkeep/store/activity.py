"""Queries on recordings and analytics events."""

from __future__ import annotations

from collections.abc import Sequence

from threadkeep.errors import AnalyticsEventNotFound, RecordingNotFound
from threadkeep.model.activity import (
    AnalyticsEvent,
    NewAnalyticsEvent,
    NewRecording,
    Recording,
    RecordingUpdate,
)
from threadkeep.store import records
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import analytics_events, recordings

RECORDING = records.Kind(recordings, Recording, RecordingNotFound, "recording")
ANALYTICS_EVENT = records.Kind(
    analytics_events, AnalyticsEvent, AnalyticsEventNotFound, "analytics event"
)


def create_recording(tx: WriteTx, owner_id: str, session_id: str, new: NewRecording) -> Recording:
    records.live_session(tx, owner_id, session_id)
    records.check_ids_free(tx.conn, RECORDING, [new.id])
    row = {**new.model_dump(), "event_count": len(new.events)}
    return records.insert(tx, RECORDING, owner_id, session_id, [row])[0]


def update_recording(
    tx: WriteTx, owner_id: str, session_id: str, key: str, change: RecordingUpdate
) -> Recording:
    records.live_session(tx, owner_id, session_id)
    values = change.model_dump(exclude_unset=True)
    if "events" in values:
        if values["events"] is None:
            values["events"] = []
        values["event_count"] = len(values["events"])
    if not values:
        return records.get(tx.conn, RECORDING, owner_id, session_id, key)
    return records.update(tx, RECORDING, owner_id, session_id, key, values)


def record_analytics_events(
    tx: WriteTx, owner_id: str, session_id: str, events: Sequence[NewAnalyticsEvent]
) -> list[AnalyticsEvent]:
    records.live_session(tx, owner_id, session_id)
    records.check_ids_free(tx.conn, ANALYTICS_EVENT, [e.id for e in events])
    rows = [e.model_dump() for e in events]
    return records.insert(tx, ANALYTICS_EVENT, owner_id, session_id, rows)
