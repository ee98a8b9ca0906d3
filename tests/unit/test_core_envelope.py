"""The envelope codec of the Rust core, through lockstep._core."""

from __future__ import annotations

import inspect
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep import _core
from lockstep.errors import (
    ConfigError,
    EnvelopeError,
    InvalidInputError,
    InvalidNameError,
    LockstepError,
    MessageTooLargeError,
)

TS = 1700000000.5


def test_json_envelope_is_exactly_the_documented_bytes() -> None:
    out = _core.encode_envelope(b'{"id":1}', "agent-1", 7, TS, "ab12-7")
    assert out == b'{"ls":1,"id":"ab12-7","from":"agent-1","seq":7,"ts":1700000000.5,"data":{"id":1}}'
    # readable by any JSON parser, keys in this order
    assert list(json.loads(out)) == ["ls", "id", "from", "seq", "ts", "data"]


def test_msgpack_envelope_is_a_six_entry_map_in_the_same_order() -> None:
    data = msgspec.msgpack.encode({"id": 1})
    out = _core.encode_envelope(data, "agent-1", 7, TS, "ab12-7", codec="msgpack")
    decoded = msgspec.msgpack.decode(out)
    assert list(decoded) == ["ls", "id", "from", "seq", "ts", "data"]
    assert decoded == {"ls": 1, "id": "ab12-7", "from": "agent-1", "seq": 7, "ts": TS, "data": {"id": 1}}


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize("seq", [0, 1, 2**63, 2**64 - 1])
def test_round_trip(codec: str, seq: int) -> None:
    enc = msgspec.json.encode if codec == "json" else msgspec.msgpack.encode
    data = enc({"id": 1, "text": "café", "nested": [1, None, True, 2.5]})
    out = _core.encode_envelope(data, "sprint-2/agent@1", seq, -3.25, "p-1", codec)  # type: ignore[arg-type]
    assert _core.decode_envelope(out, codec) == ("sprint-2/agent@1", seq, -3.25, "p-1", data, "envelope")  # type: ignore[arg-type]


def test_integer_ts_is_accepted() -> None:
    out = _core.encode_envelope(b"1", "a", 1, 5, "i-1")
    assert _core.decode_envelope(out)[2] == 5.0


def test_batch_numbers_seq_and_ids() -> None:
    datas = [b"1", b"[2]", b'{"three":3}']
    out = _core.encode_batch(datas, "me", 41, TS, "r4nd-")
    assert [_core.decode_envelope(e) for e in out] == [
        ("me", 41 + i, TS, f"r4nd-{41 + i}", d, "envelope") for i, d in enumerate(datas)
    ]
    assert out[1] == _core.encode_envelope(b"[2]", "me", 42, TS, "r4nd-42")
    assert _core.encode_batch([], "me", 2**64 - 1, TS, "r-") == []
    assert _core.encode_batch((b"1",), "me", 1, TS, "r-", codec="json") == [
        _core.encode_envelope(b"1", "me", 1, TS, "r-1")
    ]


