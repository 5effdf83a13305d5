"""/v1/sessions: create, get, list, update, trash, restore, purge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.encoded import encoded
from threadkeep.api.problems import ApiProblem, error_responses
from threadkeep.api.routes._params import (
    IfMatch,
    SessionId,
    expected_version,
    session_written,
    with_etag,
)
from threadkeep.api.schemas import MAX_INT, Purged, SessionPage, SessionWritten
from threadkeep.model.sessions import NewSession, Session, SessionFilter, SessionPatch

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post(
    "",
    status_code=201,
    summary="Create a session",
    response_model=SessionWritten,
    responses=error_responses(409, body=True),
)
def create_session(body: NewSession, principal: Writer, tk: TK) -> Response:
    """Create a session owned by the token's user. ``id`` is optional (a UUIDv7
    is chosen when absent); a taken id answers 409."""
    return session_written(tk.create_session(principal.actor, body), 201)


@router.get("", summary="List sessions", response_model=SessionPage, responses=error_responses())
def list_sessions(
    principal: Reader,
    tk: TK,
    starred: bool | None = None,
    pinned: bool | None = None,
    archived: bool | None = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[
        str | None, Query(max_length=1000, description="Text the title contains (any case).")
    ] = None,
    trashed: Annotated[
        bool, Query(description="List the trash instead of the live sessions.")
    ] = False,
    limit: Annotated[
        int, Query(ge=1, le=MAX_INT, description="Page size (at most the server's max_page).")
    ] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="`next_cursor` of the previous page.")
    ] = None,
) -> Response:
    """The user's sessions, most recent activity first, one page at a time."""
    flt = SessionFilter(
        starred=starred,
        pinned=pinned,
        archived=archived,
        tag=tag,
        title_contains=q,
        trashed=trashed,
    )
    page = tk.list_sessions(principal.actor, flt, limit=limit, cursor=cursor)
    return encoded(SessionPage(items=page.items, next_cursor=page.next_cursor))


@router.get(
    "/{session_id}",
    summary="Get a session",
    response_model=Session,
    responses=error_responses(404),
)
def get_session(session_id: SessionId, principal: Reader, tk: TK) -> Response:
    """The session (also when in the trash), with its version as ETag."""
    session = tk.get_session(principal.actor, session_id)
    answer = encoded(session)
    with_etag(answer, session)
    return answer


@router.patch(
    "/{session_id}",
    summary="Update a session",
    response_model=SessionWritten,
    responses=error_responses(404, 409, 412, body=True),
)
def update_session(
    session_id: SessionId,
    body: SessionPatch,
    principal: Writer,
    tk: TK,
    if_match: IfMatch = None,
) -> Response:
    """Change title, tags, star, pin, archive, metadata...: only the fields sent.
    With ``If-Match``, a stale version answers 412 and changes nothing."""
    done = tk.update_session(
        principal.actor, session_id, body, expected_version=expected_version(if_match)
    )
    return session_written(done)


@router.delete(
    "/{session_id}",
    summary="Move a session to the trash (or purge it)",
    response_model=SessionWritten | Purged,
    responses=error_responses(404, 409, 412, body=True),
)
def delete_session(
    session_id: SessionId,
    principal: Writer,
    tk: TK,
    purge: Annotated[
        bool, Query(description="Delete for good, with everything in it, instead.")
    ] = False,
    if_match: IfMatch = None,
) -> Response:
    """Move the session to the trash (restorable), or with ``purge=true``
    delete it for good (409 while branches share its history)."""
    if purge:
        if if_match is not None:
            # purge_session takes no version, and checking first would race.
            raise ApiProblem(
                422,
                "invalid-input",
                "Invalid input",
                "If-Match applies to moving a session to the trash, not to purging it",
            )
        return encoded(Purged(txid=tk.purge_session(principal.actor, session_id).txid))
    done = tk.delete_session(
        principal.actor, session_id, expected_version=expected_version(if_match)
    )
    return session_written(done)


@router.post(
    "/{session_id}/restore",
    summary="Take a session out of the trash",
    response_model=SessionWritten,
    responses=error_responses(404, 412, body=True),
)
def restore_session(
    session_id: SessionId,
    principal: Writer,
    tk: TK,
    if_match: IfMatch = None,
) -> Response:
    done = tk.restore_session(
        principal.actor, session_id, expected_version=expected_version(if_match)
    )
    return session_written(done)


@router.post(
    "/{session_id}/purge",
    summary="Delete a session for good",
    responses=error_responses(404, 409, body=True),
)
def purge_session(session_id: SessionId, principal: Writer, tk: TK) -> Purged:
    """Delete the session and all it holds (409 while branches share its history)."""
    return Purged(txid=tk.purge_session(principal.actor, session_id).txid)
