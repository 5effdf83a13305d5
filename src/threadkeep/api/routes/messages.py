"""Messages: append (one or a batch, idempotent by client id), page, last N,
and finish a stream whose writer is gone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from threadkeep.api.auth import TK, Reader, Writer
from threadkeep.api.encoded import encoded
from threadkeep.api.problems import ApiProblem, error_responses
from threadkeep.api.routes._params import MessageId, SessionId
from threadkeep.api.schemas import (
    MAX_INT,
    AppendRequest,
    AppendResult,
    FinishMessage,
    MessageList,
    MessageWritten,
)
from threadkeep.model.messages import Message, NewMessage

router = APIRouter(tags=["messages"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description=(
            "Makes a one-message append safe to retry: it becomes the message's "
            "client_id, and a retry answers with the stored message and the "
            "original txid."
        ),
    ),
]


def _bad(detail: str) -> ApiProblem:
    return ApiProblem(422, "invalid-input", "Invalid input", detail)


def _keyed(body: AppendRequest, key: str) -> list[NewMessage]:
    if len(body.messages) != 1 or body.tool_events or body.timeline_events:
        raise _bad(
            "Idempotency-Key applies to a request with exactly one message and no "
            "events; give each message of a batch its own client_id instead"
        )
    message = body.messages[0]
    if message.client_id is not None and message.client_id != key:
        raise _bad("the message's client_id and the Idempotency-Key header differ")
    fields = message.model_dump(exclude_unset=True)
    fields["client_id"] = key
    return [NewMessage.model_validate(fields)]


@router.post(
    "/v1/sessions/{session_id}/messages",
    status_code=201,
    summary="Append messages (and events)",
    response_model=AppendResult,
    responses=error_responses(404, 409, body=True),
)
def append_messages(
    session_id: SessionId,
    body: AppendRequest,
    principal: Writer,
    tk: TK,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Append the messages in order, with any tool and timeline events, in one
    transaction. A message whose ``client_id`` the session already holds is not
    written again: the stored one is returned in its place (with its txid when
    nothing else was written)."""
    messages = _keyed(body, idempotency_key) if idempotency_key is not None else body.messages
    done = tk.append(
        principal.actor,
        session_id,
        messages,
        tool_events=body.tool_events,
        timeline_events=body.timeline_events,
    )
    result = AppendResult(
        messages=done.value.messages,
        tool_events=done.value.tool_events,
        timeline_events=done.value.timeline_events,
        txid=done.txid,
    )
    return encoded(result, status_code=201)


@router.get(
    "/v1/sessions/{session_id}/messages",
    summary="Read messages",
    response_model=MessageList,
    responses=error_responses(404),
)
def get_messages(
    session_id: SessionId,
    principal: Reader,
    tk: TK,
    after_seq: Annotated[
        int | None, Query(ge=0, le=MAX_INT, description="Only seq > after_seq.")
    ] = None,
    before_seq: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="Only seq < before_seq.")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_INT, description="At most this many.")] = None,
    last: Annotated[
        int | None,
        Query(
            ge=1, le=MAX_INT, description="The last N (before before_seq, if given), oldest first."
        ),
    ] = None,
) -> Response:
    """The session's history (a branch includes its inherited part), oldest
    first. Page forward with ``after_seq`` = the last seq seen; show the newest
    with ``last=N`` and page back with ``before_seq`` = the first seq shown."""
    if last is not None:
        if after_seq is not None or limit is not None:
            raise _bad("last=N goes with before_seq only, not with after_seq or limit")
        items = tk.last_messages(principal.actor, session_id, last, before_seq=before_seq)
    else:
        items = tk.get_messages(
            principal.actor, session_id, after_seq=after_seq, before_seq=before_seq, limit=limit
        )
    return encoded(MessageList(items=items))


@router.get(
    "/v1/sessions/{session_id}/history",
    summary="The whole history",
    tags=["branches"],
    responses=error_responses(404),
)
def get_history(session_id: SessionId, principal: Reader, tk: TK) -> MessageList:
    """Every message of the session's history in order: for a branch, its
    parent's messages up to the fork point, then its own."""
    return MessageList(items=tk.get_history(principal.actor, session_id))


@router.get("/v1/messages/{message_id}", summary="Get a message", responses=error_responses(404))
def get_message(message_id: MessageId, principal: Reader, tk: TK) -> Message:
    return tk.get_message(principal.actor, message_id)


@router.post(
    "/v1/messages/{message_id}/finish",
    summary="Finish a streaming message",
    responses=error_responses(404, 409, body=True),
)
def finish_message(
    message_id: MessageId, body: FinishMessage, principal: Writer, tk: TK
) -> MessageWritten:
    """Finish a message that is still ``streaming``, atomically, the way the
    stream's ``done`` line would: its status, and any of the fields given.

    The stream route finishes its message itself, whatever ends it. This is
    for the message whose writer died first (a killed server, a crashed agent
    holding a library stream): the app can close it at once, usually as
    ``incomplete`` with the text already stored, rather than wait for
    retention to. A message that is no longer streaming answers 409 and is
    left as it is, so a writer that finished first wins; a stream still live
    when this call lands is cut off there (its next piece answers 409)."""
    done = tk.finish_message(principal.actor, message_id, **body.model_dump(exclude_none=True))
    return MessageWritten.model_construct(**dict(done.value), txid=done.txid)
