"""Streaming a message in: the client sends NDJSON lines, the server answers SSE.

``POST /v1/sessions/{id}/messages/stream`` with ``Content-Type:
application/x-ndjson``, one JSON object a line:

1. the message: ``{"role": "assistant", "model": "...", ...}`` (the fields
   of an appended message; ``content`` may hold a first piece of text);
2. any number of ``{"delta": "more text"}``;
3. optionally ``{"done": true, "content": ..., "input_tokens": ...,
   "output_tokens": ..., "model": ..., "metadata": ..., "status": ...}``: the
   end (``content``, when given, replaces the text gathered from the deltas).

The message is stored when the first line arrives (status ``streaming``, its
seq allocated), deltas are written in batches (every 50 ms or 4 KiB, not a
commit per token), and ``done`` finishes it ``complete``. When the body ends
without ``done``, the client disconnects, a line is bad or a write is
refused, the message is finished ``incomplete`` with the text stored so far:
it is never left ``streaming``.

The answer is ``text/event-stream``: ``started`` (id, seq, txid), one
``appended`` per batch written (id, length in characters, txid), ``error``
(a problem body) if the stream was cut short by a bad line or a refused
write, and ``finished`` (the final message and txid). A problem with the
first line (not JSON, not a message, unknown session...) answers an ordinary
problem+json before any event, and writes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from threadkeep.api.auth import TK, Writer
from threadkeep.api.middleware import json_shape_problem
from threadkeep.api.problems import ApiProblem, error_responses, problem_body, problem_for
from threadkeep.api.routes._params import SessionId
from threadkeep.api.schemas import FinishMessage
from threadkeep.errors import InvalidState, ThreadkeepError
from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor, Committed
from threadkeep.model.messages import Message as StoredMessage
from threadkeep.model.messages import MessageStatus
from threadkeep.model.text import check_text

router = APIRouter(tags=["messages"])
log = logging.getLogger("threadkeep.api")

#: Paths whose request body the route reads as it arrives (BodyGuard lets them by).
STREAMED_BODY = re.compile(r"/v1/sessions/[^/]+/messages/stream")
NDJSON = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})

FLUSH_SECONDS = 0.05  # text waits at most this long before it is written...
FLUSH_BYTES = 4096  # ...or until this much of it has gathered
IDLE_SECONDS = 300.0  # a stream that sends nothing for this long is cut off
# The "done" line carries what POST /v1/messages/{id}/finish takes: one list.
DONE_FIELDS = frozenset({"done", *FinishMessage.model_fields})

T = TypeVar("T")
_TIMEOUT = object()


class _Lines:
    """The request body, line by line, read straight from ASGI ``receive``
    (a receive cut short by a timeout loses nothing: the server keeps the bytes)."""

    def __init__(self, receive: Receive, max_line: int) -> None:
        self.receive = receive
        self.max_line = max_line
        self.buffer = bytearray()
        self.ended = False

    async def next(self, wait: float | None) -> bytes | object | None:
        """The next line; None at the end of the body; _TIMEOUT if nothing
        complete arrived in ``wait`` seconds. ClientDisconnect if the
        client went away."""
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            cut = self.buffer.find(b"\n")
            if cut > self.max_line or (cut < 0 and len(self.buffer) > self.max_line):
                raise ApiProblem(
                    413,
                    "too-large",
                    "Content too large",
                    f"a line of the body is over {self.max_line} bytes",
                )
            if cut >= 0:
                line = bytes(self.buffer[:cut])
                del self.buffer[: cut + 1]
                return line
            if self.ended:
                if not self.buffer:
                    return None
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            if deadline is None:
                message = await self.receive()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _TIMEOUT
                got: Message | None = None
                with anyio.move_on_after(remaining):
                    got = await self.receive()
                if got is None:
                    return _TIMEOUT
                message = got
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            self.buffer += message.get("body", b"")
            if not message.get("more_body", False):
                self.ended = True


def _parse(line: bytes, max_depth: int) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"a line is not valid UTF-8 (bad byte at offset {exc.start})") from None
    reason = json_shape_problem(text, max_depth)
    if reason is not None:
        raise _malformed(reason)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _malformed(f"a line is not valid JSON ({exc})") from None


def _malformed(detail: str) -> ApiProblem:
    return ApiProblem(400, "malformed-json", "Malformed JSON", detail)


def _invalid(detail: str) -> ApiProblem:
    return ApiProblem(422, "invalid-input", "Invalid input", detail)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n".encode()


class _Stream(Response):
    """The SSE answer; it also reads the rest of the request body."""

    def __init__(
        self,
        tk: Threadkeep,
        actor: Actor,
        started: Committed[StoredMessage],
        lines: _Lines,
        max_depth: int,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.tk = tk
        self.actor = actor
        self.message = started.value
        self.started_txid = started.txid
        self.lines = lines
        self.max_depth = max_depth
        self.finished = False
        self.client_gone = False
        self.path = ""

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.path = str(scope.get("path", ""))

        async def emit(event: str, data: dict[str, Any]) -> None:
            if self.client_gone:
                return
            try:
                await send(
                    {"type": "http.response.body", "body": _sse(event, data), "more_body": True}
                )
            except OSError:
                self.client_gone = True

        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            m = self.message
            await emit(
                "started",
                {"id": m.id, "session_id": m.session_id, "seq": m.seq, "txid": self.started_txid},
            )
            await self._pump(emit)
        finally:
            if not self.finished:
                # Disconnect, cancellation, a bug: the message must not stay streaming.
                with anyio.CancelScope(shield=True):
                    await self._finish_incomplete(emit)
        if not self.client_gone:
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass

    async def _finish_incomplete(
        self, emit: Callable[[str, dict[str, Any]], Awaitable[None]]
    ) -> None:
        try:
            done = await self._call(
                self.tk.finish_message, self.actor, self.message.id, status="incomplete"
            )
        except InvalidState:
            self.finished = True  # finished already (by a racing call): nothing to do
            return
        except Exception as exc:  # the store is closing, the database is down
            log.error("could not mark a stream incomplete: %s", type(exc).__name__, exc_info=exc)
            return
        self.finished = True
        await emit("finished", {"message": done.value.model_dump(mode="json"), "txid": done.txid})

    async def _pump(self, emit: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        pending: list[str] = []
        size = 0
        since = 0.0

        async def flush() -> None:
            nonlocal size
            if not pending:
                return
            delta = "".join(pending)
            pending.clear()
            size = 0
            done = await self._call(self.tk.extend_message, self.actor, self.message.id, delta)
            await emit(
                "appended",
                {"id": done.value.id, "length": len(done.value.content), "txid": done.txid},
            )

        try:
            while True:
                wait = IDLE_SECONDS
                if pending:
                    wait = max(0.0, since + FLUSH_SECONDS - time.monotonic())
                got = await self.lines.next(wait)
                if got is _TIMEOUT:
                    if not pending:
                        raise ApiProblem(
                            408,
                            "timeout",
                            "Request timeout",
                            f"nothing arrived for {IDLE_SECONDS:.0f} seconds",
                        )
                    await flush()
                    continue
                if got is None:  # the body ended without "done"
                    await flush()
                    return
                assert isinstance(got, bytes)
                if not got.strip():
                    continue
                item = _parse(got, self.max_depth)
                if not isinstance(item, dict):
                    raise _invalid('a line must be {"delta": "..."} or {"done": true, ...}')
                if set(item) == {"delta"}:
                    delta = item["delta"]
                    if not isinstance(delta, str):
                        raise _invalid("delta must be a string")
                    check_text("delta", delta)  # here, so the text before it is kept
                    if not delta:
                        continue
                    if not pending:
                        since = time.monotonic()
                    pending.append(delta)
                    size += len(delta)
                    if size >= FLUSH_BYTES:
                        await flush()
                elif item.get("done") is True and set(item) <= DONE_FIELDS:
                    await flush()
                    fields = {k: v for k, v in item.items() if k != "done"}
                    done = await self._call(
                        self.tk.finish_message, self.actor, self.message.id, **fields
                    )
                    self.finished = True
                    await emit(
                        "finished",
                        {"message": done.value.model_dump(mode="json"), "txid": done.txid},
                    )
                    return
                else:
                    raise _invalid('a line must be {"delta": "..."} or {"done": true, ...}')
        except ClientDisconnect:
            self.client_gone = True
            await self._flush_quietly(flush)
        except (ThreadkeepError, ApiProblem) as exc:
            await self._flush_quietly(flush)
            await emit("error", problem_body(problem_for(exc), self.path))
        except Exception as exc:
            log.error("stream failed: %s", type(exc).__name__, exc_info=exc)
            await emit("error", problem_body(problem_for(exc), self.path))

    async def _flush_quietly(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Keep the text that arrived before the stream broke, if it can be kept."""
        try:
            await flush()
        except ThreadkeepError:
            pass


