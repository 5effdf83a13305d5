"""Misalignments and hook decisions of a session."""

from __future__ import annotations

from fastapi import APIRouter

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import error_responses
from threadkeep.api.record_schemas import (
    Deleted,
    HookDecisionList,
    HookDecisionWritten,
    MisalignmentList,
    MisalignmentWritten,
    written,
)
from threadkeep.api.routes._params import RowId, SessionId
from threadkeep.model.oversight import (
    Decision,
    HookDecision,
    HookDecisionUpdate,
    Misalignment,
    MisalignmentUpdate,
    NewHookDecision,
    NewMisalignment,
)

router = APIRouter(tags=["oversight"])


@router.post(
    "/v1/sessions/{session_id}/misalignments",
    status_code=201,
    summary="Record a misalignment",
    responses=error_responses(404, 409, body=True),
)
def record_misalignment(
    session_id: SessionId, body: NewMisalignment, principal: Writer, tk: TK
) -> MisalignmentWritten:
    """A detected deviation from the user's intent; its evidence must name
    messages or tool events of this session."""
    return written(MisalignmentWritten, tk.record_misalignment(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/misalignments",
    summary="List misalignments",
    responses=error_responses(404),
)
def list_misalignments(
    session_id: SessionId, principal: Reader, tk: TK, unresolved: bool = False
) -> MisalignmentList:
    return MisalignmentList(
        items=tk.list_misalignments(principal.actor, session_id, unresolved=unresolved)
    )


@router.get(
    "/v1/sessions/{session_id}/misalignments/{misalignment_id}",
    summary="Get a misalignment",
    responses=error_responses(404),
)
def get_misalignment(
    session_id: SessionId, misalignment_id: RowId, principal: Reader, tk: TK
) -> Misalignment:
    return tk.get_misalignment(principal.actor, session_id, misalignment_id)


@router.patch(
    "/v1/sessions/{session_id}/misalignments/{misalignment_id}",
    summary="Update a misalignment",
    responses=error_responses(404, 409, body=True),
)
def update_misalignment(
    session_id: SessionId,
    misalignment_id: RowId,
    body: MisalignmentUpdate,
    principal: Writer,
    tk: TK,
) -> MisalignmentWritten:
    return written(
        MisalignmentWritten,
        tk.update_misalignment(principal.actor, session_id, misalignment_id, body),
    )


@router.delete(
    "/v1/sessions/{session_id}/misalignments/{misalignment_id}",
    summary="Delete a misalignment",
    responses=error_responses(404, body=True),
)
def delete_misalignment(
    session_id: SessionId, misalignment_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_misalignment(principal.actor, session_id, misalignment_id).txid)


@router.post(
    "/v1/sessions/{session_id}/hook-decisions",
    status_code=201,
    summary="Record a hook decision",
    responses=error_responses(404, 409, body=True),
)
def record_hook_decision(
    session_id: SessionId, body: NewHookDecision, principal: Writer, tk: TK
) -> HookDecisionWritten:
    """A hook rule's decision (allow / warn / block) on a tool call, prompt or stop."""
    return written(HookDecisionWritten, tk.record_hook_decision(principal.actor, session_id, body))


@router.get(
    "/v1/sessions/{session_id}/hook-decisions",
    summary="List hook decisions",
    responses=error_responses(404),
)
def list_hook_decisions(
    session_id: SessionId, principal: Reader, tk: TK, decision: Decision | None = None
) -> HookDecisionList:
    return HookDecisionList(
        items=tk.list_hook_decisions(principal.actor, session_id, decision=decision)
    )


@router.get(
    "/v1/sessions/{session_id}/hook-decisions/{hook_decision_id}",
    summary="Get a hook decision",
    responses=error_responses(404),
)
def get_hook_decision(
    session_id: SessionId, hook_decision_id: RowId, principal: Reader, tk: TK
) -> HookDecision:
    return tk.get_hook_decision(principal.actor, session_id, hook_decision_id)


@router.patch(
    "/v1/sessions/{session_id}/hook-decisions/{hook_decision_id}",
    summary="Update a hook decision",
    responses=error_responses(404, 409, body=True),
)
def update_hook_decision(
    session_id: SessionId,
    hook_decision_id: RowId,
    body: HookDecisionUpdate,
    principal: Writer,
    tk: TK,
) -> HookDecisionWritten:
    return written(
        HookDecisionWritten,
        tk.update_hook_decision(principal.actor, session_id, hook_decision_id, body),
    )


@router.delete(
    "/v1/sessions/{session_id}/hook-decisions/{hook_decision_id}",
    summary="Delete a hook decision",
    responses=error_responses(404, body=True),
)
def delete_hook_decision(
    session_id: SessionId, hook_decision_id: RowId, principal: Writer, tk: TK
) -> Deleted:
    return Deleted(txid=tk.delete_hook_decision(principal.actor, session_id, hook_decision_id).txid)
