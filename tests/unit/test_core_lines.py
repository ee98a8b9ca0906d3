"""The publish path's JSON lines (rust/python/src/pubsub/publish.rs): items found by newline,
counted and measured without a JSON scan, and arrays made lines for the careful path."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep import _core
from lockstep.errors import EnvelopeError

TS = 1700000000.25


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_count_lines_counts_every_newline(data: bytes) -> None:
    assert _core.count_lines(data) == data.count(b"\n")
    # bytes whose high bit or low bits resemble a newline (0x8a, 0x0b, 0x09) are not counted
    assert _core.count_lines(data + b"\x8a\x0b\x09\n" * 3) == data.count(b"\n") + 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20))
def test_longest_line_is_the_longest_item(items: list[bytes]) -> None:
    lines = b"".join(item + b"\n" for item in items)
    assert _core.longest_line(lines) == max((len(i) for i in items), default=0)


def test_lines_are_enveloped_one_per_item() -> None:
    lines = msgspec.json.Encoder().encode_lines([{"a": 1}, "x\ny", [1, 2]])
    envelopes = _core.encode_lines(lines, 3, "me", 1, TS, "p-")
    assert [json.loads(e)["data"] for e in envelopes] == [{"a": 1}, "x\ny", [1, 2]]
    assert [json.loads(e)["seq"] for e in envelopes] == [1, 2, 3]
    buffer, count = _core.pack_envelopes(["PUBLISH", "ch"], lines, 3, "me", 1, TS, "p-")
    assert count == 3 and buffer.count(b"PUBLISH") == 3


@pytest.mark.parametrize(
    ("lines", "count", "fragment"),
    [
        (b"1\n2\n", 3, "found 2"),
        (b"1\n\n", 2, "line 1 is empty"),
        (b"1\n2", 2, "no newline"),
        (b'"\xff"\n', 1, "invalid UTF-8"),
    ],
)
def test_lines_that_are_not_the_items_fail_the_call(lines: bytes, count: int, fragment: str) -> None:
    for call in (
        lambda: _core.encode_lines(lines, count, "me", 1, TS, "p-"),
        lambda: _core.pack_envelopes(["PUBLISH", "ch"], lines, count, "me", 1, TS, "p-"),
    ):
        with pytest.raises(EnvelopeError, match=fragment):
            call()


def test_arrays_become_lines_for_the_careful_path() -> None:
    array = b'[1, {\n  "a": [1,\n  2],\n  "s": "x\\ny"\n}, "q"]'
    lines = _core.json_lines(array)
    assert _core.count_lines(lines) == 3
    assert [json.loads(line) for line in lines.splitlines()] == json.loads(array)
    with pytest.raises(EnvelopeError, match="item 1: a raw newline inside a string"):
        _core.json_lines(b'[1, "a\nb"]')
    with pytest.raises(EnvelopeError, match="expected a JSON array"):
        _core.json_lines(b"[1,]")
    assert _core.json_lines(b"[]") == b""
