"""Text checks shared by every model.

NUL bytes and lone surrogates are refused everywhere (text *and* JSON): PostgreSQL
cannot store a NUL in text or jsonb, and a lone surrogate cannot be encoded as
UTF-8. Accepting them on SQLite only would make the two engines disagree.
"""

from __future__ import annotations

from typing import Any

from threadkeep.errors import InvalidText, TooLarge
from threadkeep.model import jsontext

MAX_DEPTH = 64
_INF = float("inf")


def check_text(field: str, value: str) -> str:
    """Return ``value`` if it can be stored faithfully; raise InvalidText if not."""
    if "\x00" in value:
        raise InvalidText(field, "contains a NUL byte (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidText(field, f"contains a lone surrogate at position {exc.start}") from None
    return value


def check_json(field: str, value: Any, depth: int = 0) -> Any:
    """Check every string (keys too) of a JSON-able value; reject non-JSON types."""
    if depth > MAX_DEPTH:
        raise InvalidText(field, f"is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        check_text(field, value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidText(field, "has a key that is not a string")
            check_text(field, k)
            check_json(field, v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            check_json(field, v, depth + 1)
    elif value is None or isinstance(value, bool | int | float):
        if isinstance(value, float) and (value != value or value in (_INF, -_INF)):
            raise InvalidText(field, "holds NaN or infinity, which JSON cannot represent")
        if isinstance(value, float) and abs(value) >= 2**63:
            # PostgreSQL's jsonb keeps 1e20 as the integer 100000000000000000000,
            # so the engines would hand back different values: refused on both.
            raise InvalidText(field, "holds a number beyond the 64-bit range")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise InvalidText(field, "holds an integer beyond 64 bits")
    else:
        raise InvalidText(field, f"holds a {type(value).__name__}, which is not JSON")
    return value


def text_size(value: str) -> int:
    """Bytes of ``value`` as UTF-8. ASCII text (most text) is measured without
    encoding it."""
    return len(value) if value.isascii() else len(value.encode("utf-8"))


def message_size(content: str, *json_values: Any) -> int:
    """What the message size limit measures: the text's UTF-8 bytes plus the
    compact JSON of its structured fields (parts, tool calls, metadata)."""
    return text_size(content) + sum(json_size(v) for v in json_values if v)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON: what the size limits measure."""
    return jsontext.size(value)


def check_size(field: str, size: int, limit: int) -> None:
    if size > limit:
        raise TooLarge(field, size, limit)
