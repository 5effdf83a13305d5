"""Values as Electric sends them: the text PostgreSQL itself prints for the
column's type. Checked against a real PostgreSQL server, so that an app that
moves from ``threadkeep serve``'s sync to real Electric gets the same strings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import PG_ADMIN_URL, db_property, require_pg
from threadkeep.sync import encoding
from threadkeep.sync.encoding import encode_row, format_timestamptz


@pytest.fixture(scope="module")
def server() -> Iterator[psycopg.Connection[Any]]:
    require_pg()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute("SET TimeZone TO 'UTC'")
        yield conn


def _printed(conn: psycopg.Connection[Any], value: Any, pg_type: str) -> str:
    row = conn.execute(f"SELECT %s::{pg_type}::text", (value,)).fetchone()
    assert row is not None
    return str(row[0])


ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)


@db_property(max_examples=200)
@given(naive=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), tz=ZONES)
@example(naive=datetime(2026, 1, 2, 3, 4, 5, 120000), tz=UTC)  # trailing zeros dropped
@example(naive=datetime(2026, 1, 2, 3, 4, 5), tz=UTC)  # no fraction at all
@example(naive=datetime(999, 1, 2, 3, 4, 5, 7), tz=UTC)  # a year of three digits
def test_timestamps_read_as_postgresql_prints_them(
    server: psycopg.Connection[Any], naive: datetime, tz: timezone
) -> None:
    value = naive.replace(tzinfo=tz)
    want = _printed(server, value, "timestamptz")
    assert format_timestamptz(value) == want
    # The change log holds the ISO text of the same instant.
    assert format_timestamptz(value.isoformat()) == want
    assert encode_row("messages", {"created_at": value}) == {"created_at": want}


# What threadkeep stores: no NUL and no lone surrogates (model/text.py).
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(TEXT, max_size=20)
# Objects of one key only: jsonb orders the keys of an object its own way
# (shorter first), which the encoder does not imitate.
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT, max_size=8), inner, max_size=1)
    ),
    max_leaves=12,
)


@db_property(max_examples=200)
# Not a bare None: that is a SQL NULL, which stays null (the row test below).
@given(value=JSON.filter(lambda v: v is not None))
@example(value={"k": ["é", 1, None, True, {"n": []}]})
def test_jsonb_has_postgresqls_spacing_and_keeps_non_ascii(
    server: psycopg.Connection[Any], value: Any
) -> None:
    printed = _printed(server, psycopg.types.json.Jsonb(value), "jsonb")
    assert encode_row("messages", {"metadata": value}) == {"metadata": printed}


# Any JSON value, floats and objects of many keys included: the encoder built
# once must write what json.dumps writes with jsonb's spacing.
ANY_JSON = st.recursive(
    JSON_SCALARS | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(value=ANY_JSON)
@example(value={"é": "ü\u2028", "n": [1.5, -0.0, 1e300, 2**70]})
def test_the_jsonb_encoder_built_once_writes_what_json_dumps_writes(value: Any) -> None:
    assert encoding.jsonb_text(value) == json.dumps(value, ensure_ascii=False)


def test_without_the_c_encoder_jsonb_text_falls_back_to_the_python_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    fallback = encoding._jsonb_text_function()
    assert fallback == encoding._JSONB.encode
    assert fallback({"a": [1, "é"]}) == '{"a": [1, "é"]}'


def test_a_row_keeps_its_nulls_and_drops_unknown_keys() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    row = {
        "id": "m1",
        "seq": 7,
        "parts": None,
        "metadata": {"a": [1, 2]},
        "created_at": when,
        "not_a_column": "x",
    }
    assert encode_row("messages", row) == {
        "id": "m1",
        "seq": "7",
        "parts": None,
        "metadata": '{"a": [1, 2]}',
        "created_at": "2026-01-02 03:04:05.6+00",
    }
