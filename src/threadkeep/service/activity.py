"""Recording and analytics operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.activity import (
    AnalyticsEvent,
    AnalyticsEventUpdate,
    NewAnalyticsEvent,
    NewRecording,
    Recording,
    RecordingUpdate,
)
from threadkeep.model.common import Actor, Committed
from threadkeep.service import args
from threadkeep.service.records import RecordOps
from threadkeep.store import activity as activity_q


class ActivityOps(RecordOps):
    # --- recordings ----------------------------------------------------------------

    def create_recording(
        self, actor: Actor, session_id: str, recording: NewRecording | Mapping[str, Any]
    ) -> Committed[Recording]:
        """Store a replayable list of the session's events.

        Raises:
            TooLarge: the events are over max_json_bytes.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewRecording, recording, "recording")
        self._json_limit("recording.events", new.events)
        return self._write(owner, sid, lambda tx: activity_q.create_recording(tx, owner, sid, new))

    def update_recording(
        self,
        actor: Actor,
        session_id: str,
        recording_id: str,
        update: RecordingUpdate | Mapping[str, Any],
    ) -> Committed[Recording]:
        """Rename a recording, or replace its events (and duration)."""
        change = self._input(RecordingUpdate, update, "update")
        self._json_limit("update.events", change.events)
        owner, sid = self._scope(actor, session_id)
        key = args.key("recording_id", recording_id)
        return self._write(
            owner, sid, lambda tx: activity_q.update_recording(tx, owner, sid, key, change)
        )

    def get_recording(self, actor: Actor, session_id: str, recording_id: str) -> Recording:
        return self._get(activity_q.RECORDING, actor, session_id, recording_id)

    def list_recordings(self, actor: Actor, session_id: str) -> list[Recording]:
        return self._list(activity_q.RECORDING, actor, session_id, None)

    def delete_recording(self, actor: Actor, session_id: str, recording_id: str) -> Committed[None]:
        return self._delete(activity_q.RECORDING, actor, session_id, recording_id)

    # --- analytics -----------------------------------------------------------------

    def record_analytics_events(
        self,
        actor: Actor,
        session_id: str,
        events: Sequence[NewAnalyticsEvent | Mapping[str, Any]],
    ) -> Committed[list[AnalyticsEvent]]:
        """Record usage metrics (type, model, tokens, cost, duration) in one transaction."""
        owner, sid = self._scope(actor, session_id)
        events = args.items("events", events)
        if not events:
            raise InvalidInput("events", "nothing to record")
        if len(events) > self.limits.max_batch:
            raise InvalidInput("events", f"at most {self.limits.max_batch} events per call")
        new = [self._input(NewAnalyticsEvent, e, f"events[{i}]") for i, e in enumerate(events)]
        for i, e in enumerate(new):
            self._json_limit(f"events[{i}].properties", e.properties)
        return self._write(
            owner, sid, lambda tx: activity_q.record_analytics_events(tx, owner, sid, new)
        )

    def record_analytics_event(
        self, actor: Actor, session_id: str, event: NewAnalyticsEvent | Mapping[str, Any]
    ) -> Committed[AnalyticsEvent]:
        """Record one analytics event (see :meth:`record_analytics_events`)."""
        done = self.record_analytics_events(actor, session_id, [event])
        return Committed(done.value[0], done.txid)

    def update_analytics_event(
        self,
        actor: Actor,
        session_id: str,
        event_id: str,
        update: AnalyticsEventUpdate | Mapping[str, Any],
    ) -> Committed[AnalyticsEvent]:
        """Correct an event's figures."""
        change = self._input(AnalyticsEventUpdate, update, "update")
        self._json_limit("update.properties", change.properties)
        return self._patch(activity_q.ANALYTICS_EVENT, actor, session_id, event_id, change)

    def get_analytics_event(self, actor: Actor, session_id: str, event_id: str) -> AnalyticsEvent:
        return self._get(activity_q.ANALYTICS_EVENT, actor, session_id, event_id)

    def list_analytics_events(
        self,
        actor: Actor,
        session_id: str,
        *,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[AnalyticsEvent]:
        """The session's analytics events, oldest first; of one type if given."""
        if event_type is not None:
            event_type = args.key("event_type", event_type)
        return self._list(
            activity_q.ANALYTICS_EVENT, actor, session_id, limit, event_type=event_type
        )

    def delete_analytics_event(
        self, actor: Actor, session_id: str, event_id: str
    ) -> Committed[None]:
        return self._delete(activity_q.ANALYTICS_EVENT, actor, session_id, event_id)
