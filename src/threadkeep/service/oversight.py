"""Misalignment and hook-decision operations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadkeep.model.common import Actor, Committed
from threadkeep.model.oversight import (
    Decision,
    HookDecision,
    HookDecisionUpdate,
    Misalignment,
    MisalignmentUpdate,
    NewHookDecision,
    NewMisalignment,
)
from threadkeep.service import args
from threadkeep.service.records import RecordOps, choice
from threadkeep.store import oversight as oversight_q


class OversightOps(RecordOps):
    # --- misalignments -------------------------------------------------------------

    def record_misalignment(
        self, actor: Actor, session_id: str, misalignment: NewMisalignment | Mapping[str, Any]
    ) -> Committed[Misalignment]:
        """Record a detected deviation of the agent from the user's intent.

        Raises:
            MessageNotFound / ToolEventNotFound: evidence names a row that is
                not in this session; nothing is written.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewMisalignment, misalignment, "misalignment")
        return self._write(
            owner, sid, lambda tx: oversight_q.record_misalignment(tx, owner, sid, new)
        )

    def update_misalignment(
        self,
        actor: Actor,
        session_id: str,
        misalignment_id: str,
        update: MisalignmentUpdate | Mapping[str, Any],
    ) -> Committed[Misalignment]:
        """Change fields; a ``resolution`` resolves it, ``resolved_at=None`` reopens it."""
        change = self._input(MisalignmentUpdate, update, "update")
        owner, sid = self._scope(actor, session_id)
        key = args.key("misalignment_id", misalignment_id)
        return self._write(
            owner, sid, lambda tx: oversight_q.update_misalignment(tx, owner, sid, key, change)
        )

    def resolve_misalignment(
        self, actor: Actor, session_id: str, misalignment_id: str, resolution: str
    ) -> Committed[Misalignment]:
        """Mark it resolved now, saying how."""
        return self.update_misalignment(
            actor, session_id, misalignment_id, {"resolution": resolution}
        )

    def get_misalignment(self, actor: Actor, session_id: str, misalignment_id: str) -> Misalignment:
        return self._get(oversight_q.MISALIGNMENT, actor, session_id, misalignment_id)

    def list_misalignments(
        self, actor: Actor, session_id: str, *, unresolved: bool = False
    ) -> list[Misalignment]:
        """The session's misalignments, oldest first (only open ones with ``unresolved``)."""
        found = self._list(oversight_q.MISALIGNMENT, actor, session_id, None)
        return [m for m in found if m.resolved_at is None] if unresolved else found

    def delete_misalignment(
        self, actor: Actor, session_id: str, misalignment_id: str
    ) -> Committed[None]:
        return self._delete(oversight_q.MISALIGNMENT, actor, session_id, misalignment_id)

    # --- hook decisions ------------------------------------------------------------

    def record_hook_decision(
        self, actor: Actor, session_id: str, decision: NewHookDecision | Mapping[str, Any]
    ) -> Committed[HookDecision]:
        """Record a hook rule's decision (allow / warn / block) on an agent event.

        Raises:
            MessageNotFound / ToolEventNotFound: the linked row is not in this
                session; nothing is written.
        """
        owner, sid = self._scope(actor, session_id)
        new = self._input(NewHookDecision, decision, "decision")
        return self._write(
            owner, sid, lambda tx: oversight_q.record_hook_decision(tx, owner, sid, new)
        )

    def update_hook_decision(
        self,
        actor: Actor,
        session_id: str,
        decision_id: str,
        update: HookDecisionUpdate | Mapping[str, Any],
    ) -> Committed[HookDecision]:
        change = self._input(HookDecisionUpdate, update, "update")
        return self._patch(oversight_q.HOOK_DECISION, actor, session_id, decision_id, change)

    def get_hook_decision(self, actor: Actor, session_id: str, decision_id: str) -> HookDecision:
        return self._get(oversight_q.HOOK_DECISION, actor, session_id, decision_id)

    def list_hook_decisions(
        self, actor: Actor, session_id: str, *, decision: Decision | str | None = None
    ) -> list[HookDecision]:
        """The session's hook decisions, oldest first; only ``decision`` ones if given."""
        wanted = choice("decision", decision, Decision)
        return self._list(oversight_q.HOOK_DECISION, actor, session_id, None, decision=wanted)

    def delete_hook_decision(
        self, actor: Actor, session_id: str, decision_id: str
    ) -> Committed[None]:
        return self._delete(oversight_q.HOOK_DECISION, actor, session_id, decision_id)
