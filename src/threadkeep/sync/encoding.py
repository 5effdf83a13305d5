"""Column schema and values as Electric sends them: PostgreSQL type names, and
every non-null value as a string in PostgreSQL's text output format.

The client parses values with the schema header (int4 → number, int8 → BigInt,
bool → "true"/"t", jsonb → JSON.parse; everything else stays a string), so the
type names here are the ones the columns have on PostgreSQL: an app that moves
from the embedded server to real Electric sees the same values.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from threadkeep.store.tables import metadata
from threadkeep.store.types import UTCDateTime


def pg_type(column: sa.Column[Any]) -> dict[str, Any]:
    t = column.type
    if isinstance(t, UTCDateTime):
        return {"type": "timestamptz"}
    if isinstance(t, sa.JSON):
        return {"type": "jsonb"}
    if isinstance(t, sa.BigInteger):
        return {"type": "int8"}
    if isinstance(t, sa.Integer):
        return {"type": "int4"}
    if isinstance(t, sa.Boolean):
        return {"type": "bool"}
    if isinstance(t, sa.Float):
        return {"type": "float8"}
    if isinstance(t, sa.Text):
        return {"type": "text"}
    if isinstance(t, sa.String):
        return {"type": "varchar", "max_length": t.length} if t.length else {"type": "text"}
    if isinstance(t, sa.types.TypeDecorator):
        return pg_type(sa.Column(column.name, t.impl))
    raise TypeError(f"no Electric type for {column.table.name}.{column.name}: {t!r}")


@cache
def table_schema(table_name: str) -> dict[str, dict[str, Any]]:
    """The ``electric-schema`` header's object for a synced table."""
    table = metadata.tables[table_name]
    pks = [c.name for c in table.primary_key.columns]
    out: dict[str, dict[str, Any]] = {}
    for col in table.columns:
        entry = pg_type(col)
        if col.name in pks:
            entry["pk_index"] = pks.index(col.name)
        if not col.nullable:
            entry["not_null"] = True
        out[col.name] = entry
    return out


@cache
def column_kinds(table_name: str) -> dict[str, str]:
    return {name: e["type"] for name, e in table_schema(table_name).items()}


def format_timestamptz(value: datetime | str) -> str:
    """``2026-01-02 03:04:05.123456+00``, as PostgreSQL prints timestamptz in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    u = value.astimezone(UTC)
    text = u.strftime("%Y-%m-%d %H:%M:%S")
    if u.microsecond:
        text += f".{u.microsecond:06d}".rstrip("0")
    return text + "+00"


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def encode_value(kind: str, value: Any) -> str | None:
    """One value in PostgreSQL text format (None stays null). ``value`` may be
    the database's Python value or its JSON form from the change log."""
    if value is None:
        return None
    if kind == "jsonb":
        # jsonb's own output spacing: ", " and ": ".
        return json.dumps(value, ensure_ascii=False)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "timestamptz":
        return format_timestamptz(value)
    if kind in ("int4", "int8"):
        return str(int(value))
    if kind == "float8":
        return format_float(float(value))
    return str(value)


def encode_row(table_name: str, row: dict[str, Any]) -> dict[str, str | None]:
    """The columns of ``row`` that the table has, encoded; unknown keys dropped."""
    kinds = column_kinds(table_name)
    return {k: encode_value(kinds[k], v) for k, v in row.items() if k in kinds}
