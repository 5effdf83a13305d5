"""Building models from rows the database hands back.

Rows read from our own tables were validated on the way in, so reading them
back does not validate again. pydantic's ``model_construct`` already skips
validation, but still walks every field for defaults and aliases (~3.5 µs a
message here); a chat UI opening a session builds 50 to 10,000 of them. With
every field present, this sets the instance state directly (~0.7 µs), the
same state ``model_construct`` leaves (tests/model/test_trusted.py holds
that for every model it is used with).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_set_attr = object.__setattr__
_fields: dict[type[BaseModel], frozenset[str]] = {}


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of ``cls`` holding ``values`` (every field, nothing else)."""
    fields = _fields.get(cls)
    if fields is None:
        fields = _fields[cls] = frozenset(cls.model_fields)
    obj = cls.__new__(cls)
    _set_attr(obj, "__dict__", values)
    _set_attr(obj, "__pydantic_fields_set__", set(fields))  # pydantic may add to it
    _set_attr(obj, "__pydantic_extra__", None)
    _set_attr(obj, "__pydantic_private__", None)
    return obj
