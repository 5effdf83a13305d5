"""The HTTP API: ``create_app(tk, settings)`` builds the FastAPI app over one
:class:`Threadkeep`.

Layers: the routes (``api/routes/``) parse a request, call one Threadkeep
method and render its result; errors become problems in ``problems.py``; the
middlewares (``middleware.py``) give every request an id, a size-checked body,
an access-log line and metrics. The app never opens or closes the store: its
owner (``threadkeep serve``, a test) does, after the server has stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from threadkeep import __version__
from threadkeep.api import problems
from threadkeep.api.auth import checked_endpoint
from threadkeep.api.metrics import Metrics
from threadkeep.api.middleware import BodyGuard, RequestContext
from threadkeep.api.route_order import MATCH_FIRST, order_for_matching
from threadkeep.api.routes import (
    activity,
    branches,
    events,
    health,
    messages,
    oversight,
    repos,
    search,
    sessions,
    shape,
    snapshots,
    streaming,
    todos,
    tokens,
    uploads,
    userdata,
)
from threadkeep.api.settings import ApiSettings
from threadkeep.config import Settings, load_settings
from threadkeep.library import Threadkeep
from threadkeep.maintenance import MaintenanceRuntime
from threadkeep.sync.protocol import EXPOSED_HEADERS
from threadkeep.sync.runtime import SyncRuntime

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
    {"name": "todos", "description": "The agent's task list of a session."},
    {"name": "oversight", "description": "Misalignments and hook decisions."},
    {"name": "repos", "description": "Repo bindings and file changes."},
    {"name": "snapshots", "description": "Snapshots, checkpoints and the session summary."},
    {"name": "activity", "description": "Recordings and analytics events."},
    {"name": "search", "description": "Full-text search over messages, tool output and titles."},
    {"name": "sync", "description": "Realtime sync with the ElectricSQL shape protocol."},
    {"name": "uploads", "description": "Files attached to a session, streamed in and out."},
    {"name": "tokens", "description": "The calling user and its API tokens."},
    {"name": "operations", "description": "Probes and metrics (no auth)."},
]


# Every route module, in the order their routes are matched.
ROUTE_MODULES = (
    sessions,
    messages,
    streaming,
    branches,
    events,
    todos,
    oversight,
    repos,
    snapshots,
    activity,
    uploads,
    search,
    shape,
    tokens,
    userdata,
    health,
)


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
    # Loaded once, whole: sync, CORS and proxy settings come from the config
    # file and the environment too when the caller passes none.
    settings = settings or load_settings()
    api = api or settings.api
    sync_settings = settings.sync
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Under a server, sync starts here: this instance's commits must wake
        # other instances' readers (NOTIFY) even before it serves a shape
        # itself. In-process clients without a lifespan start it on first use.
        # Stopping it lets held long-polls answer before the server exits.
        if app.state.tk is not None:
            await app.state.sync.ensure_started()
            app.state.maintenance.start()  # the retention schedule, if any
        yield
        await app.state.maintenance.stop()
        await app.state.sync.stop()

    app = FastAPI(
        title="threadkeep",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.tk = tk
    app.state.settings = settings
    app.state.api_settings = api
    app.state.metrics = metrics
    app.state.sync = SyncRuntime(
        tk,
        sync_settings,
        electric_url=settings.electric_url,
        electric_secret=settings.electric_secret,
    )
    metrics.sync_held.set_function(lambda: app.state.sync.hub.held)
    # The retention schedule (started with sync, in the lifespan; never with
    # no store, an app built only for its OpenAPI schema).
    app.state.maintenance = MaintenanceRuntime(tk, settings.retention)
    problems.install(app)
    for module in ROUTE_MODULES:
        add_routes(app, module.router)
    declared = list(app.router.routes)  # what the OpenAPI document lists
    app.router.routes[:] = order_for_matching(declared, _matching_rank(app))
    # add_middleware puts each new one outside the previous: RequestContext is
    # outermost, so even BodyGuard's refusals get a request id and a log line.
    app.add_middleware(
        BodyGuard,
        max_body_bytes=api.max_body_bytes,
        max_json_depth=api.max_json_depth,
        # Routes that read their body as it arrives and check it themselves.
        streamed=re.compile(
            "|".join(
                r.pattern
                for r in (
                    streaming.STREAMED_BODY,
                    uploads.STREAMED_BODY,
                    userdata.STREAMED_BODY,
                )
            )
        ),
    )
    app.add_middleware(RequestContext, metrics=metrics)
    if sync_settings.cors_origins:
        # Outermost, so refusals and 409s carry the CORS headers too: a browser
        # must be able to read electric-handle on a 409 (electric-protocol §2.4).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sync_settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "if-match", "x-request-id"],
            expose_headers=[*EXPOSED_HEADERS, "x-request-id", "etag"],
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_schema(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=declared,
                    tags=app.openapi_tags,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# What add_api_route takes, each also an attribute of the APIRoute it made
# (route_class_override aside: every route here is a plain APIRoute).
_ROUTE_FIELDS = tuple(
    name
    for name in inspect.signature(APIRouter.add_api_route).parameters
    if name not in ("self", "path", "endpoint", "route_class_override")
)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add ``router``'s routes to the app's own router, each as its module
    declared it, rather than ``app.include_router(router)``, and each endpoint
    wrapped to check its request's token in the thread that runs it
    (auth.checked_endpoint).

    Since 0.137 FastAPI keeps an included router as a node of the route tree
    and walks it on every request, route by route, with bookkeeping in the
    scope; with sixteen route modules, finding a late route cost about 0.2 ms
    of CPU per request (the server's CPU per ``/healthz``: 1,067 µs, then
    883-900 µs flat; docs/performance.md). A flat list is what routes
    declared on the app itself get. A test checks that the OpenAPI document
    is the same either way."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r} is not an APIRoute; add it to the app another way")
        fields = {name: getattr(route, name) for name in _ROUTE_FIELDS}
        app.router.add_api_route(route.path, checked_endpoint(route.endpoint), **fields)


def _matching_rank(app: FastAPI) -> Callable[[BaseRoute], int]:
    """The sync routes first (every live long-poll finds its route at once),
    FastAPI's documentation pages last (no API request should try them), the
    rest as declared (route_order.py)."""
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}

    def rank(route: BaseRoute) -> int:
        path = getattr(route, "path", None)
        if path in MATCH_FIRST:
            return 0
        return 2 if path in docs and not isinstance(route, APIRoute) else 1

    return rank


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