@router.post(
    "/v1/sessions/{session_id}/messages/stream",
    summary="Stream a message in (NDJSON in, SSE out)",
    response_model=None,
    responses={
        200: {
            "description": "Server-sent events: started, appended, error, finished.",
            "content": {"text/event-stream": {}},
        },
        **error_responses(404, 409, 415, body=True),
    },
)
async def stream_message(
    session_id: SessionId, request: Request, principal: Writer, tk: TK
) -> Response:
    """Store a message whose text arrives in pieces (e.g. an assistant reply
    streamed from a model). The body is NDJSON: the message, then
    ``{"delta": "..."}`` lines, then optionally ``{"done": true, ...}``
    (``content``, token counts, ``model``, ``metadata``, ``status``). The
    message is stored at once with status ``streaming`` and ends ``complete``
    on ``done``, ``incomplete`` otherwise (never left streaming). The answer
    is an event stream: ``started``, ``appended`` per batch written,
    ``error``, ``finished``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in NDJSON:
        raise ApiProblem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "send the stream as application/x-ndjson: one JSON object a line",
        )
    api = request.app.state.api_settings
    lines = _Lines(request.receive, api.max_body_bytes)
    try:
        first = await lines.next(None)
        while isinstance(first, bytes) and not first.strip():
            first = await lines.next(None)
    except ClientDisconnect:
        raise ApiProblem(400, "bad-request", "Bad request", "the client went away") from None
    if not isinstance(first, bytes):
        raise _invalid("the body is empty: its first line must be the message")
    message = _parse(first, api.max_json_depth)
    if not isinstance(message, dict):
        raise _invalid("the first line must be the message, a JSON object")
    started = await anyio.to_thread.run_sync(tk.start_message, principal.actor, session_id, message)
    if started.value.status is not MessageStatus.STREAMING:
        raise ApiProblem(
            409,
            "conflict",
            "Conflict",
            f"the session already holds a finished message with client_id "
            f"{started.value.client_id!r}",
        )
    return _Stream(tk, principal.actor, started, lines, api.max_json_depth)
