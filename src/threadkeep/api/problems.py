"""Errors -> RFC 9457 ``application/problem+json``: the API's only error mapping.

:func:`problem_for` decides, for any exception, the status, type and text of
the answer; :func:`problem_response` renders it. The exception handlers that
:func:`install` registers, the auth dependency and the middlewares all go
through these two, so every 4xx/5xx body has the same shape:

``type``, ``title``, ``status``, ``detail``, ``instance`` (the request path),
``request_id``, and ``errors`` (a list of ``{loc, msg, type}``) for invalid
input.
"""

from __future__ import annotations

import errno
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc as sa_exc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from threadkeep.api.logs import current_request_id
from threadkeep.errors import (
    CommitInDoubt,
    Conflict,
    InvalidInput,
    InvalidText,
    NotFound,
    StorageFull,
    StoreBusy,
    StoreClosed,
    StoreError,
    ThreadkeepError,
    TooLarge,
    VersionConflict,
)
from threadkeep.service.tokens import InvalidToken

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:threadkeep:problem:"

log = logging.getLogger("threadkeep.api")


class ProblemItem(BaseModel):
    """One reason a request's input was refused."""

    loc: list[str | int] = Field(description="Where: e.g. ['body', 'messages', 0, 'content'].")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem: the body of every 4xx and 5xx answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "urn:threadkeep:problem:not-found",
                "title": "Not found",
                "status": 404,
                "detail": "session '0190...' not found",
                "instance": "/v1/sessions/0190...",
                "request_id": "6f1c...",
            }
        }
    )

    type: str = Field(description="A URN naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The path of the request.")
    request_id: str | None = Field(default=None, description="Also in the X-Request-ID header.")
    errors: list[ProblemItem] | None = None


@dataclass
class ApiProblem(Exception):
    """A problem the API layer itself finds (auth, headers, parameters)."""

    status: int
    slug: str
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class ProblemSpec:
    status: int
    slug: str
    title: str
    detail: str | None
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None


