"""Streamed messages: start one, extend its text as tokens arrive, finish it.

A streamed reply is stored from its first token: :meth:`StreamOps.start_message`
appends it with status ``streaming`` (its seq is allocated then, so anything
appended while it streams comes after it), :meth:`~StreamOps.extend_message`
adds text, and :meth:`~StreamOps.finish_message` marks it ``complete`` or
``incomplete`` (a stream that stopped early keeps the text it got). Each call
is one transaction; a finished message never changes again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed
from threadkeep.model.messages import Message, MessageStatus, NewMessage
from threadkeep.model.text import check_json, check_size, check_text, text_size
from threadkeep.service import args
from threadkeep.service.base import check_actor
from threadkeep.service.messages import MessageOps
from threadkeep.store import messages as message_q
from threadkeep.store import streaming as stream_q

_FINAL = (MessageStatus.COMPLETE, MessageStatus.INCOMPLETE)


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {type(value).__name__}")
    return check_text(field, value)


class StreamOps(MessageOps):
    def start_message(
        self, actor: Actor, session_id: str, message: NewMessage | Mapping[str, Any]
    ) -> Committed[Message]:
        """Append ``message`` with status ``streaming``: the start of a reply
        whose text will arrive in pieces. Its seq is allocated now.

        A ``client_id`` the session already holds returns the stored message
        as it is (its status tells whether it is still streaming).

        Raises:
            SessionNotFound: no such session for this actor.
            InvalidState: the session is in the trash.
            InvalidInput / InvalidText / TooLarge: bad input; nothing is written.
        """
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        new = self._message(message, 0)
        done = self.engine.write(
            lambda tx: message_q.append(
                tx, owner, session_id, [new], status=MessageStatus.STREAMING
            )
        )
        return Committed(done.value.messages[0], done.txid)

    def extend_message(self, actor: Actor, message_id: str, delta: str) -> Committed[Message]:
        """Add ``delta`` to the end of a streaming message's content.

        Raises:
            MessageNotFound: no such message for this actor.
            InvalidState: the message is not streaming (already finished).
            InvalidText: ``delta`` holds a NUL or a lone surrogate.
            TooLarge: the content would exceed ``max_message_bytes``; the
                message keeps the text it had.
        """
        owner = check_actor(actor)
        message_id = args.key("message_id", message_id)
        delta = _text("delta", delta)
        if not delta:
            raise InvalidInput("delta", "must not be empty")
        limit = self.limits.max_message_bytes
        check_size("delta", text_size(delta), limit)
        return self.engine.write(lambda tx: stream_q.extend(tx, owner, message_id, delta, limit))

    def finish_message(
        self,
        actor: Actor,
        message_id: str,
        *,
        status: MessageStatus | str = "complete",
        content: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Committed[Message]:
        """Finish a streaming message, atomically: set its status (``complete``
        or ``incomplete``) and any of the fields given. ``content`` replaces
        the text gathered so far (e.g. the model's final, exact reply);
        ``metadata`` replaces the message's metadata; token counts given are
        added to the session's totals.

        Raises:
            MessageNotFound: no such message for this actor.
            InvalidState: the message is not streaming (finished already).
            InvalidInput / InvalidText / TooLarge: bad input; nothing is written.
        """
        owner = check_actor(actor)
        message_id = args.key("message_id", message_id)
        try:
            final = MessageStatus(status)
        except ValueError:
            final = MessageStatus.STREAMING
        if final not in _FINAL:
            raise InvalidInput("status", "must be 'complete' or 'incomplete'")
        fields: dict[str, Any] = {}
        if content is not None:
            fields["content"] = _text("content", content)
        if input_tokens is not None:
            fields["input_tokens"] = args.integer("input_tokens", input_tokens)
        if output_tokens is not None:
            fields["output_tokens"] = args.integer("output_tokens", output_tokens)
        if model is not None:
            model = _text("model", model)
            if len(model) > 200:
                raise InvalidInput("model", "must be at most 200 characters")
            fields["model"] = model
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise InvalidInput("metadata", "must be an object")
            fields["metadata"] = check_json("metadata", dict(metadata))
        limit = self.limits.max_message_bytes
        return self.engine.write(
            lambda tx: stream_q.finish(tx, owner, message_id, final, fields, limit)
        )
