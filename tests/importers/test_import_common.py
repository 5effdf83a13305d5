"""The importers' shared parts, without a database: the streaming JSON array
reader, the tree-to-branches rule, text repair and timestamps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from threadkeep.importers._common import SourceError, clean, json_array, linearize, timestamp

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(values, max_size=6), chunk=st.integers(1, 64), indent=st.booleans())
@example(items=[123456, "é€😀"], chunk=1, indent=False)
def test_json_array_reads_every_element_whatever_the_chunk_size(
    tmp_path_factory: pytest.TempPathFactory, items: list[Any], chunk: int, indent: bool
) -> None:
    path = tmp_path_factory.mktemp("arr") / "a.json"
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1 if indent else None))
    assert [v for _, v in json_array(path, chunk=chunk)] == items


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[{"a": 1}, {"b": ', "element 1"),
        ('[{"a": 1} {"b": 2}]', "element 1"),
        ("42", "expected a JSON array or object"),
        ('[{"a": 1},', "not closed"),
        ('[{"a": 1},]', "element 1"),
        ("[1, 2", "not closed"),
    ],
)
def test_json_array_names_the_bad_element(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SourceError) as info:
        list(json_array(path, chunk=4))
    assert error in str(info.value)


def test_linearize_keeps_every_node_and_forks_where_paths_leave() -> None:
    parents = {"a": None, "b": "a", "c": "b", "d": "b", "e": "d", "x": "gone", "y": "x"}
    lines, orphans = linearize(parents, ["a", "b", "c", "d", "e", "x", "y"], active_leaf="c")
    assert orphans == ["x"]
    assert [(ln.keys, ln.parent, ln.fork_seq) for ln in lines] == [
        (["a", "b", "c"], None, None),
        (["d", "e"], 0, 2),
        (["x", "y"], 0, 0),
    ]
    assert sorted(k for ln in lines for k in ln.keys) == sorted(parents)


def test_linearize_inlines_side_leaves_and_refuses_cycles() -> None:
    parents = {"a": None, "side": "a", "b": "a"}
    lines, _ = linearize(parents, ["a", "side", "b"], inline=lambda k: k == "side")
    assert [ln.keys for ln in lines] == [["a", "side", "b"]]
    with pytest.raises(ValueError, match="p"):
        linearize({"r": None, "p": "q", "q": "p"}, ["r", "p", "q"])


def test_clean_replaces_what_no_engine_stores() -> None:
    assert clean({"k\x00": ["a\ud800b", 1]}) == {"k\ufffd": ["a\ufffdb", 1]}


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2025-12-03T09:00:01.120Z", "2025-12-03T09:00:01.120000+00:00"),
        (1718035200, "2024-06-10T16:00:00+00:00"),
        (1718035200512, "2024-06-10T16:00:00.512000+00:00"),
        (1733216400.5, "2024-12-03T09:00:00.500000+00:00"),
        ("2024-04-01T09:00:00", "2024-04-01T09:00:00+00:00"),
    ],
)
def test_timestamps_in_any_unit(value: Any, iso: str) -> None:
    got = timestamp(value)
    assert got is not None and got.isoformat() == iso


@pytest.mark.parametrize("value", [None, "", "soon", -5, float("nan"), True, [1]])
def test_unreadable_timestamps_are_none(value: Any) -> None:
    assert timestamp(value) is None
