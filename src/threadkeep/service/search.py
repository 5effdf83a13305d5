"""Full-text search over message text, tool output and session titles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Actor
from threadkeep.model.messages import Role
from threadkeep.model.search import SearchIndexCheck, SearchKind, SearchResults
from threadkeep.model.text import check_text
from threadkeep.service import args
from threadkeep.service.base import ServiceBase, check_actor
from threadkeep.store import search as search_q
from threadkeep.store.contract import WriteTx

MAX_QUERY_CHARS = 1_000
MAX_OFFSET = 10_000
ALL_KINDS = (SearchKind.MESSAGES, SearchKind.TOOL_EVENTS, SearchKind.SESSIONS)


def _query(query: object) -> str:
    if not isinstance(query, str):
        raise InvalidInput("query", f"must be a string, not {type(query).__name__}")
    if not query.strip():
        raise InvalidInput("query", "must contain at least one word")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput("query", f"must be at most {MAX_QUERY_CHARS} characters")
    return check_text("query", query)


def _aware(field: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInput(field, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidInput(field, "must be timezone-aware")
    return value


def _kinds(kinds: object) -> list[SearchKind]:
    if isinstance(kinds, str):
        kinds = [kinds]
    out: list[SearchKind] = []
    for k in args.items("kinds", kinds):
        try:
            kind = SearchKind(k)
        except ValueError:
            allowed = ", ".join(k.value for k in SearchKind)
            raise InvalidInput("kinds", f"{k!r} is not one of {allowed}") from None
        if kind not in out:
            out.append(kind)
    if not out:
        raise InvalidInput("kinds", "name at least one kind")
    return out


def _optional_bool(field: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(field, f"must be true, false or None, not {type(value).__name__}")


class SearchOps(ServiceBase):
    def search(
        self,
        actor: Actor,
        query: str,
        *,
        session_id: str | None = None,
        role: Role | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        starred: bool | None = None,
        include_trashed: bool = False,
        kinds: Sequence[SearchKind | str] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> SearchResults:
        """Search the actor's message text, tool output and session titles.

        Every word of ``query`` must appear (words, not a query language: quotes,
        ``*``, ``NEAR``, ``:`` and the like are ordinary text). Hits are ranked
        best first; each has a ``snippet`` where the matched words are wrapped in
        ``<mark>``...``</mark>`` and the rest is HTML-escaped.

        Args:
            session_id: only hits in this session.
            role: only messages by this role (tool events and titles have none,
                so they are left out).
            since, until: created at or after ``since``, before ``until``.
            starred: only hits in starred (True) or unstarred (False) sessions.
            include_trashed: also search sessions in the trash.
            kinds: any of ``messages``, ``tool_events``, ``sessions`` (default: all).
            limit, offset: the page; ``next_offset`` of the result is the next one.
        """
        owner = check_actor(actor)
        q = _query(query)
        session_id = args.optional_key("session_id", session_id)
        if role is not None:
            try:
                role = Role(role)
            except ValueError:
                allowed = ", ".join(r.value for r in Role)
                raise InvalidInput("role", f"must be one of {allowed}") from None
        since = _aware("since", since)
        until = _aware("until", until)
        starred = _optional_bool("starred", starred)
        if not isinstance(include_trashed, bool):
            raise InvalidInput("include_trashed", "must be true or false")
        wanted = list(ALL_KINDS) if kinds is None else _kinds(kinds)
        self._page_limit(limit)
        args.integer("offset", offset)
        if offset > MAX_OFFSET:
            raise InvalidInput("offset", f"must be at most {MAX_OFFSET}")
        f = search_q.Filters(
            owner_id=owner,
            session_id=session_id,
            role=None if role is None else role.value,
            since=since,
            until=until,
            starred=starred,
            include_trashed=include_trashed,
        )
        hits, more = self.engine.read(lambda c: search_q.search(c, q, f, wanted, limit, offset))
        return SearchResults(items=hits, next_offset=offset + limit if more else None)

    def check_search_index(self) -> list[SearchIndexCheck]:
        """Compare the SQLite search index with the tables it indexes.

        An operator's check (``threadkeep doctor``), across every user. A gap
        means something wrote the tables without keeping the index: a
        threadkeep older than schema revision 0007 still running after
        another process migrated the file (docs/rollback.md), or a tool
        writing SQL directly. ``rebuild_search_index`` repairs it.

        Returns:
            One entry per index on SQLite. On PostgreSQL, whose search index
            is computed from each row and cannot drift, one entry: the title
            trigrams behind the list's title filter (revision 0013).
        """
        return self.engine.read(search_q.check_index)

    def rebuild_search_index(self) -> list[SearchIndexCheck]:
        """Rebuild the SQLite search index from the tables, in one write
        transaction (other writes wait for it: 2.3 s for 200,000 messages of
        35 words, measured). Nothing else changes and no change is logged:
        the index is not synced data. On PostgreSQL, only the title
        trigrams are rebuilt.

        Returns:
            The check of the rebuilt index, taken inside the same transaction.
        """

        def rebuild(tx: WriteTx) -> list[SearchIndexCheck]:
            search_q.rebuild(tx.conn)
            return search_q.check_index(tx.conn)

        return self.engine.write(rebuild).value
