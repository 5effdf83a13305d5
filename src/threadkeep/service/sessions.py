"""Session operations: create, get, list, update, trash, restore, purge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor, Committed, Page
from threadkeep.model.ids import new_id
from threadkeep.model.sessions import NewSession, Session, SessionFilter, SessionPatch
from threadkeep.model.text import check_size, json_size
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor, coerce
from threadkeep.store import sessions as session_q


def _fields(value: Any) -> dict[str, Any]:
    """The fields a caller set, from a model or a mapping."""
    if value is None:
        return {}
    if isinstance(value, SessionPatch | SessionFilter | NewSession):
        return value.model_dump(exclude_unset=True)
    return dict(value)


class SessionOps(ServiceBase):
    def create_session(
        self, actor: Actor, session: NewSession | Mapping[str, Any] | None = None, **fields: Any
    ) -> Committed[Session]:
        """Create a session owned by ``actor``.

        Args:
            actor: the owner.
            session: a :class:`NewSession` or a dict of its fields; keyword
                arguments are the same fields (``title="..."``).

        Raises:
            AlreadyExists: a client-chosen ``id`` is taken.
            InvalidInput: a field is malformed or too large.
        """
        owner = check_actor(actor)
        args.mapping_or_model("session", session, NewSession)
        new = (
            session
            if isinstance(session, NewSession) and not fields
            else coerce(NewSession, {**_fields(session), **fields}, "session")
        )
        check_size("metadata", json_size(new.metadata), self.limits.max_json_bytes)
        session_id = new.id or new_id()
        values = new.model_dump(exclude={"id"})

        def op(tx: Any) -> Session:
            return session_q.insert_session(tx, owner, session_id, values, check_owner=True)

        return self.engine.write(op)

    def get_session(self, actor: Actor, session_id: str) -> Session:
        """The session, in the trash or not. Raises SessionNotFound."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        return self.engine.read(lambda c: session_q.get_session(c, owner, session_id))

    def list_sessions(
        self,
        actor: Actor,
        filter: SessionFilter | Mapping[str, Any] | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        **filters: Any,
    ) -> Page[Session]:
        """The actor's sessions, newest activity first, one page at a time.

        Args:
            filter: a :class:`SessionFilter` (or keyword arguments ``starred=``,
                ``pinned=``, ``archived=``, ``tag=``, ``title_contains=``,
                ``trashed=``).
            limit: page size.
            cursor: ``next_cursor`` of the previous page.
        """
        owner = check_actor(actor)
        args.mapping_or_model("filter", filter, SessionFilter)
        flt = (
            filter
            if isinstance(filter, SessionFilter) and not filters
            else coerce(SessionFilter, {**_fields(filter), **filters}, "filter")
        )
        n = self._page_limit(limit)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidInput("cursor", "must be a string returned as next_cursor")
        items, nxt = self.engine.read(
            lambda c: session_q.list_sessions(c, self.engine, owner, flt, n, cursor),
            single_statement=True,  # one SELECT, whichever the filters
        )
        return Page(items, nxt)

    def update_session(
        self,
        actor: Actor,
        session_id: str,
        patch: SessionPatch | Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        **fields: Any,
    ) -> Committed[Session]:
        """Change title, tags, flags, metadata...; only the given fields change.

        Args:
            expected_version: the ``version`` the caller last read. When given
                and stale, nothing changes and VersionConflict is raised.
        """
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        args.mapping_or_model("patch", patch, SessionPatch)
        args.optional_integer("expected_version", expected_version)
        p = (
            patch
            if isinstance(patch, SessionPatch) and not fields
            else coerce(SessionPatch, {**_fields(patch), **fields}, "patch")
        )
        changes = p.changes()
        if changes.get("metadata") is not None:
            check_size("metadata", json_size(changes["metadata"]), self.limits.max_json_bytes)
        for flag in ("state", "tags", "starred", "pinned", "archived", "metadata"):
            if flag in changes and changes[flag] is None:
                del changes[flag]  # these cannot be cleared, only set
        return self.engine.write(
            lambda tx: session_q.update_session(tx, owner, session_id, changes, expected_version)
        )

    def delete_session(
        self, actor: Actor, session_id: str, *, expected_version: int | None = None
    ) -> Committed[Session]:
        """Move a session to the trash (restorable until purged)."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        args.optional_integer("expected_version", expected_version)
        return self.engine.write(
            lambda tx: session_q.set_deleted(tx, owner, session_id, True, expected_version)
        )

    def restore_session(
        self, actor: Actor, session_id: str, *, expected_version: int | None = None
    ) -> Committed[Session]:
        """Take a session out of the trash."""
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        args.optional_integer("expected_version", expected_version)
        return self.engine.write(
            lambda tx: session_q.set_deleted(tx, owner, session_id, False, expected_version)
        )

    def purge_session(self, actor: Actor, session_id: str) -> Committed[None]:
        """Delete a session and all it holds, for good.

        Raises:
            HasBranches: branches still share its history; purge them first.
        """
        owner = check_actor(actor)
        session_id = args.key("session_id", session_id)
        return self.engine.write(lambda tx: session_q.purge_session(tx, owner, session_id))
