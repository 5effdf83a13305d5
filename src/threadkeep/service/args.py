"""Checks on the plain arguments of service calls (ids, seqs, limits, lists).

Model fields are checked by pydantic; these are the arguments that are not in
a model. A wrong type or unstorable text here must be a typed threadkeep
error, never a driver error from deep inside a query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from threadkeep.errors import InvalidInput
from threadkeep.model.text import check_text

MAX_KEY = 128
MAX_INT = 2**63 - 1


def key(field: str, value: Any) -> str:
    """An id: a non-empty string of at most 128 characters that can be stored."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string id, not {type(value).__name__}")
    if not value or len(value) > MAX_KEY:
        raise InvalidInput(field, f"must be 1 to {MAX_KEY} characters")
    return check_text(field, value)


def optional_key(field: str, value: Any) -> str | None:
    return None if value is None else key(field, value)


def integer(field: str, value: Any, *, minimum: int = 0) -> int:
    """A whole number in 64 bits (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, not {type(value).__name__}")
    if value < minimum or value > MAX_INT:
        raise InvalidInput(field, f"must be between {minimum} and {MAX_INT}")
    return value


def optional_integer(field: str, value: Any, *, minimum: int = 0) -> int | None:
    return None if value is None else integer(field, value, minimum=minimum)


def items(field: str, value: Any) -> Sequence[Any]:
    """A list (or tuple) of items; a dict, a string or None is a mistake."""
    if not isinstance(value, list | tuple):
        raise InvalidInput(field, f"must be a list, not {type(value).__name__}")
    return value


def mapping_or_model(field: str, value: Any, model: type) -> Any:
    if value is None or isinstance(value, model | Mapping):
        return value
    raise InvalidInput(field, f"must be an object, not {type(value).__name__}")
