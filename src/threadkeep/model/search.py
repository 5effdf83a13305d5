"""Full-text search results."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class SearchKind(StrEnum):
    """What a hit is: named after the table it comes from."""

    MESSAGES = "messages"
    TOOL_EVENTS = "tool_events"
    SESSIONS = "sessions"


MARK_OPEN = "<mark>"
MARK_CLOSE = "</mark>"


class SearchHit(BaseModel):
    """One ranked hit.

    ``snippet`` is HTML-safe: the matched text is escaped (``&``, ``<``, ``>``,
    quotes) and ``<mark>``…``</mark>`` around each matched word is the only
    markup it can contain, so a UI may render it as HTML.
    """

    model_config = ConfigDict(frozen=True)

    kind: SearchKind
    id: str
    session_id: str
    session_title: str | None
    # Messages: where the message sits and who wrote it.
    seq: int | None = None
    role: str | None = None
    # Tool events: the tool and the message that called it.
    name: str | None = None
    message_id: str | None = None
    snippet: str
    # Higher is better; comparable within one result list only.
    score: float
    created_at: datetime


class SearchResults(BaseModel):
    """A page of hits, best first. ``next_offset`` is None on the last page."""

    model_config = ConfigDict(frozen=True)

    items: list[SearchHit]
    next_offset: int | None


class SearchIndexCheck(BaseModel):
    """How one SQLite search index compares with its table.

    ``missing`` rows are not found by search, and a purge of a session that
    holds one fails (the delete trigger asks FTS5 to remove words it never
    held); ``stale`` entries point at rows that are gone or should not be
    indexed. Either way ``threadkeep reindex`` repairs it.
    """

    model_config = ConfigDict(frozen=True)

    kind: SearchKind
    #: The index's table: ``search_sessions`` holds the titles' words,
    #: ``search_titles`` their trigrams (the list's title filter).
    index: str
    #: Rows of the table that should be in the index.
    expected: int
    missing: int
    stale: int

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.stale == 0
