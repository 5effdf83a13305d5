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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from types import MappingProxyType
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
    """``2026-01-02 03:04:05.123456+00``, as PostgreSQL prints timestamptz in UTC.

    ``isoformat``, not ``strftime`` nor an f-string of seven fields: a
    session's first sync formats one per message, and the f-string took
    2.3-2.5 µs of the 7 µs a message's encoding cost, against 1.4 µs."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        u = value
    elif value.tzinfo is UTC:
        u = value.replace(tzinfo=None)
    else:
        u = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat writes it in C: "2026-01-02 03:04:05.123400", and no fraction
    # at all when there are no microseconds.
    text = u.isoformat(" ")
    if u.microsecond:
        text = text.rstrip("0")
    return text + "+00"


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


# jsonb's own output spacing (", " and ": "), non-ASCII kept. One encoder for
# every value: json.dumps with any non-default argument builds a new one per
# call, and a session's first sync encodes three jsonb values per message.
_JSONB = json.JSONEncoder(ensure_ascii=False)


def _jsonb_text_function() -> Callable[[Any], str]:
    """``_JSONB.encode``, without its per-call cost.

    ``JSONEncoder.encode`` builds a new C encoder for every value it writes:
    2 of the 3.4 µs a small object such as ``{"seq": 0, "writer": 0}`` took.
    This builds it once, with the arguments ``_JSONB`` would pass, except no
    cycle check: the values come from the database or from JSON, and cannot
    hold a cycle. Where the interpreter has no C encoder, ``_JSONB.encode``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    escape = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or escape is None:
        return _JSONB.encode
    c_encode = make(
        None,  # markers: no cycle check
        _JSONB.default,
        escape,  # ensure_ascii=False: non-ASCII kept, as jsonb prints it
        None,  # indent
        _JSONB.key_separator,
        _JSONB.item_separator,
        _JSONB.sort_keys,
        _JSONB.skipkeys,
        _JSONB.allow_nan,
    )

    def jsonb_text(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return jsonb_text


jsonb_text = _jsonb_text_function()


def _int_text(value: Any) -> str:
    return str(int(value))


def _float_text(value: Any) -> str:
    return format_float(float(value))


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


# Each type's text form of a non-null value.
_TEXT: dict[str, Callable[[Any], str]] = {
    "jsonb": jsonb_text,
    "bool": _bool_text,
    "timestamptz": format_timestamptz,
    "int4": _int_text,
    "int8": _int_text,
    "float8": _float_text,
}


@cache
def value_text(table_name: str) -> Mapping[str, Callable[[Any], str]]:
    """Each column's text form of a non-null value; values may be the
    database's Python values or their JSON form from the change log.

    A snapshot passes this to ``shape_snapshot(encode=...)``, so that its rows
    come out of the store already encoded; the change log's rows go through
    :func:`encode_row`. Both use these functions, so a row reads the same
    either way (tests/contract/test_changes.py)."""
    return MappingProxyType(
        {name: _TEXT.get(kind, str) for name, kind in column_kinds(table_name).items()}
    )


def encode_row(table_name: str, row: dict[str, Any]) -> dict[str, str | None]:
    """The columns of ``row`` that the table has, encoded; unknown keys dropped."""
    text = value_text(table_name)
    return {k: None if v is None else text[k](v) for k, v in row.items() if k in text}
