"""What every service module shares: the engine, the limits, input coercion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from threadkeep.config import Limits
from threadkeep.errors import InvalidInput, InvalidText
from threadkeep.model.common import Actor
from threadkeep.store.contract import StoreEngine

M = TypeVar("M", bound=pydantic.BaseModel)


def coerce(model: type[M], value: M | Mapping[str, Any], field: str) -> M:
    """Accept a model instance or a plain dict; a dict that does not fit raises
    InvalidInput naming the field, never pydantic's own error."""
    if isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInput(field, f"expected an object, got {type(value).__name__}")
    try:
        return model.model_validate(dict(value))
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{field}.{loc}" if loc else field
        if err["type"] == "string_unicode":  # pydantic's word for a lone surrogate
            raise InvalidText(where, "contains a lone surrogate") from None
        raise InvalidInput(where, err["msg"]) from None


def check_actor(actor: Actor) -> str:
    if not isinstance(actor, Actor) or not isinstance(actor.user_id, str) or not actor.user_id:
        raise InvalidInput("actor", "every call needs an Actor(user_id=...)")
    return actor.user_id


class ServiceBase:
    """Holds the engine and limits; the operation mixins build on it."""

    engine: StoreEngine
    limits: Limits

    def _page_limit(self, limit: int) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidInput("limit", f"must be an integer, not {type(limit).__name__}")
        if limit < 1 or limit > self.limits.max_page:
            raise InvalidInput("limit", f"must be between 1 and {self.limits.max_page}")
        return limit
