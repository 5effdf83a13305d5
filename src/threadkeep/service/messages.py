"""Message operations: append (one, a batch, with events), and reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadkeep.errors import AlreadyExists, InvalidInput
from threadkeep.model.common import Actor, Committed
from threadkeep.model.events import NewTimelineEvent, NewToolEvent
from threadkeep.model.messages import Appended, Message, NewMessage
from threadkeep.model.text import check_size, json_size, message_size
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor, coerce
from threadkeep.store import messages as message_q

MessageInput = NewMessage | Mapping[str, Any]
ToolEventInput = NewToolEvent | Mapping[str, Any]
TimelineEventInput = NewTimelineEvent | Mapping[str, Any]


class MessageOps(ServiceBase):
    def _message(self, value: MessageInput, i: int) -> NewMessage:
        m = coerce(NewMessage, value, f"messages[{i}]")
        size = message_size(m.content, m.parts, m.tool_calls, m.metadata)
        check_size(f"messages[{i}]", size, self.limits.max_message_bytes)
        return m

    def _json_limited(self, field: str, *values: Any) -> None:
        limit = self.limits.max_json_bytes
        check_size(field, sum(json_size(v) for v in values if v is not None), limit)

    def append(
        self,
        actor: Actor,
        session_id: str,
        messages: Sequence[MessageInput] = (),
        *,
        tool_events: Sequence[ToolEventInput] = (),
        timeline_events: Sequence[TimelineEventInput] = (),
    ) -> Committed[Appended]:
        """Append messages, tool events and timeline events in one transaction.

        Messages get the next seq numbers of the session, in the order given.
        A message whose ``client_id`` the session already holds is not written
        again: the stored message is returned in its place.

        Raises:
            SessionNotFound: no such session for this actor.
            InvalidState: the session is in the trash.
            InvalidInput / InvalidText / TooLarge: bad input; nothing is written.
        """
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        messages = args.items("messages", messages)
        tool_events = args.items("tool_events", tool_events)
        timeline_events = args.items("timeline_events", timeline_events)
        total = len(messages) + len(tool_events) + len(timeline_events)
        if total == 0:
            raise InvalidInput("messages", "nothing to append")
        if total > self.limits.max_batch:
            raise InvalidInput("messages", f"at most {self.limits.max_batch} items per append")
        new = [self._message(m, i) for i, m in enumerate(messages)]
        tools = [coerce(NewToolEvent, e, f"tool_events[{i}]") for i, e in enumerate(tool_events)]
        for i, t in enumerate(tools):
            self._json_limited(f"tool_events[{i}]", t.input, t.output)
        timeline = [
            coerce(NewTimelineEvent, e, f"timeline_events[{i}]")
            for i, e in enumerate(timeline_events)
        ]
        for i, e in enumerate(timeline):
            self._json_limited(f"timeline_events[{i}]", e.payload)
        pinned: list[NewMessage] | None = None
        if not tools and not timeline:
            fast = message_q.append_at_once(self.engine, owner, session_id, new)
            if isinstance(fast, Committed):
                return fast
            if fast is not None:
                new = pinned = fast.pinned
        try:
            return self.engine.write(
                lambda tx: message_q.append(tx, owner, session_id, new, tools, timeline),
                only_inserts=True,  # an append never changes an existing message
            )
        except AlreadyExists:
            if pinned is None:
                raise
            # The one-statement attempt committed though its answer was lost.
            found = self.engine.read(
                lambda c: message_q.read_committed_attempt(c, owner, session_id, pinned)
            )
            if found is None:
                raise
            return found

    def append_messages(
        self, actor: Actor, session_id: str, messages: Sequence[MessageInput]
    ) -> Committed[list[Message]]:
        """Append a batch of messages atomically (see :meth:`append`)."""
        done = self.append(actor, session_id, messages)
        return Committed(done.value.messages, done.txid)

    def append_message(
        self, actor: Actor, session_id: str, message: MessageInput
    ) -> Committed[Message]:
        """Append one message (see :meth:`append`)."""
        done = self.append(actor, session_id, [message])
        return Committed(done.value.messages[0], done.txid)

    def get_messages(
        self,
        actor: Actor,
        session_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages of the session's history (a branch includes its inherited
        part), oldest first, with seq > ``after_seq`` and < ``before_seq``."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        args.optional_integer("after_seq", after_seq)
        args.optional_integer("before_seq", before_seq)
        if limit is not None:
            self._page_limit(limit)
        return self.engine.read(
            lambda c: message_q.read_history(
                c, owner, session_id, after_seq=after_seq, before_seq=before_seq, limit=limit
            )
        )

    def last_messages(
        self, actor: Actor, session_id: str, n: int, *, before_seq: int | None = None
    ) -> list[Message]:
        """The last ``n`` messages (before ``before_seq`` if given), oldest first:
        what a chat UI shows first, and pages back from."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        args.optional_integer("before_seq", before_seq)
        self._page_limit(n)
        fast = self.engine.read(
            lambda c: message_q.read_last_of_root(c, owner, session_id, n, before_seq),
            single_statement=True,
        )
        if fast is not None:
            return fast
        return self.engine.read(
            lambda c: message_q.read_history(
                c, owner, session_id, before_seq=before_seq, limit=n, newest=True
            )
        )

    def get_history(self, actor: Actor, session_id: str) -> list[Message]:
        """The session's whole history as one ordered list (for a branch: the
        parent's messages up to the fork, then the branch's own)."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        return self.engine.read(lambda c: message_q.read_history(c, owner, session_id))

    def get_message(self, actor: Actor, message_id: str) -> Message:
        owner = check_actor(actor)
        message_id = args.key("message_id", message_id)
        return self.engine.read(lambda c: message_q.get_message(c, owner, message_id))

    def count_messages(self, actor: Actor, session_id: str) -> int:
        """How many messages the session's history holds, without reading them."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        return self.engine.read(lambda c: message_q.count_messages(c, owner, session_id))
