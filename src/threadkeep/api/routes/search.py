"""Full-text search over the caller's messages, tool output and session titles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from threadkeep.api.auth import TK, Reader
from threadkeep.api.problems import error_responses
from threadkeep.model.messages import Role
from threadkeep.model.search import SearchKind, SearchResults
from threadkeep.service.search import MAX_OFFSET, MAX_QUERY_CHARS

router = APIRouter(tags=["search"])


@router.get("/v1/search", summary="Search", responses=error_responses())
def search(
    principal: Reader,
    tk: TK,
    q: Annotated[
        str,
        Query(
            max_length=MAX_QUERY_CHARS,
            description="Words, all of which must appear. Operators are plain text.",
        ),
    ],
    session_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    role: Annotated[Role | None, Query(description="Only messages by this role.")] = None,
    since: Annotated[AwareDatetime | None, Query(description="Created at or after.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Created before.")] = None,
    starred: Annotated[bool | None, Query(description="Only (un)starred sessions.")] = None,
    include_trashed: bool = False,
    kind: Annotated[
        list[SearchKind] | None, Query(description="What to search; default: all.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SearchResults:
    """Hits best first. Each ``snippet`` is HTML-escaped text in which
    ``<mark>``…``</mark>`` around the matched words is the only markup. An empty
    query is a 422 problem; trashed sessions are left out unless asked for."""
    return tk.search(
        principal.actor,
        q,
        session_id=session_id,
        role=role,
        since=since,
        until=until,
        starred=starred,
        include_trashed=include_trashed,
        kinds=kind,
        limit=limit,
        offset=offset,
    )
