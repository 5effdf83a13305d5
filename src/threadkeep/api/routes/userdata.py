"""A user's data, whole, for the token's own user (docs/privacy.md).

``GET /v1/me/export`` streams the user's archive (the zip that ``threadkeep
user export`` writes). ``DELETE /v1/me?confirm=<user id>`` erases the user:
it needs the admin scope (which can already mint tokens and purge every
session, so it grants nothing new) and the user's own id repeated in
``confirm``, so that no client erases an account by a stray DELETE.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from threadkeep.api.auth import TK, Admin, Reader
from threadkeep.api.problems import ApiProblem, error_responses

router = APIRouter(tags=["users"])


class UserErased(BaseModel):
    """What an erasure over HTTP deleted. Unlike the operator's
    :class:`~threadkeep.model.userdata.UserErasure`, it does not say which blobs
    were deleted and which were kept: a blob is kept because another user's
    upload holds the same bytes, and that is a fact about other users."""

    user_id: str
    rows: dict[str, int] = Field(description="Rows deleted per table.")
    blobs: int = Field(
        description="Distinct files (by content) of the user's uploads, released. "
        "Bytes that another user's upload also holds stay theirs; which those "
        "are is not said."
    )
    changes_scrubbed: int
    txid: int


@router.get(
    "/v1/me/export",
    summary="Export all my data",
    responses={
        **error_responses(),
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
    },
    response_class=StreamingResponse,
)
def export_me(principal: Reader, tk: TK) -> StreamingResponse:
    """Everything the token's user owns as one zip archive, streamed: a JSONL file
    per table, the bytes of every upload under ``blobs/``, and ``manifest.json``
    (row counts, schema revision, sha256 of every file)."""
    user_id = principal.actor.user_id
    chunks = tk.stream_my_data(principal.actor)
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in user_id)
    headers = {"Content-Disposition": f'attachment; filename="threadkeep-{safe}.zip"'}
    return StreamingResponse(chunks, media_type="application/zip", headers=headers)


@router.delete(
    "/v1/me",
    summary="Erase me and all my data",
    responses=error_responses(body=True),
)
def erase_me(
    principal: Admin,
    tk: TK,
    confirm: Annotated[
        str,
        Query(
            min_length=1,
            max_length=128,
            description="The user's own id, repeated: the erasure cannot be undone.",
        ),
    ],
) -> UserErased:
    """Erase the token's user completely: every row (sync clients receive
    deletes), the blobs no other user shares, the change-log rows that carried
    its data, its tokens (this one included) and the user. Cannot be undone."""
    user_id = principal.actor.user_id
    if confirm != user_id:
        raise ApiProblem(
            422,
            "confirmation-mismatch",
            "Confirmation does not match",
            "pass the user's own id as ?confirm= to erase it; nothing was erased",
        )
    done = tk.erase_user(user_id)
    erased = done.value
    return UserErased(
        user_id=erased.user_id,
        rows=erased.rows,
        blobs=len(erased.blobs_deleted) + len(erased.blobs_kept),
        changes_scrubbed=erased.changes_scrubbed,
        txid=done.txid,
    )
