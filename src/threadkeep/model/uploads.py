"""Uploads: files attached to a session. The metadata is a row; the bytes live
in the blob store under their sha256."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from threadkeep.errors import InvalidInput
from threadkeep.model.text import check_text

MAX_FILENAME = 255
MAX_MEDIA_TYPE = 255
DEFAULT_MEDIA_TYPE = "application/octet-stream"
# type/subtype with optional parameters (RFC 9110 tokens), e.g. text/plain; charset=utf-8
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[^;\x00-\x1f]*)*"
)


class Upload(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    owner_id: str
    session_id: str
    filename: str
    media_type: str
    size: int
    sha256: str
    created_at: datetime


def check_filename(value: object) -> str:
    """A file's name as given (it is never used as a path): 1 to 255 characters of
    storable text without control characters."""
    if not isinstance(value, str):
        raise InvalidInput("filename", f"must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_FILENAME:
        raise InvalidInput("filename", f"must be 1 to {MAX_FILENAME} characters")
    check_text("filename", value)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidInput("filename", "must not hold control characters")
    return value


def check_media_type(value: object) -> str:
    """A media type such as ``image/png`` or ``text/plain; charset=utf-8``."""
    if not isinstance(value, str):
        raise InvalidInput("media_type", f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_MEDIA_TYPE or not _MEDIA_TYPE.fullmatch(value):
        raise InvalidInput(
            "media_type", f"must be a media type like image/png (at most {MAX_MEDIA_TYPE} chars)"
        )
    return value


@dataclass
class UploadContent:
    """An upload's metadata and its bytes, as a stream of chunks: iterate it (once),
    or ``read()`` it whole when it is known to be small."""

    upload: Upload
    chunks: Iterator[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def read(self) -> bytes:
        return b"".join(self.chunks)
