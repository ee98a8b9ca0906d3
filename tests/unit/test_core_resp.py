"""RESP packing and the incremental reply parser of the Rust core."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep import _core
from lockstep._core import RespError, RespParser
from lockstep.errors import InvalidInputError, LockstepError, ProtocolError


def parse(data: bytes) -> list[Any]:
    p = RespParser()
    p.feed(data)
    return p.drain()


def test_pack_command_accepts_bytes_str_and_ints() -> None:
    assert _core.pack_command("SET", b"k\r\n", 5, -7, 2**64 - 1) == (
        b"*5\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n$2\r\n-7\r\n$20\r\n18446744073709551615\r\n"
    )
    assert _core.pack_command("ECHO", "café") == b"*2\r\n$4\r\nECHO\r\n$5\r\ncaf\xc3\xa9\r\n"


def test_pack_command_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="at least one argument"):
        _core.pack_command()
    with pytest.raises(TypeError, match="argument 1 must be bytes, str or int, not bool"):
        _core.pack_command("SET", True)  # bool is an int to mypy; refused at runtime
    with pytest.raises(TypeError, match="not float"):
        _core.pack_command("SET", 1.5)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        _core.pack_command("SET", 2**64)


def test_pack_commands_is_the_concatenation() -> None:
    commands = [["PING"], ("SET", b"k", 1), ["GET", "k"]]
    assert _core.pack_commands(commands) == b"".join(_core.pack_command(*c) for c in commands)
    assert _core.pack_commands([]) == b""
    with pytest.raises(InvalidInputError, match="command 1"):
        _core.pack_commands([["PING"], []])
    with pytest.raises(TypeError, match="command 0 must be a sequence of arguments, not a single str"):
        _core.pack_commands(["PING"])  # a str is a Sequence to mypy; refused at runtime


def test_pack_publish_is_one_publish_per_payload() -> None:
    payloads = [b"a", b"", b"\x00\r\n"]
    assert _core.pack_publish("chan", payloads) == b"".join(
        _core.pack_command("PUBLISH", "chan", p) for p in payloads
    )
    assert _core.pack_publish(b"chan", payloads) == _core.pack_publish("chan", payloads)
    assert _core.pack_publish("chan", []) == b""
    with pytest.raises(TypeError, match="channel must be bytes or str"):
        _core.pack_publish(1, [b"x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"payloads\[1\] must be bytes, not str"):
        _core.pack_publish("c", [b"x", "y"])  # type: ignore[list-item]
    big = [b"x" * 1000] * 1000  # large enough to run with the GIL released
    assert len(parse(_core.pack_publish("c", big))) == 1000


def test_parses_every_resp2_type() -> None:
    got = parse(
        b"+OK\r\n-ERR bad thing\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n*1\r\n:1\r\n$1\r\nx\r\n"
    )
    assert got == ["OK", RespError("ERR bad thing"), -42, b"he\r\no", b"", None, None, [], [[1], b"x"]]
    err = got[1]
    assert isinstance(err, RespError)
    assert (err.message, err.code, str(err), repr(err)) == (
        "ERR bad thing",
        "ERR",
        "ERR bad thing",
        'RespError("ERR bad thing")',
    )
    assert hash(err) == hash(RespError("ERR bad thing"))


def test_parses_the_documented_resp3_types() -> None:
    got = parse(
        b"_\r\n#t\r\n#f\r\n,1.5\r\n%2\r\n+k\r\n:1\r\n*1\r\n:2\r\n~1\r\n:3\r\n>2\r\n+message\r\n$1\r\nm\r\n=8\r\ntxt:abcd\r\n!3\r\nERR\r\n"
    )
    assert got == [None, True, False, 1.5, {"k": 1, (2,): [3]}, ["message", b"m"], b"abcd", RespError("ERR")]
    with pytest.raises(ProtocolError, match="not supported"):
        parse(b"(12345678901234567890\r\n")


STREAM = (
    b'*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$8\r\n{"id":1}\r\n+OK\r\n*2\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n:7\r\n'
)


def test_every_split_point_gives_the_same_replies() -> None:
    whole = parse(STREAM)
    assert whole == [[b"message", b"chan", b'{"id":1}'], "OK", [[1, None], RespError("ERR x")], 7]
    for cut in range(len(STREAM) + 1):
        p = RespParser()
        p.feed(STREAM[:cut])
        got = p.drain()
        assert p.buffered == cut - sum(len(x) for x in _prefix_frames(got))
        p.feed(STREAM[cut:])
        assert got + p.drain() == whole
        assert p.buffered == 0


def _prefix_frames(replies: list[Any]) -> list[bytes]:
    frames = [
        b'*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$8\r\n{"id":1}\r\n',
        b"+OK\r\n",
        b"*2\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n",
        b":7\r\n",
    ]
    return frames[: len(replies)]


def test_byte_at_a_time() -> None:
    p = RespParser()
    got: list[Any] = []
    for i in range(len(STREAM)):
        p.feed(STREAM[i : i + 1])
        got += p.drain()
    assert got == parse(STREAM)


def test_malformed_stream_raises_and_the_parser_stays_failed() -> None:
    p = RespParser()
    p.feed(b"+OK\r\n:12x\r\n+later\r\n")
    assert p.drain() == ["OK"]  # good replies before the bad bytes come first
    with pytest.raises(ProtocolError) as info:
        p.drain()
    assert info.value.offset == 6  # type: ignore[attr-defined]
    assert "malformed RESP at byte 6: expected an integer" in str(info.value)
    with pytest.raises(ProtocolError, match="byte 6"):
        p.feed(b"+OK\r\n")
    with pytest.raises(ProtocolError, match="byte 6"):
        p.drain()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"?\r\n", "byte 0: expected a RESP type byte"),
        (b"$3\r\nabcd\r\n", "byte 7: expected CRLF after a bulk string of 3 bytes"),
        (b"$-5\r\n", "expected a length of -1 or more"),
        (b"+OK\rX", "expected \\n after \\r"),
        (b"*1\r\n*1\r\n*1\r\n:1\r\n", "deeper than 2"),
        (b"$11\r\n", "bulk length 11 is over the limit of 10 bytes"),
    ],
)
def test_protocol_errors_name_offset_and_expectation(data: bytes, fragment: str) -> None:
    p = RespParser(max_bulk=10, max_depth=2)
    p.feed(data)
    with pytest.raises(ProtocolError) as info:
        p.drain()
    assert fragment in str(info.value)


def test_limits_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="max_depth must be 1 to 1000"):
        RespParser(max_depth=0)
    with pytest.raises(InvalidInputError):
        RespParser(max_depth=1001)
    with pytest.raises(OverflowError):
        RespParser(max_bulk=-1)


def test_big_reply_in_small_chunks() -> None:
    payload = b"z" * 3_000_000
    stream = _core.pack_command(payload) + b"*5000\r\n" + b"".join(b":%d\r\n" % i for i in range(5000))
    p = RespParser()
    got: list[Any] = []
    for i in range(0, len(stream), 4096):
        p.feed(stream[i : i + 4096])
        got += p.drain()
    assert got == [[payload], list(range(5000))]
    assert p.buffered == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.integers(1, 16))
def test_random_bytes_parse_or_raise_a_protocol_error(data: bytes, chunk: int) -> None:
    p = RespParser(max_bulk=1000, max_depth=8)
    try:
        for i in range(0, len(data), chunk):
            p.feed(data[i : i + chunk])
            p.drain()
        p.drain()
    except LockstepError as e:
        assert isinstance(e, ProtocolError)
        assert 0 <= e.offset <= len(data)  # type: ignore[attr-defined]


_alphabet = st.sampled_from(
    [
        b"+",
        b"-",
        b":",
        b"$",
        b"*",
        b"_",
        b"#",
        b",",
        b"%",
        b"~",
        b">",
        b"\r\n",
        b"1",
        b"-1",
        b"0",
        b"3",
        b"x",
        b"t",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_alphabet, max_size=40))
def test_resp_shaped_noise_parses_or_raises_a_protocol_error(parts: list[bytes]) -> None:
    p = RespParser(max_bulk=1000, max_depth=8)
    p.feed(b"".join(parts))
    try:
        p.drain()
    except LockstepError as e:
        assert isinstance(e, ProtocolError)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.binary(max_size=20) | st.text(max_size=10) | st.integers(-(2**63), 2**63 - 1),
            min_size=1,
            max_size=5,
        ),
        max_size=10,
    )
)
def test_packed_commands_parse_back(commands: list[list[bytes | str | int]]) -> None:
    def as_bytes(arg: bytes | str | int) -> bytes:
        return arg if isinstance(arg, bytes) else str(arg).encode()

    assert parse(_core.pack_commands(commands)) == [[as_bytes(a) for a in c] for c in commands]
