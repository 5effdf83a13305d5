"""The HTTP API: ``create_app(tk, settings)`` builds the FastAPI app over one
:class:`Threadkeep`.

Layers: the routes (``api/routes/``) parse a request, call one Threadkeep
method and render its result; errors become problems in ``problems.py``; the
middlewares (``middleware.py``) give every request an id, a size-checked body,
an access-log line and metrics. The app never opens or closes the store: its
owner (``threadkeep serve``, a test) does, after the server has stopped.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from threadkeep import __version__
from threadkeep.api import problems
from threadkeep.api.metrics import Metrics
from threadkeep.api.middleware import BodyGuard, RequestContext
from threadkeep.api.routes import (
    branches,
    events,
    health,
    messages,
    sessions,
    streaming,
    tokens,
    uploads,
)
from threadkeep.api.settings import ApiSettings
from threadkeep.config import Settings, load_settings
from threadkeep.library import Threadkeep

DESCRIPTION = """\
The REST API of threadkeep, the durable store for AI chat and agent sessions.

Every route but the probes needs `Authorization: Bearer tk_...`: GET routes
the `read` scope, writes `write`, token management `admin`. Another user's ids
answer 404, exactly like missing ones. Every write answers with the `txid` of
its transaction. Errors are RFC 9457 `application/problem+json` bodies; every
answer carries an `X-Request-ID` header, also found in the server's log lines.
"""

TAGS = [
    {"name": "sessions", "description": "Conversations and agent runs."},
    {"name": "messages", "description": "The ordered turns of a session."},
    {"name": "branches", "description": "Forks, rewinds and whole histories."},
    {"name": "events", "description": "Tool calls and the activity timeline."},
    {"name": "uploads", "description": "Files attached to a session, streamed in and out."},
    {"name": "tokens", "description": "The calling user and its API tokens."},
    {"name": "operations", "description": "Probes and metrics (no auth)."},
]


def create_app(
    tk: Threadkeep, settings: Settings | None = None, *, api: ApiSettings | None = None
) -> FastAPI:
    """The API app serving ``tk``.

    Args:
        tk: an open store; the caller closes it after the server stops.
        settings: the threadkeep settings (default: loaded as usual).
        api: HTTP limits (default: ``settings.api``, i.e. defaults < the
            ``[api]`` table of the config file < ``THREADKEEP_API__*`` env).
    """
    if api is None:
        api = (settings or load_settings()).api
    metrics = Metrics()
    app = FastAPI(
        title="threadkeep",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.tk = tk
    app.state.settings = settings
    app.state.api_settings = api
    app.state.metrics = metrics
    problems.install(app)
    for module in (sessions, messages, streaming, branches, events, uploads, tokens, health):
        app.include_router(module.router)
    # add_middleware puts each new one outside the previous: RequestContext is
    # outermost, so even BodyGuard's refusals get a request id and a log line.
    app.add_middleware(
        BodyGuard,
        max_body_bytes=api.max_body_bytes,
        max_json_depth=api.max_json_depth,
        # Routes that read their body as it arrives and check it themselves.
        streamed=re.compile(f"{streaming.STREAMED_BODY.pattern}|{uploads.STREAMED_BODY.pattern}"),
    )
    app.add_middleware(RequestContext, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_schema(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _problem_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every 4xx/5xx answer as what it is: application/problem+json
    with the Problem schema (FastAPI would say application/json, and its own
    HTTPValidationError for 422)."""
    ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {problems.PROBLEM_JSON: {"schema": ref}}
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