def test_batch_is_all_or_nothing_and_names_the_item() -> None:
    with pytest.raises(EnvelopeError, match="item 2: data is not one well-formed JSON value"):
        _core.encode_batch([b"1", b"2", b"{", b"4"], "me", 1, TS, "r-")
    with pytest.raises(EnvelopeError, match="overflows"):
        _core.encode_batch([b"1", b"2"], "me", 2**64 - 1, TS, "r-")
    with pytest.raises(TypeError, match=r"datas\[1\] must be bytes, not str"):
        _core.encode_batch([b"1", "2"], "me", 1, TS, "r-")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single bytes"):
        _core.encode_batch(b"12", "me", 1, TS, "r-")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"data": b""}, EnvelopeError, "not one well-formed JSON value"),
        ({"data": b"{1}"}, EnvelopeError, "not one well-formed JSON value"),
        ({"data": b"1 2"}, EnvelopeError, "not one well-formed JSON value"),
        ({"sender": "a b"}, InvalidNameError, "invalid sender name"),
        ({"sender": ""}, InvalidNameError, "invalid sender name"),
        ({"id": "x{1}"}, InvalidNameError, "invalid message id name"),
        ({"ts": float("nan")}, EnvelopeError, "finite"),
        ({"ts": float("inf")}, EnvelopeError, "finite"),
        ({"seq": -1}, EnvelopeError, "seq must be 0 to 2**64-1, got -1"),
        ({"seq": 2**64}, EnvelopeError, "seq must be 0 to 2**64-1"),
        ({"codec": "yaml"}, ConfigError, 'accepted codecs: "json", "msgpack"'),
        ({"max_size": -1}, InvalidInputError, "max_size must be 0 or more"),
        ({"max_size": 10}, MessageTooLargeError, "the limit is 10 bytes"),
    ],
)
def test_encode_rejects_bad_arguments_with_typed_errors(
    kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    args: dict[str, object] = {"data": b"1", "sender": "a", "seq": 1, "ts": TS, "id": "i-1"} | kwargs
    with pytest.raises(error) as info:
        _core.encode_envelope(**args)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        _core.encode_envelope("1", "a", 1, TS, "i-1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.encode_envelope(b"1", "a", "1", TS, "i-1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.decode_envelope("text")  # type: ignore[arg-type]


def test_msgpack_data_must_be_one_value() -> None:
    with pytest.raises(EnvelopeError, match="trailing"):
        _core.encode_envelope(b"\x01\x02", "a", 1, TS, "i-1", codec="msgpack")
    with pytest.raises(EnvelopeError, match="0xc1"):
        _core.encode_envelope(b"\xc1", "a", 1, TS, "i-1", codec="msgpack")


def test_size_limit_names_size_and_limit_on_both_paths() -> None:
    out = _core.encode_envelope(b"12345", "a", 1, TS, "i-1")
    assert _core.encode_envelope(b"12345", "a", 1, TS, "i-1", max_size=len(out)) == out
    with pytest.raises(MessageTooLargeError) as info:
        _core.encode_envelope(b"12345", "a", 1, TS, "i-1", max_size=len(out) - 1)
    assert (info.value.size, info.value.limit) == (len(out), len(out) - 1)  # type: ignore[attr-defined]
    assert f"message is {len(out)} bytes; the limit is {len(out) - 1} bytes" in str(info.value)
    with pytest.raises(MessageTooLargeError):
        _core.decode_envelope(out, max_size=len(out) - 1)
    big = b'"' + b"x" * _core.DEFAULT_MAX_SIZE + b'"'
    with pytest.raises(MessageTooLargeError, match="limit is 1048576"):
        _core.encode_envelope(big, "a", 1, TS, "i-1")
    with pytest.raises(MessageTooLargeError):
        _core.decode_envelope(big)  # foreign payloads are limited too


def test_default_max_size_in_signatures_matches_the_constant() -> None:
    for fn in (_core.encode_envelope, _core.encode_batch, _core.decode_envelope, _core.decode_batch):
        assert inspect.signature(fn).parameters["max_size"].default == _core.DEFAULT_MAX_SIZE == 1 << 20


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'{"id":1}', "json"),
        (b"[1, 2]", "json"),
        (b'"just a string"', "json"),
        (b"42", "json"),
        (b"hello from redis-cli", "text"),
        (b"", "text"),
        ("naïve".encode(), "text"),
        (b"\xff\xfe\x00", "bytes"),
        (b'"\xff"', "bytes"),
        (b'{"ls" :1}', "json"),
    ],
)
@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_foreign_payloads_are_delivered_whole_with_sender_none(payload: bytes, kind: str, codec: str) -> None:
    assert _core.decode_envelope(payload, codec) == (None, None, None, None, payload, kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'{"ls":2,"id":"i","from":"a","seq":1,"ts":1,"data":1}', "unsupported envelope version ls=2"),
        (b'{"ls":1,"id":"i","from":"a","seq":1,"ts":1}', "missing field `data`"),
        (b'{"ls":1,"id":"i","from":"a","seq":1,"ts":1,"data":1,"x":0}', "unknown field `x`"),
        (b'{"ls":1,"id":"i","from":"a","seq":-1,"ts":1,"data":1}', "-1"),
        (b'{"ls":1,"id":"i","from":"a","seq":"1","ts":1,"data":1}', "invalid type"),
        (b'{"ls":1,"id":"i","from":"a","seq":1,"ts":NaN,"data":1}', "malformed JSON envelope"),
        (b'{"ls":1,"id":"i","from":"a","seq":1,"ts":1,"data":1} trailing', "trailing characters"),
        (b'{"ls":1,"id":"i","from":"a","seq":1,"ts":1,"data":[1,}', "malformed JSON envelope"),
        (b'{"ls":1,"id":"i","from":"a b","seq":1,"ts":1,"data":1}', "invalid sender name"),
        (b'{"ls":1,"id":"","from":"a","seq":1,"ts":1,"data":1}', "invalid message id name"),
        (b'  {"ls":', "EOF"),
        (b'{"ls":1,"id":"i","from":"a","seq":1,"ts":1,"data":"\xff"}', "malformed JSON envelope"),
    ],
)
def test_malformed_envelopes_name_what_was_wrong(payload: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        _core.decode_envelope(payload)
    assert fragment in str(info.value)
    assert not isinstance(info.value, MessageTooLargeError)


def test_decode_batch_returns_errors_in_place() -> None:
    good = _core.encode_envelope(b"1", "a", 1, TS, "i-1")
    big = _core.encode_envelope(b"12345678", "a", 2, TS, "i-2")
    out = _core.decode_batch([good, b'{"ls":1}', b"plain", big, good], max_size=len(big) - 1)
    assert out[0] == out[4] == ("a", 1, TS, "i-1", b"1", "envelope")
    assert isinstance(out[1], EnvelopeError) and "missing field" in str(out[1])
    assert out[2] == (None, None, None, None, b"plain", "text")
    assert isinstance(out[3], MessageTooLargeError)
    assert _core.decode_batch([]) == []
    with pytest.raises(TypeError, match=r"payloads\[0\] must be bytes"):
        _core.decode_batch([bytearray(b"x")])  # type: ignore[list-item]


def test_big_batches_round_trip_with_the_gil_released() -> None:
    datas = [msgspec.json.encode({"id": i, "pad": "x" * 300}) for i in range(2000)]
    envelopes = _core.encode_batch(datas, "bulk", 1, TS, "b-")
    decoded = _core.decode_batch(envelopes)
    assert [d[4] for d in decoded if isinstance(d, tuple)] == datas
    assert [d[1] for d in decoded if isinstance(d, tuple)] == list(range(1, 2001))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["json", "msgpack"]))
