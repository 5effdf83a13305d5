"""Branches: fork, rewind, list."""

from __future__ import annotations

from fastapi import APIRouter, Response

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.encoded import encoded
from threadkeep.api.problems import error_responses
from threadkeep.api.routes._params import SessionId, session_written
from threadkeep.api.schemas import (
    ForkRequest,
    RewindRequest,
    RewindResult,
    SessionList,
    SessionWritten,
)

router = APIRouter(prefix="/v1/sessions/{session_id}", tags=["branches"])


@router.post(
    "/fork",
    status_code=201,
    summary="Fork a branch",
    response_model=SessionWritten,
    responses=error_responses(404, 409, body=True),
)
def fork_session(session_id: SessionId, body: ForkRequest, principal: Writer, tk: TK) -> Response:
    """A new session sharing this one's history up to and including the message
    at ``at_seq`` (or ``at_message_id``); no message is copied."""
    done = tk.fork_session(
        principal.actor,
        session_id,
        at_seq=body.at_seq,
        at_message_id=body.at_message_id,
        id=body.id,
        title=body.title,
    )
    return session_written(done, 201)


@router.post(
    "/rewind",
    summary="Rewind a session",
    response_model=RewindResult,
    responses=error_responses(404, 409, body=True),
)
def rewind_session(
    session_id: SessionId, body: RewindRequest, principal: Writer, tk: TK
) -> Response:
    """Make the message at ``to_seq`` (or ``to_message_id``) the last one.
    Nothing is destroyed: what followed moves to a new branch, returned."""
    done = tk.rewind_session(
        principal.actor,
        session_id,
        to_seq=body.to_seq,
        to_message_id=body.to_message_id,
        branch_id=body.branch_id,
    )
    return encoded(
        RewindResult(session=done.value.session, branch=done.value.branch, txid=done.txid)
    )


@router.get(
    "/branches",
    summary="List branches",
    response_model=SessionList,
    responses=error_responses(404),
)
def list_branches(session_id: SessionId, principal: Reader, tk: TK) -> Response:
    """The sessions forked from this one (its direct branches)."""
    return encoded(SessionList(items=tk.list_branches(principal.actor, session_id)))
