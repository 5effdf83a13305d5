"""Queries on misalignments and hook decisions. Their references (evidence,
the judged tool event or message) must name rows of the same session of the
same owner; a dangling one raises before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from threadkeep.errors import HookDecisionNotFound, InvalidInput, MisalignmentNotFound
from threadkeep.model.oversight import (
    Decision,
    Evidence,
    EvidenceKind,
    HookDecision,
    HookEvent,
    Misalignment,
    MisalignmentUpdate,
    NewHookDecision,
    NewMisalignment,
    Severity,
)
from threadkeep.model.trusted import trusted
from threadkeep.store import records
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import hookify_decisions, misalignments


def _evidence(stored: list[dict[str, Any]]) -> list[Evidence]:
    return [trusted(Evidence, {"kind": EvidenceKind(e["kind"]), "id": e["id"]}) for e in stored]


MISALIGNMENT = records.Kind(
    misalignments,
    Misalignment,
    MisalignmentNotFound,
    "misalignment",
    convert={"severity": Severity, "evidence": _evidence},
)
HOOK_DECISION = records.Kind(
    hookify_decisions,
    HookDecision,
    HookDecisionNotFound,
    "hook decision",
    convert={"event": HookEvent, "decision": Decision},
)


def _check_evidence(tx: WriteTx, owner_id: str, session_id: str, ev: Sequence[Evidence]) -> None:
    records.check_refs(
        tx.conn,
        owner_id,
        session_id,
        message_ids=[e.id for e in ev if e.kind == EvidenceKind.MESSAGE],
        tool_event_ids=[e.id for e in ev if e.kind == EvidenceKind.TOOL_EVENT],
    )


def _stored(ev: Sequence[Evidence]) -> list[dict[str, str]]:
    return [{"kind": e.kind.value, "id": e.id} for e in ev]


def record_misalignment(
    tx: WriteTx, owner_id: str, session_id: str, new: NewMisalignment
) -> Misalignment:
    records.live_session(tx, owner_id, session_id)
    _check_evidence(tx, owner_id, session_id, new.evidence)
    records.check_ids_free(tx.conn, MISALIGNMENT, [new.id])
    row = {
        "id": new.id,
        "kind": new.kind,
        "severity": new.severity.value,
        "description": new.description,
        "evidence": _stored(new.evidence),
        "detected_by": new.detected_by,
        "resolved_at": None,
        "resolution": None,
    }
    return records.insert(tx, MISALIGNMENT, owner_id, session_id, [row])[0]


def update_misalignment(
    tx: WriteTx, owner_id: str, session_id: str, key: str, change: MisalignmentUpdate
) -> Misalignment:
    records.live_session(tx, owner_id, session_id)
    old = records.get_row(tx.conn, MISALIGNMENT, owner_id, session_id, key)
    values = change.model_dump(exclude_unset=True)
    for name in ("kind", "severity", "description", "evidence"):
        if name in values and values[name] is None:
            raise InvalidInput(name, "cannot be cleared")
    if change.evidence is not None:
        _check_evidence(tx, owner_id, session_id, change.evidence)
        values["evidence"] = _stored(change.evidence)
    if change.severity is not None:
        values["severity"] = change.severity.value
    if "resolved_at" in values and values["resolved_at"] is None:
        values["resolution"] = None  # reopened
    elif change.resolution is not None and change.resolved_at is None:
        values["resolved_at"] = old.resolved_at or tx.now
    if not values:
        return MISALIGNMENT.to_model(old)
    return records.update(tx, MISALIGNMENT, owner_id, session_id, key, values)


def record_hook_decision(
    tx: WriteTx, owner_id: str, session_id: str, new: NewHookDecision
) -> HookDecision:
    records.live_session(tx, owner_id, session_id)
    records.check_refs(
        tx.conn,
        owner_id,
        session_id,
        message_ids=[new.message_id],
        tool_event_ids=[new.tool_event_id],
    )
    records.check_ids_free(tx.conn, HOOK_DECISION, [new.id])
    row = new.model_dump()
    row["event"] = new.event.value
    row["decision"] = new.decision.value
    return records.insert(tx, HOOK_DECISION, owner_id, session_id, [row])[0]
