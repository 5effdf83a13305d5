"""FastAPI + a peer's store: the baseline server of ``benchmarks/http.py``.

What a developer writes when they put one of the peers behind HTTP instead of
running ``threadkeep serve``: a minimal FastAPI app with the same routes the
HTTP benchmark drives, on top of a peersbench adapter (the very code the core
benchmark measured, so "the best peer" is the same object in both):

* ``POST /v1/sessions``                      -> a new session id (the peers
  create a session on its first append)
* ``POST /v1/sessions/{id}/messages``         -> ``append`` (one message) or
  ``append_many`` (a batch), durable on return
* ``GET  /v1/sessions/{id}/messages?last=N``  -> ``load(id, N)``, oldest first
* ``GET  /healthz``

The body is validated with a pydantic model, and a static bearer token is
compared in constant time (threadkeep looks its token up in the database on
every request). Sync adapters run in FastAPI's thread pool, async ones on the
event loop. It runs in the peers' virtualenv (``$PEERS_VENV``), as its own
uvicorn process (uvloop + httptools, like ``threadkeep serve``), bound to
127.0.0.1 only::

    PYTHONPATH=.:../shared/bench/peers /tmp/peers-venv/bin/python -m benchmarks.http_peer_app \
        --adapter oai-sqlitesession --port 8765 --workdir /tmp/x --token secret
"""

from __future__ import annotations

import argparse
import hmac
import inspect
import os
import types
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel, Field


class Msg(BaseModel):
    role: str = Field(min_length=1, max_length=32)
    content: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class AppendBody(BaseModel):
    messages: list[Msg] = Field(min_length=1, max_length=1000)


class NewSession(BaseModel):
    id: str | None = Field(default=None, min_length=1, max_length=128)


def build(adapter_name: str, workdir: str, token: str) -> FastAPI:
    from peersbench.adapters import load_adapter

    adapter = load_adapter(adapter_name)
    expected = f"Bearer {token}".encode()

    async def auth(authorization: Annotated[str, Header()] = "") -> None:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "bad token")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        os.makedirs(workdir, exist_ok=True)
        ctx = types.SimpleNamespace(workdir=workdir, pg_dsn=None, scale=1.0)
        done = adapter.setup(ctx)
        if inspect.isawaitable(done):
            await done
        try:
            yield
        finally:
            done = adapter.teardown()
            if inspect.isawaitable(done):
                await done

    app = FastAPI(title=f"FastAPI + {adapter_name}", lifespan=lifespan)
    Auth = Depends(auth)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "store": adapter_name}

    @app.post("/v1/sessions", status_code=201, dependencies=[Auth])
    async def create_session(body: NewSession | None = None) -> dict[str, str]:
        return {"id": (body.id if body and body.id else None) or str(uuid.uuid4())}

    def _msgs(body: AppendBody) -> list[dict[str, Any]]:
        return [m.model_dump() for m in body.messages]

    if inspect.iscoroutinefunction(adapter.append):

        @app.post("/v1/sessions/{session_id}/messages", status_code=201, dependencies=[Auth])
        async def append_async(session_id: str, body: AppendBody) -> dict[str, int]:
            msgs = _msgs(body)
            if len(msgs) == 1:
                await adapter.append(session_id, msgs[0])
            else:
                await adapter.append_many(session_id, msgs)
            return {"appended": len(msgs)}

        @app.get("/v1/sessions/{session_id}/messages", dependencies=[Auth])
        async def load_async(
            session_id: str, last: Annotated[int | None, Query(ge=1)] = None
        ) -> dict[str, Any]:
            return {"items": await adapter.load(session_id, last)}

    else:

        @app.post("/v1/sessions/{session_id}/messages", status_code=201, dependencies=[Auth])
        def append_sync(session_id: str, body: AppendBody) -> dict[str, int]:
            msgs = _msgs(body)
            if len(msgs) == 1:
                adapter.append(session_id, msgs[0])
            else:
                adapter.append_many(session_id, msgs)
            return {"appended": len(msgs)}

        @app.get("/v1/sessions/{session_id}/messages", dependencies=[Auth])
        def load_sync(
            session_id: str, last: Annotated[int | None, Query(ge=1)] = None
        ) -> dict[str, Any]:
            return {"items": adapter.load(session_id, last)}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapter", default="oai-sqlitesession", help="a peersbench adapter name")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    app = build(args.adapter, args.workdir, args.token)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
