"""The two ASGI middlewares in front of every route.

* :class:`RequestContext` (outermost): gives each request an id (the client's
  ``X-Request-ID`` when it is sane, else a new one), returns it in the
  response, writes one access-log line, records the metrics, and turns an
  exception nothing else handled into a 500 problem.
* :class:`BodyGuard`: reads the body of a write request before any route sees
  it and refuses, with a problem and before anything is parsed or written, a
  body over the size limit (by ``Content-Length`` and by counting the bytes
  that arrive), one that is not UTF-8, and JSON nested deeper than the limit
  or holding ``NaN``/``Infinity`` (which Python's parser accepts but JSON does
  not). Malformed JSON itself is left to the route's parser (-> 400). A route
  that reads its body as it arrives (the message stream) is let by: it
  checks each line itself.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from email.message import Message as _ContentType

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threadkeep.api.logs import reset_request_id, set_request_id
from threadkeep.api.metrics import Metrics
from threadkeep.api.problems import ProblemSpec, problem_for, problem_response

access_log = logging.getLogger("threadkeep.access")
error_log = logging.getLogger("threadkeep.api")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def route_path(scope: Scope) -> str:
    """The path the app's routes see: below ``root_path`` when the app is
    mounted in another one (where ``path`` still holds the mount's prefix)."""
    path: str = scope.get("path") or ""
    root = scope.get("root_path") or ""
    return path[len(root) :] if root and path.startswith(root) else path


def route_template(scope: Scope) -> str:
    """The matched route's path template; a fixed label for unmatched paths."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
            if not response_started:
                status = 499  # the client went away before an answer (nginx's code)
        except Exception as exc:
            error_log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
            if response_started:
                raise  # too late for a problem body: let the server drop the connection
            response = problem_response(problem_for(exc), scope.get("path"))
            await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.in_progress.dec()
            self.metrics.observe(scope["method"], route, status, seconds)
            client = scope.get("client")
            # The path only: a query string may hold a token (the UI's ?token=).
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope.get("path", ""),
                status,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": client[0] if client else None,
                },
            )
            reset_request_id(token)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    parsed = _ContentType()
    parsed["content-type"] = content_type
    if parsed.get_content_maintype() != "application":
        return False
    subtype = parsed.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


# A JSON string (skipped whole), a bracket, or a bare NaN/Infinity, which can
# only be a token outside strings. (Numbers beyond 64 bits are refused by the
# model, model/text.py, for the library and the API alike.)
_JSON_SCAN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|NaN|Infinity', re.DOTALL)


def json_shape_problem(text: str, max_depth: int) -> str | None:
    """Why ``text`` is refused before parsing (too deep, NaN/Infinity), or None."""
    depth = 0
    for match in _JSON_SCAN.finditer(text):
        char = text[match.start()]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return f"the JSON body is nested deeper than {max_depth} levels"
        elif char in "]}":
            depth -= 1
        else:  # N or I
            return "the JSON body holds NaN or Infinity, which JSON (RFC 8259) does not allow"
    return None


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_json_depth: int,
        streamed: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        # Paths whose route reads the body as it arrives, and checks it itself.
        self.streamed = streamed

    def _too_large(self, size: str) -> ProblemSpec:
        return ProblemSpec(
            413,
            "too-large",
            "Content too large",
            f"the request body is {size} bytes; the limit is {self.max_body_bytes} bytes "
            "(split a batch into several requests)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        if self.streamed is not None and self.streamed.fullmatch(route_path(scope)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                spec = ProblemSpec(
                    400, "bad-request", "Bad request", "Content-Length is not a number"
                )
                await problem_response(spec, path)(scope, receive, send)
                return
            if int(declared) > self.max_body_bytes:
                await problem_response(self._too_large(declared), path)(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                spec = self._too_large(f"over {self.max_body_bytes}")
                await problem_response(spec, path)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(headers.get("content-type")):
            reason = self._json_problem(body)
            if reason is not None:
                spec = ProblemSpec(400, "malformed-json", "Malformed JSON", reason)
                await problem_response(spec, path)(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _json_problem(self, body: bytes) -> str | None:
        # A raw NUL never occurs in UTF-8 JSON text; it does in UTF-16, which
        # Python's json.loads would otherwise detect and accept.
        if b"\x00" in body:
            return "the body holds a raw NUL byte: JSON must be UTF-8 text"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"the body is not valid UTF-8 (bad byte at offset {exc.start})"
        return json_shape_problem(text, self.max_json_depth)
