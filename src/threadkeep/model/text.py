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
    # ASCII text (most text) cannot hold a surrogate; isascii() is O(1).
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidText(field, f"contains a lone surrogate at position {exc.start}") from None
    return value


_MAX_INT = 2**63 - 1
# Symmetric, so -2**63 (which a signed 64-bit column holds) is refused too:
# the message says so rather than "beyond 64 bits".
_BEYOND_INT = "holds an integer outside ±(2**63 - 1)"
_MAX_FLOAT = float(2**63)


def check_json(field: str, value: Any, depth: int = 0) -> Any:
    """Check every string (keys too) of a JSON-able value; reject non-JSON types.

    Runs on every append (metadata, parts, tool calls), so it walks the value
    with an explicit stack and dispatches on the exact type, falling back to
    isinstance only for subclasses: a metadata dict of a few keys costs one
    call instead of one per value."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    pop, push = stack.pop, stack.append
    while stack:
        v, d = pop()
        if d > MAX_DEPTH:
            raise InvalidText(field, f"is nested deeper than {MAX_DEPTH} levels")
        t = type(v)
        if t is str:
            # check_text's verdict without the call for plain ASCII text.
            if not v.isascii() or "\x00" in v:
                check_text(field, v)
        elif t is int:
            if v > _MAX_INT or v < -_MAX_INT:
                raise InvalidText(field, _BEYOND_INT)
        elif t is dict or (t is not list and isinstance(v, dict)):
            for k, x in v.items():
                if type(k) is not str and not isinstance(k, str):
                    raise InvalidText(field, "has a key that is not a string")
                if not k.isascii() or "\x00" in k:
                    check_text(field, k)
                # The usual metadata values are settled here, without a push.
                tx = type(x)
                if d >= MAX_DEPTH:
                    push((x, d + 1))
                elif tx is str:
                    if not x.isascii() or "\x00" in x:
                        check_text(field, x)
                elif tx is int:
                    if x > _MAX_INT or x < -_MAX_INT:
                        raise InvalidText(field, _BEYOND_INT)
                elif x is not None and tx is not bool:
                    push((x, d + 1))
        elif t is list or t is tuple or isinstance(v, list | tuple):
            for x in v:
                push((x, d + 1))
        else:
            _check_scalar(field, v)
    return value


def _check_scalar(field: str, value: Any) -> None:
    if value is None or value is True or value is False:
        return
    if isinstance(value, str):  # a str subclass
        check_text(field, value)
    elif isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            raise InvalidText(field, "holds NaN or infinity, which JSON cannot represent")
        if abs(value) >= _MAX_FLOAT:
            # PostgreSQL's jsonb keeps 1e20 as the integer 100000000000000000000,
            # so the engines would hand back different values: refused on both.
            raise InvalidText(field, "holds a number beyond the 64-bit range")
    elif isinstance(value, int):
        if not isinstance(value, bool) and abs(value) > _MAX_INT:
            raise InvalidText(field, _BEYOND_INT)
    else:
        raise InvalidText(field, f"holds a {type(value).__name__}, which is not JSON")


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