def _safe(text: str) -> str:
    """Text fit for a UTF-8 body: a lone surrogate echoed from the input would
    make the error response itself fail to encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _loc(field_path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in field_path.replace("[", ".").replace("]", "").split("."):
        if part:
            out.append(int(part) if part.isdigit() else part)
    return out


def _validation_items(errors: Any) -> list[dict[str, Any]]:
    # Never echo "input": it may hold the bad bytes, or a secret.
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "value_error")),
        }
        for err in errors
    ]


_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("too-large", "Content too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
    507: ("storage-full", "Insufficient storage"),
}


def _by_status(
    status: int, detail: str | None, headers: dict[str, str] | None = None
) -> ProblemSpec:
    slug, title = _HTTP_TITLES.get(status, ("http-error", f"HTTP {status}"))
    return ProblemSpec(status, slug, title, detail, headers or {})


def problem_for(exc: BaseException, request: Request | None = None) -> ProblemSpec:
    """The one mapping from an exception to an HTTP problem."""
    if isinstance(exc, ApiProblem):
        return ProblemSpec(exc.status, exc.slug, exc.title, exc.detail, exc.headers, exc.errors)
    if isinstance(exc, InvalidToken):
        return ProblemSpec(
            401,
            "unauthorized",
            "Unauthorized",
            f"{exc.reason}; create a token with `threadkeep token create`",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if isinstance(exc, TooLarge):
        item = {"loc": _loc(exc.field), "msg": exc.reason, "type": "too_large"}
        return ProblemSpec(413, "too-large", "Content too large", str(exc), {}, [item])
    if isinstance(exc, InvalidInput):
        kind = "invalid_text" if isinstance(exc, InvalidText) else "invalid_input"
        item = {"loc": _loc(exc.field), "msg": exc.reason, "type": kind}
        return ProblemSpec(422, "invalid-input", "Invalid input", str(exc), {}, [item])
    if isinstance(exc, NotFound):
        return ProblemSpec(404, "not-found", "Not found", str(exc))
    if isinstance(exc, VersionConflict):
        if request is not None and "if-match" in request.headers:
            return ProblemSpec(
                412,
                "precondition-failed",
                "Precondition failed",
                f'{exc}; the current ETag is "{exc.actual}"',
                {"ETag": f'"{exc.actual}"'},
            )
        return ProblemSpec(409, "version-conflict", "Version conflict", str(exc))
    if isinstance(exc, Conflict):
        return ProblemSpec(409, "conflict", "Conflict", str(exc))
    if isinstance(exc, StoreClosed):
        return ProblemSpec(
            503, "unavailable", "Service unavailable", "the server is shutting down; retry"
        )
    if isinstance(exc, CommitInDoubt):
        # Not "retry": the write may have been applied. The client reads back
        # (or retries with the same client_id, which is safe).
        return ProblemSpec(503, "commit-in-doubt", "Commit in doubt", str(exc))
    if isinstance(exc, StoreBusy):
        return ProblemSpec(
            503,
            "database-busy",
            "Database busy",
            "every database connection stayed in use; retry",
            {"Retry-After": "1"},
        )
    if isinstance(exc, StorageFull) or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    ):
        # The OSError: a request's own temporary file (an imported archive is
        # spooled first). 507, not 503 with Retry-After: waiting does not free
        # a disk. The driver's text (a server file's path) stays in the log.
        return _by_status(
            507, "the server's disk is full; nothing was written: retry once space is freed"
        )
    if isinstance(exc, StoreError):
        # The driver's text may quote SQL or a connection string: keep it in the log.
        if isinstance(exc.__cause__, sa_exc.OperationalError):
            return ProblemSpec(
                503,
                "database-unavailable",
                "Database unavailable",
                "the database did not answer; retry later",
                {"Retry-After": "1"},
            )
        return ProblemSpec(
            500, "database-error", "Database error", "the database could not complete the request"
        )
    if isinstance(exc, RequestValidationError):
        errors = _validation_items(exc.errors())
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                why = (err.get("ctx") or {}).get("error", "")
                at = err.get("loc", ("body", "?"))[-1]
                return ProblemSpec(
                    400,
                    "malformed-json",
                    "Malformed JSON",
                    f"the request body is not valid JSON ({why} at character {at})",
                    {},
                    errors,
                )
        return ProblemSpec(
            422, "invalid-input", "Invalid input", "the request does not fit the schema", {}, errors
        )
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else None
        return _by_status(exc.status_code, detail, dict(exc.headers or {}))
    return _by_status(500, "an unexpected error; the server log has the details")


def problem_body(spec: ProblemSpec, instance: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + spec.slug,
        "title": spec.title,
        "status": spec.status,
        "detail": _safe(spec.detail) if spec.detail is not None else None,
        "instance": _safe(instance) if instance is not None else None,
        "request_id": current_request_id(),
    }
    if spec.errors is not None:
        body["errors"] = [
            {
                "loc": [p if isinstance(p, int) else _safe(str(p)) for p in e["loc"]],
                "msg": _safe(str(e["msg"])),
                "type": _safe(str(e["type"])),
            }
            for e in spec.errors
        ]
    return body


def encode_problem(spec: ProblemSpec, instance: str | None) -> bytes:
    return json.dumps(problem_body(spec, instance), ensure_ascii=False).encode("utf-8")


def problem_response(spec: ProblemSpec, instance: str | None) -> Response:
    return Response(
        encode_problem(spec, instance),
        status_code=spec.status,
        media_type=PROBLEM_JSON,
        headers=spec.headers,
    )


async def _handle(request: Request, exc: Exception) -> Response:
    spec = problem_for(exc, request)
    if spec.status >= 500:
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
    return problem_response(spec, request.url.path)


def install(app: FastAPI) -> None:
    """Route every error the app can raise through :func:`problem_for`."""
    for cls in (ThreadkeepError, ApiProblem, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(cls, _handle)


def error_responses(*statuses: int, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route, each documented with :class:`Problem`
    (app.py moves them to application/problem+json when it builds the schema):
    what every authenticated route can answer, ``statuses``, and with ``body``
    what BodyGuard answers for a write route's body (even one the route ignores)."""
    described = {
        400: (
            "Malformed JSON, a body that is not UTF-8, nested too deep, or holding NaN or Infinity."
        ),
        401: "No bearer token, or one that is unknown, revoked or expired.",
        403: "The token lacks the scope this route needs.",
        404: "No such row for this user (another user's row answers the same).",
        409: "The write clashes with the current state.",
        412: "If-Match names a stale version.",
        413: "The body or a value in it is over a size limit.",
        415: "The body is not in the media type the route reads.",
        422: "The input does not fit the schema or holds text no engine stores.",
        500: "A bug or a database error; the server log has the details.",
        503: "The database is unreachable or busy, or the server is shutting down.",
        507: "The server's disk is full: nothing was written; an operator must free space.",
    }
    wanted = {401, 403, 422, 500, 503, 507, *statuses}
    if body:
        wanted |= {400, 413}
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(wanted):
        out[status] = {"model": Problem, "description": described[status]}
    return out
