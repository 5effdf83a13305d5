"""Realtime sync: the ElectricSQL HTTP shape protocol (``threadkeep.sync``).

``GET /v1/shape?table=...`` (and ``/v1/shapes/{table}``, for clients that
set the table in the URL) serve the shapes that the real
``@electric-sql/client`` and TanStack DB's electric collections consume. The
owner comes from the token and the session from ``session_id``; a client's
``where``, ``params`` and ``columns`` are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from threadkeep.api.auth import Reader
from threadkeep.api.problems import ApiProblem, error_responses
from threadkeep.store.tables import SYNCED_TABLES
from threadkeep.sync.emulator import ShapeRequest
from threadkeep.sync.protocol import ProtocolError
from threadkeep.sync.proxy import forward
from threadkeep.sync.runtime import SyncRuntime
from threadkeep.sync.shapes import Shape

router = APIRouter(tags=["sync"])

SHAPE_DOC = """\
Follow a table's rows as they change, with the ElectricSQL shape protocol:
`offset=-1` gives the rows the token's user may see, then `offset` + `handle`
(+ `live=true`) give the changes after that, held up to 20 s until one
commits. Point `@electric-sql/client`'s ShapeStream or a TanStack DB electric
collection at this URL. `table` is one of the synced tables; `session_id`
narrows the shape to one session. Errors of the protocol (a bad offset, a
missing handle) answer 400 with Electric's error body; a handle that can no
longer be served answers 409 with a new `electric-handle`."""


class _JSONBytes(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def _serve(request: Request, principal: Any, table: str, session_id: str | None) -> Response:
    runtime: SyncRuntime = request.app.state.sync
    if runtime.electric_url:
        return await forward(runtime, request, principal.actor, table, session_id)
    await runtime.ensure_started()
    headers = {"vary": "Authorization"}
    try:
        if table not in SYNCED_TABLES:
            raise ProtocolError("table", f"must be one of: {', '.join(SYNCED_TABLES)}")
        req = ShapeRequest.from_query(request.query_params)
        shape = Shape(table, principal.actor.user_id, session_id)
        got = await runtime.emulator.serve(principal.actor, shape, req)
    except ProtocolError as exc:
        raise ApiProblem(
            400,
            "invalid-shape-request",
            "Invalid request",
            f"{exc.field}: {exc.message}",
            {**headers, "cache-control": "no-store"},
            [{"loc": ["query", exc.field], "msg": exc.message, "type": "protocol"}],
        ) from None
    if req.sse and got.status == 200:
        return _sse(got.body, {**headers, **got.headers})
    return _JSONBytes(got.body, status_code=got.status, headers={**headers, **got.headers})


def _sse(messages: list[Any], headers: dict[str, str]) -> Response:
    """A live answer as server-sent events: one ``data:`` event per message, the
    last an up-to-date, then the connection closes and the client reconnects.
    The client must never get a JSON body for an SSE request: it would take
    the offset from the headers and drop the rows it cannot read as events."""
    body = b"".join(b"data: " + orjson.dumps(m) + b"\n\n" for m in messages)
    return Response(body, media_type="text/event-stream", headers=headers)


@router.get(
    "/v1/shape",
    summary="Sync a shape (ElectricSQL protocol)",
    description=SHAPE_DOC,
    responses=error_responses(400, 404, 409),
)
async def shape(
    request: Request,
    principal: Reader,
    table: Annotated[str, Query(max_length=64)],
    session_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    return await _serve(request, principal, table, session_id)


@router.get(
    "/v1/shapes/{table}",
    summary="Sync a table (ElectricSQL protocol)",
    description=SHAPE_DOC,
    responses=error_responses(400, 404, 409),
)
async def shape_of_table(
    request: Request,
    principal: Reader,
    table: str,
    session_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    return await _serve(request, principal, table, session_id)
