"""Operations: /healthz, /readyz, /metrics. No auth: probes and scrapers carry
no token, and none of these reveals a user's data."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from threadkeep import __version__
from threadkeep.api.auth import TK
from threadkeep.api.metrics import CONTENT_TYPE, Metrics
from threadkeep.api.problems import ApiProblem, Problem
from threadkeep.api.schemas import Health, Ready

router = APIRouter(tags=["operations"])
log = logging.getLogger("threadkeep.api")


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves requests."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"model": Problem, "description": "Database unreachable or not migrated."}},
)
def readyz(tk: TK) -> Ready:
    """200 when the database answers and its schema is at this threadkeep's
    migration head; 503 (with the reason) otherwise."""
    # Readiness asks the store directly, the one place the api looks below the
    # service layer: there is no user operation to ask it through.
    from threadkeep.store.migrate import is_current

    try:
        with tk.engine.sa_engine.connect() as conn:
            current = is_current(conn)
    except Exception as exc:
        log.warning("not ready: the database is not reachable", exc_info=exc)
        raise _not_ready("the database is not reachable") from None
    if not current:
        raise _not_ready(
            "the database schema is not at this threadkeep's revision; run `threadkeep migrate`"
        )
    return Ready(status="ready", database=tk.dialect, migrations="current")


def _not_ready(detail: str) -> ApiProblem:
    return ApiProblem(503, "not-ready", "Not ready", detail, {"Retry-After": "1"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Text exposition format."}},
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)


@router.get("/", summary="About this server", include_in_schema=True)
async def index(request: Request) -> dict[str, str]:
    """Where things are: the API under /v1, its OpenAPI schema, the docs; below
    the prefix when the app is mounted in another (docs/embedding.md)."""
    root = request.scope.get("root_path", "")
    return {
        "name": "threadkeep",
        "version": __version__,
        "api": f"{root}/v1",
        "openapi": f"{root}/openapi.json",
        "docs": f"{root}/docs",
    }
