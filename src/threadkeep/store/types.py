"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

E = TypeVar("E", bound=Enum)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on both engines.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is
    stored as naive UTC text (which also sorts correctly) and made aware again on
    the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # SQLite: straight to SQLAlchemy's storage format for DATETIME (the
        # result processor parses it back). One operation stamps every row
        # with the same time, so the last conversion is kept (per thread).
        return _sqlite_datetime

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name == "sqlite":
            return _sqlite_parse  # our own storage format, read back by the C parser
        if self.impl_instance.result_processor(dialect, coltype) is None:
            # The driver hands back datetimes itself (psycopg: aware, in the
            # session's UTC): the same check as process_result_value, without
            # TypeDecorator's wrapper call per value.
            return _aware_utc
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _aware_utc(value)


_last = threading.local()


def _sqlite_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if getattr(_last, "value", None) is value:
        return _last.text  # type: ignore[no-any-return]
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
    u = value.astimezone(UTC)
    text = (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d} "
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}"
    )
    _last.value, _last.text = value, text
    return text


def _sqlite_parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        # Parsing the offset is several times cheaper than .replace(tzinfo=)
        # afterwards (keyword arguments): it matters for 10,000 rows.
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # not our naive format: parse it as before
        return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def json_result(value: Any) -> Any:
    """JSON text (SQLite) to Python values, with orjson: the result processor
    the hot read paths use (store/prepared.py). Values were checked on the way
    in (model/text.py), so it decodes them exactly as ``json.loads`` would."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        # SQLite hands back a bare JSON number as a number (as SQLAlchemy's
        # own processor allows); orjson refuses anything but text.
        if isinstance(value, int | float):
            return value
        raise


def enum_result(cls: type[E]) -> Callable[[Any], E]:
    """A result processor from stored values to ``cls``'s members: a dict
    lookup, where ``cls(value)`` costs an enum call per row."""
    members: dict[Any, E] = {m.value: m for m in cls}

    def process(value: Any) -> E:
        try:
            return members[value]
        except KeyError:
            return cls(value)  # raises the usual ValueError

    return process


# jsonb on PostgreSQL (indexable, compact), JSON text on SQLite. Python None
# is SQL NULL, not the JSON text 'null'.
JSONType: Any = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# A 64-bit integer primary key that is SQLite's rowid (INTEGER PRIMARY KEY) there.
BigIntPK: Any = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
