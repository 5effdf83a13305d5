"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


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
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_parse  # our own storage format, read back by the C parser

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


# jsonb on PostgreSQL (indexable, compact), JSON text on SQLite. Python None
# is SQL NULL, not the JSON text 'null'.
JSONType: Any = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# A 64-bit integer primary key that is SQLite's rowid (INTEGER PRIMARY KEY) there.
BigIntPK: Any = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
