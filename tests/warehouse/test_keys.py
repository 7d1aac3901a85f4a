"""content_key: stable, order-aware, collision-free for distinct parts."""

from __future__ import annotations

import math

import pytest

from warehouse import content_key


def test_same_parts_give_same_key() -> None:
    assert content_key("task", "run-1", 0, 3) == content_key("task", "run-1", 0, 3)


def test_key_is_32_lowercase_hex_chars() -> None:
    key = content_key("run", 1)
    assert len(key) == 32
    assert set(key) <= set("0123456789abcdef")


def test_dict_key_order_does_not_matter() -> None:
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("task", "a", "b"), ("task", "b", "a")),  # part order matters
        (("task", 1), ("task", "1")),  # types matter
        (("ab", "c"), ("a", "bc")),  # no ambiguity from concatenation
        (("task", 0), ("trajectory", 0)),  # the tag separates tables
    ],
)
def test_different_parts_give_different_keys(left: tuple, right: tuple) -> None:
    assert content_key(*left) != content_key(*right)


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        content_key("difficulty", math.nan)


def test_non_json_part_is_refused() -> None:
    with pytest.raises(TypeError, match="JSON values"):
        content_key("task", object())


def test_no_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        content_key()
