"""A user's data, whole, for the token's own user (docs/privacy.md).

``GET /v1/me/export`` streams the user's archive (the zip that ``threadkeep
user export`` writes); ``POST /v1/me/import`` takes such an archive back, as
``threadkeep import ARCHIVE.zip`` does (the body is spooled to a temporary
file as it arrives, up to ``limits.max_import_bytes``: a zip is read from its
end, so it cannot be imported while it streams). ``DELETE
/v1/me?confirm=<user id>`` erases the user:
it needs the admin scope (which can already mint tokens and purge every
session, so it grants nothing new) and the user's own id repeated in
``confirm``, so that no client erases an account by a stray DELETE.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from threadkeep.api.auth import TK, Admin, Reader, Writer
from threadkeep.api.problems import ApiProblem, error_responses
from threadkeep.api.routes.uploads import pull_body
from threadkeep.errors import TooLarge
from threadkeep.importers import import_source
from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor

router = APIRouter(tags=["users"])

#: The import's body is read as it arrives (BodyGuard lets it by).
STREAMED_BODY = re.compile(r"/v1/me/import")
ARCHIVE = "threadkeep-archive"


class ImportProblem(BaseModel):
    where: str = Field(description="The archive's file and line (or the archive itself).")
    reason: str


class ImportedSessionResult(BaseModel):
    session_id: str
    status: str = Field(
        description="created, updated, unchanged, would_create, would_update or failed."
    )
    counts: dict[str, int]
    error: str | None = None


class ArchiveImported(BaseModel):
    """What an import of a user archive did: per root session (with its
    branches), one transaction each; a failed one wrote nothing of itself."""

    dry_run: bool
    ok: bool = Field(description="No session failed.")
    created: int = Field(description="Root sessions created (or, dry, that would be).")
    unchanged: int = Field(description="Root sessions imported before: nothing written.")
    rows: dict[str, int] = Field(description="Rows created per kind (or, dry, that would be).")
    sessions: list[ImportedSessionResult]
    failed: list[ImportProblem]
    skipped: list[ImportProblem] = Field(
        description="What the archive holds and the import left out, and why "
        "(the account row, tokens, rows of sessions the archive does not hold)."
    )


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


_ZIP_BODY = {
    "requestBody": {
        "required": True,
        "description": "The archive: the zip that GET /v1/me/export gives.",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/v1/me/import",
    summary="Import an archive of my data",
    responses=error_responses(body=True),
    openapi_extra=_ZIP_BODY,
)
async def import_me(
    request: Request,
    principal: Writer,
    tk: TK,
    dry_run: Annotated[
        bool, Query(description="Check everything, write nothing, say what would be created.")
    ] = False,
) -> ArchiveImported:
    """Import a user archive (what ``GET /v1/me/export`` gives, from this
    server or another) into the token's user: sessions with their branches,
    messages, events, the whole session record, and the uploads with their
    bytes. The whole archive is checked against its manifest first: a damaged
    or altered archive answers 422 and writes nothing. The account's row and
    tokens are not imported (the report says so). Importing the same archive
    again changes nothing. 413 past ``limits.max_import_bytes``."""
    limit = tk.limits.max_import_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge("body", int(declared), limit)  # before a byte is read
    call = functools.partial(
        _spool_and_import,
        tk,
        principal.actor,
        pull_body(request.stream().__aiter__()),
        limit,
        dry_run,
    )
    try:
        report: dict[str, Any] = await anyio.to_thread.run_sync(call)
    except ClientDisconnect:
        raise ApiProblem(
            400, "bad-request", "Bad request", "the client went away; nothing was imported"
        ) from None
    failed = [ImportProblem(**f) for f in report["failed"]]
    if not report["sessions"] and failed:
        # The archive as a whole was refused (not a zip, damaged, altered).
        raise ApiProblem(
            422,
            "archive-refused",
            "Archive refused",
            f"{failed[0].where}: {failed[0].reason}; nothing was imported",
        )
    summary = report["summary"]
    verb = "would_create" if dry_run else "created"
    return ArchiveImported(
        dry_run=dry_run,
        ok=not failed,
        created=summary[verb],
        unchanged=summary["unchanged"],
        rows={k: v for k, v in summary[f"{verb}_rows"].items() if v},
        sessions=[
            ImportedSessionResult(
                session_id=r["session_id"],
                status=r["status"],
                counts={k: v for k, v in r["counts"].items() if v},
                error=r.get("error"),
            )
            for r in report["sessions"]
        ],
        failed=failed,
        skipped=[ImportProblem(**x) for x in report["skipped"]],
    )


def _spool_and_import(
    tk: Threadkeep, actor: Actor, chunks: Iterator[bytes], limit: int, dry_run: bool
) -> dict[str, Any]:
    """Write the body to a temporary file (413 past ``limit``), import it,
    and remove the file whatever happens."""
    fd, name = tempfile.mkstemp(prefix="threadkeep-import-", suffix=".zip")
    path = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge("body", size, limit)
                f.write(chunk)
        return import_source(tk, actor, path, ARCHIVE, dry_run=dry_run).as_dict()
    finally:
        path.unlink(missing_ok=True)


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
