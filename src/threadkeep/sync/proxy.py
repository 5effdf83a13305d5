"""Proxy mode: the same shape routes in front of a real Electric service.

With ``THREADKEEP_ELECTRIC_URL`` set, a shape request is authenticated here,
its protocol parameters (offset, handle, live, cursor...) forwarded, and the
shape's definition set here: ``table``, a ``where`` with ``$n`` placeholders
for the owner (and session), its ``params[n]``, and the service's ``secret``.
A client's own ``table``/``where``/``params``/``columns`` are dropped (the
columns sent are the ones tables.py declares). The answer streams back
unbuffered (a long-poll is held up to 20 s, SSE longer) with the headers the
client needs; ``public`` caching becomes ``private`` because one URL serves
different users.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor
from threadkeep.store.tables import SYNCED_TABLES, metadata
from threadkeep.sync.protocol import PROTOCOL_PARAMS
from threadkeep.sync.shapes import Shape

# Upstream headers passed back to the client (hop-by-hop and length dropped).
_PASS = ("content-type", "content-encoding", "cache-control", "etag", "retry-after")


def new_client() -> httpx.AsyncClient:
    """The upstream connection pool (one per server; SyncRuntime owns and closes
    it). Reads wait up to 90 s: a long-poll is held 20 s, SSE longer."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, read=90.0), limits=httpx.Limits(max_connections=None)
    )


def upstream_params(
    query: list[tuple[str, str]], shape: Shape, secret: str | None, schema: str | None = None
) -> list[tuple[str, str]]:
    """The query sent upstream: the client's protocol parameters, then the
    definition and the secret set here. Electric reads ``public`` unless the
    table is qualified: a store with a schema of its own names it."""
    out = [(k, v) for k, v in query if k in PROTOCOL_PARAMS]
    where, values = shape.electric_where()
    table = shape.table if schema is None else f"{schema}.{shape.table}"
    out += [("table", table), ("where", where)]
    out += [(f"params[{i}]", v) for i, v in enumerate(values, start=1)]
    # The columns tables.py declares: never the search index's generated
    # ``search_vector`` (revision 0006), which Electric would otherwise ship.
    out.append(("columns", ",".join(c.name for c in metadata.tables[shape.table].columns)))
    if secret:
        out.append(("secret", secret))
    return out


def _headers(upstream: httpx.Response) -> dict[str, str]:
    out: dict[str, str] = {"vary": "Authorization"}
    for name, value in upstream.headers.items():
        low = name.lower()
        if low.startswith("electric-") or low in _PASS:
            if low == "cache-control":
                value = value.replace("public", "private")
            out[low] = value
    return out


async def forward(
    runtime: Any, request: Request, actor: Actor, table: str, session_id: str | None
) -> Response:
    if table not in SYNCED_TABLES:
        raise InvalidInput("table", f"must be one of: {', '.join(SYNCED_TABLES)}")
    shape = Shape(table, actor.user_id, session_id)
    url = str(runtime.electric_url).rstrip("/") + "/v1/shape"
    params = upstream_params(
        list(request.query_params.multi_items()),
        shape,
        runtime.electric_secret,
        runtime.tk.engine.schema,
    )
    client = runtime.http()
    accept = request.headers.get("accept", "*/*")
    upstream = await client.send(
        client.build_request(
            "GET", url, params=httpx.QueryParams(tuple(params)), headers={"accept": accept}
        ),
        stream=True,
    )
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=_headers(upstream),
        background=BackgroundTask(upstream.aclose),
    )