def test_random_bytes_decode_or_raise_a_lockstep_error(payload: bytes, codec: str) -> None:
    for candidate in (payload, b'{"ls":' + payload, b"\x86\xa2ls" + payload):
        try:
            sender, _, _, _, _, kind = _core.decode_envelope(candidate, codec)  # type: ignore[arg-type]
        except LockstepError as e:
            assert isinstance(e, EnvelopeError)
        else:
            assert kind in {"envelope", "json", "text", "bytes"}
            assert (sender is None) == (kind != "envelope")


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    _json_values,
    st.integers(0, 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["json", "msgpack"]),
)
def test_any_value_round_trips(value: object, seq: int, ts: float, codec: str) -> None:
    data = msgspec.json.encode(value) if codec == "json" else msgspec.msgpack.encode(value)
    out = _core.encode_envelope(data, "a", seq, ts, "i-1", codec)  # type: ignore[arg-type]
    assert _core.decode_envelope(out, codec) == ("a", seq, ts, "i-1", data, "envelope")  # type: ignore[arg-type]
    # every truncation is a typed error
    for cut in range(6 if codec == "json" else 4, len(out), max(1, len(out) // 10)):
        with pytest.raises(EnvelopeError):
            _core.decode_envelope(out[:cut], codec)  # type: ignore[arg-type]
