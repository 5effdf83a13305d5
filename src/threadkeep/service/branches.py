"""Branch operations: fork, rewind, list."""

from __future__ import annotations

from dataclasses import dataclass

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed
from threadkeep.model.ids import new_id
from threadkeep.model.sessions import MAX_TITLE, Session
from threadkeep.model.text import check_text
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor
from threadkeep.store import branches as branch_q
from threadkeep.store.contract import WriteTx


@dataclass(frozen=True, slots=True)
class Rewound:
    """The rewound session, and the branch now holding what followed the
    rewind point (None when nothing did)."""

    session: Session
    branch: Session | None


class BranchOps(ServiceBase):
    def _point(self, at_seq: int | None, message_id: str | None) -> tuple[int | None, str | None]:
        """A fork or rewind point: a seq, or a message of the session's history.
        A message id is resolved by the write itself, once it holds the
        session row: resolved before, a rewind committing meanwhile could
        move that message away and give its seq to another."""
        if (at_seq is None) == (message_id is None):
            raise InvalidInput("at", "give exactly one of a seq or a message id")
        if message_id is None:
            return args.integer("seq", at_seq), None
        return None, args.key("message_id", message_id)

    def fork_session(
        self,
        actor: Actor,
        session_id: str,
        *,
        at_seq: int | None = None,
        at_message_id: str | None = None,
        id: str | None = None,
        title: str | None = None,
    ) -> Committed[Session]:
        """A new branch sharing ``session_id``'s history up to and including the
        message at ``at_seq`` (or ``at_message_id``). Copies no messages."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        seq, message_id = self._point(at_seq, at_message_id)
        branch = args.key("id", id) if id is not None else new_id()
        if title is not None:
            if not isinstance(title, str) or len(title) > MAX_TITLE:
                raise InvalidInput("title", f"must be a string of at most {MAX_TITLE} characters")
            check_text("title", title)
        return self.engine.write(
            lambda tx: branch_q.fork(tx, owner, session_id, seq, message_id, branch, title)
        )

    def rewind_session(
        self,
        actor: Actor,
        session_id: str,
        *,
        to_seq: int | None = None,
        to_message_id: str | None = None,
        branch_id: str | None = None,
    ) -> Committed[Rewound]:
        """Make the message at ``to_seq`` the last of the session. Nothing is
        destroyed: the messages after it move to a new branch (returned)."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        seq, message_id = self._point(to_seq, to_message_id)
        branch_key = args.key("branch_id", branch_id) if branch_id is not None else new_id()

        def op(tx: WriteTx) -> Rewound:
            session, branch = branch_q.rewind(tx, owner, session_id, seq, message_id, branch_key)
            return Rewound(session, branch)

        return self.engine.write(op)

    def list_branches(self, actor: Actor, session_id: str) -> list[Session]:
        """Sessions forked from ``session_id`` (its direct branches)."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        return self.engine.read(lambda c: branch_q.list_branches(c, owner, session_id))
