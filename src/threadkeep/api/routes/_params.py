"""Parameters and headers shared by the route modules."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header, Path, Response

from threadkeep.api.encoded import encoded
from threadkeep.api.problems import ApiProblem
from threadkeep.api.schemas import SessionWritten
from threadkeep.model.common import Committed
from threadkeep.model.sessions import Session

# Ids are client-chosen text up to 128 characters; a NUL can never be one, and
# refusing it here keeps the engines from disagreeing on how to say so.
_ID = r"^[^\x00]+$"

SessionId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
MessageId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
EventId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
TokenId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
# The id of a session-record row (a todo, a snapshot...), under its session.
RowId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
UploadId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description=(
            'The session\'s ETag (its version, quoted: "3"). When it is stale the '
            "write is refused with 412 and nothing changes."
        ),
    ),
]

_ETAG = re.compile(r'"(\d{1,18})"')


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match header demands; None for no header or ``*``."""
    if if_match is None or if_match.strip() == "*":
        return None
    m = _ETAG.fullmatch(if_match.strip())
    if m is None:
        # A weak or foreign ETag never matches (If-Match compares strongly).
        raise ApiProblem(
            412,
            "precondition-failed",
            "Precondition failed",
            'If-Match must be the ETag this API returned for the session, like "3"',
        )
    return int(m.group(1))


def with_etag(response: Response, session: Session) -> None:
    response.headers["ETag"] = etag(session.version)


def session_written(done: Committed[Session], status_code: int = 200) -> Response:
    """A written session as a route answers it: the row, its txid, its ETag.
    Encoded here, in the route's worker thread (api/encoded.py): returned as
    a model, FastAPI would validate it again in another trip to the pool."""
    answer = encoded(
        SessionWritten.model_construct(**dict(done.value), txid=done.txid), status_code
    )
    with_etag(answer, done.value)
    return answer
