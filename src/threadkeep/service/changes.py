"""Reading the change log, scoped to the actor (sync builds on this)."""

from __future__ import annotations

from collections.abc import Sequence

from threadkeep.errors import InvalidInput
from threadkeep.model.changes import Change
from threadkeep.model.common import Actor
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor
from threadkeep.store import changes as change_q
from threadkeep.store.tables import SYNCED_TABLES


class ChangeOps(ServiceBase):
    def read_changes(
        self,
        actor: Actor,
        after: int = 0,
        *,
        limit: int = 1000,
        session_id: str | None = None,
        tables: Sequence[str] | None = None,
    ) -> list[Change]:
        """The actor's changes with offset > ``after``, in commit order. Following
        ``after = last offset seen`` never skips and never repeats a change."""
        owner = check_actor(actor)
        args.integer("after", after)
        session_id = args.optional_key("session_id", session_id)
        self._page_limit(limit)
        if tables is not None:
            tables = args.items("tables", tables)
            if not all(isinstance(t, str) for t in tables):
                raise InvalidInput("tables", "must be a list of table names")
            unknown = set(tables) - set(SYNCED_TABLES)
            if unknown:
                raise InvalidInput("tables", f"unknown table(s): {', '.join(sorted(unknown))}")
        self.engine.prepare_changes_read()
        return self.engine.read(
            lambda c: change_q.read_changes(
                c, after, limit=limit, owner_id=owner, session_id=session_id, tables=tables
            )
        )

    def last_offset(self) -> int:
        """The newest offset handed out so far (for a reader starting "now")."""
        self.engine.prepare_changes_read()
        return self.engine.read(change_q.last_offset)
