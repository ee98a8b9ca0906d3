"""Name validation in the Rust core, through lockstep._core and lockstep.names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep import _core, names
from lockstep.errors import InvalidInputError, InvalidNameError


@pytest.mark.parametrize(
    "name", ["sprint:coordination", "agent:lifecycle", "a", "src/auth.py", "x" * 200, "a#b~c=d+e@f"]
)
def test_valid_names_pass(name: str) -> None:
    _core.validate_name(name)
    assert names.validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "it is empty"),
        ("x" * 201, "201 bytes long; the limit is 200"),
        (":x", "starts with ':'"),
        ("/x", "starts with '/'"),
        (".x", "starts with '.'"),
        ("a b", "character ' ' at position 1"),
        ("a{b}", "character '{' at position 1"),
        ("ab*", "character '*' at position 2"),
        ("café", "character 'é' at position 3"),
        ("a\nb", "position 1"),
    ],
)
def test_invalid_names_say_why(name: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        _core.validate_name(name, "channel")
    assert fragment in str(info.value)
    assert str(info.value).startswith("invalid channel name")
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)


def test_what_defaults_to_name() -> None:
    with pytest.raises(InvalidNameError, match="^invalid name"):
        _core.validate_name("")


def test_constants_match_python() -> None:
    assert _core.MAX_NAME_LEN == names.MAX_NAME_LEN == 200
    assert isinstance(_core.VERSION, str) and _core.VERSION.count(".") == 2


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _core.validate_name(b"bytes")  # type: ignore[arg-type]


@given(st.text(max_size=250))
def test_any_text_is_accepted_or_rejected_with_a_typed_error(name: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/@+=#~-")
    expected = 0 < len(name.encode()) <= 200 and name[0] not in ":/." and set(name) <= allowed
    try:
        _core.validate_name(name)
    except InvalidNameError:
        assert not expected
    else:
        assert expected
