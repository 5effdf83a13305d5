"""The JSON checker walks values with a stack for speed; these tests pin it to
the plain recursive definition of what may be stored (kept here as the
reference), error for error, on generated values."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadkeep.errors import InvalidText
from threadkeep.model.text import MAX_DEPTH, check_json, check_text


def reference(value: Any, depth: int = 0) -> None:
    """What check_json must accept: the rules stated once, recursively."""
    if depth > MAX_DEPTH:
        raise InvalidText("f", "deep")
    if isinstance(value, str):
        check_text("f", value)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidText("f", "key")
            check_text("f", k)
            reference(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            reference(v, depth + 1)
    elif value is None or isinstance(value, bool):
        pass
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or abs(value) >= 2**63:
            raise InvalidText("f", "float")
    elif isinstance(value, int):
        if abs(value) > 2**63 - 1:
            raise InvalidText("f", "int")
    else:
        raise InvalidText("f", "type")


def verdict(fn: Any, value: Any) -> bool:
    try:
        fn(value)
    except InvalidText:
        return False
    return True


any_char = st.characters(codec=None, exclude_categories=())
texts = st.text(alphabet=any_char, max_size=8) | st.sampled_from(
    ["", "a\x00b", "\ud800", "ok", "é\udfff", "\\u0000"]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
    | st.sampled_from([2**63 - 1, -(2**63) + 1, 2**63, float(2**63), 1e20, b"bytes", object()])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(texts | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_check_json_agrees_with_the_reference(value: Any) -> None:
    assert verdict(lambda v: check_json("f", v), value) == verdict(reference, value)


def nested(depth: int, leaf: Any, container: str) -> Any:
    for _ in range(depth):
        leaf = [leaf] if container == "list" else {"k": leaf}
    return leaf


@pytest.mark.parametrize("container", ["list", "dict"])
@pytest.mark.parametrize("leaf", [1, 2**64, None, True, 1.5, [], {}, "x", "\x00", b"b"])
@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
def test_depth_limit_matches_the_reference(depth: int, leaf: Any, container: str) -> None:
    value = nested(depth, leaf, container)
    assert verdict(lambda v: check_json("f", v), value) == verdict(reference, value)


def test_str_subclass_keys_and_values_are_checked() -> None:
    class S(str):
        pass

    with pytest.raises(InvalidText):
        check_json("f", {S("a\x00"): 1})
    with pytest.raises(InvalidText):
        check_json("f", [S("\ud800")])
    assert check_json("f", {S("a"): S("b")}) == {"a": "b"}


def test_check_text_refuses_nul_and_lone_surrogates() -> None:
    assert check_text("f", "plain ascii") == "plain ascii"
    assert check_text("f", "naïve ☃") == "naïve ☃"
    with pytest.raises(InvalidText, match="NUL"):
        check_text("f", "a\x00")
    with pytest.raises(InvalidText, match="surrogate at position 2"):
        check_text("f", "ab\udc80")


@pytest.mark.parametrize("value", [2**63, -(2**63)])
def test_an_integer_out_of_range_is_named_with_the_range_refused(value: int) -> None:
    """-2**63 fits a signed 64-bit column but is refused to keep the range
    symmetric; the message must not claim it is beyond 64 bits."""
    for where in ({"x": value}, [value], value):
        with pytest.raises(InvalidText, match=r"outside ±\(2\*\*63 - 1\)"):
            check_json("metadata", where)
