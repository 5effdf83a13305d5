"""Uploads: files attached to a session, streamed in and out.

``POST /v1/sessions/{id}/uploads?filename=report.pdf`` takes the file's bytes
as the raw request body (its ``Content-Type`` is the file's media type; an
optional ``sha256`` query parameter must match the bytes). The body is read
as it arrives and streamed into the blob store, never held whole; its limit
is ``limits.max_upload_bytes``, not the API's general body limit (BodyGuard
lets these paths by). ``GET /v1/uploads/{id}/content`` streams the bytes out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterator
from typing import Annotated
from urllib.parse import quote

import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.problems import ApiProblem, error_responses
from threadkeep.api.routes._params import SessionId, UploadId
from threadkeep.api.schemas import UploadList, UploadWritten
from threadkeep.errors import TooLarge
from threadkeep.model.common import Committed
from threadkeep.model.uploads import DEFAULT_MEDIA_TYPE, MAX_FILENAME, Upload

router = APIRouter(tags=["uploads"])

#: Paths whose request body the route reads as it arrives (BodyGuard lets them by).
STREAMED_BODY = re.compile(r"/v1/sessions/[^/]+/uploads")

_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file's bytes; Content-Type is the file's media type.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _written(done: Committed[Upload]) -> UploadWritten:
    return UploadWritten.model_construct(**dict(done.value), txid=done.txid)


def pull_body(body: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body as a sync iterator, for the worker thread that stores
    it: each chunk is fetched from the event loop when the store asks for it."""

    async def next_chunk() -> bytes | None:
        try:
            return await body.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


@router.post(
    "/v1/sessions/{session_id}/uploads",
    status_code=201,
    summary="Upload a file",
    responses=error_responses(404, 409, body=True),
    openapi_extra=_BINARY_BODY,
)
async def upload(
    session_id: SessionId,
    request: Request,
    principal: Writer,
    tk: TK,
    filename: Annotated[str, Query(min_length=1, max_length=MAX_FILENAME)],
    sha256: Annotated[
        str | None,
        Query(pattern=r"^[0-9a-fA-F]{64}$", description="The bytes must have this sha256."),
    ] = None,
) -> UploadWritten:
    """Attach a file to the session. The raw body is the file; it is streamed
    into the blob store as it arrives (413 past the upload size limit, 422 when
    ``sha256`` does not match; nothing is stored in either case)."""
    limit = tk.limits.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge("body", int(declared), limit)  # before a byte is read
    media_type = request.headers.get("content-type") or DEFAULT_MEDIA_TYPE
    call = functools.partial(
        tk.upload,
        principal.actor,
        session_id,
        pull_body(request.stream().__aiter__()),
        filename=filename,
        media_type=media_type,
        sha256=sha256,
    )
    try:
        return _written(await anyio.to_thread.run_sync(call))
    except ClientDisconnect:
        # The blob store dropped the partial bytes; nothing was written.
        raise ApiProblem(
            400, "bad-request", "Bad request", "the client went away; nothing was stored"
        ) from None


@router.get(
    "/v1/sessions/{session_id}/uploads",
    summary="List a session's uploads",
    responses=error_responses(404),
)
def list_uploads(session_id: SessionId, principal: Reader, tk: TK) -> UploadList:
    """The session's uploads, oldest first (metadata only)."""
    return UploadList(items=tk.list_uploads(principal.actor, session_id))


@router.get("/v1/uploads/{upload_id}", summary="Get an upload", responses=error_responses(404))
def get_upload(upload_id: UploadId, principal: Reader, tk: TK) -> Upload:
    """An upload's metadata: file name, media type, size, sha256."""
    return tk.get_upload(principal.actor, upload_id)


@router.get(
    "/v1/uploads/{upload_id}/content",
    summary="Download an upload's bytes",
    responses={
        **error_responses(404),
        200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
    },
    response_class=StreamingResponse,
)
def get_upload_content(upload_id: UploadId, principal: Reader, tk: TK) -> StreamingResponse:
    """The file's bytes, streamed, with its media type. Served as an attachment
    in a sandbox, so an uploaded HTML file can never run as this origin."""
    content = tk.open_upload(principal.actor, upload_id)
    up = content.upload
    ascii_name = up.filename.encode("ascii", "replace").decode().replace('"', "_")
    headers = {
        "Content-Length": str(up.size),
        "ETag": f'"{up.sha256}"',
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(up.filename)}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    return StreamingResponse(content.chunks, media_type=up.media_type, headers=headers)


@router.delete(
    "/v1/uploads/{upload_id}",
    summary="Delete an upload",
    responses=error_responses(404, body=True),
)
def delete_upload(upload_id: UploadId, principal: Writer, tk: TK) -> UploadWritten:
    """Delete the upload; its bytes are collected later, once no other upload
    has the same content."""
    return _written(tk.delete_upload(principal.actor, upload_id))
