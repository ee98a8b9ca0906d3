"""EnvelopeCodec and Message: the Python side of the wire format."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockstep import _core
from lockstep.envelope import DEFAULT_MAX_SIZE, EnvelopeCodec, Message
from lockstep.errors import (
    ConfigError,
    EnvelopeError,
    InvalidInputError,
    InvalidNameError,
    MessageTooLargeError,
)

NOW = 1700000000.25


class Task(msgspec.Struct):
    id: int
    title: str


def codec(kind: str = "json", **kwargs: Any) -> EnvelopeCodec:
    return EnvelopeCodec("agent-7", kind, now=lambda: NOW, **kwargs)


@pytest.mark.parametrize("kind", ["json", "msgpack"])
def test_encode_then_decode(kind: str) -> None:
    c = codec(kind)
    msg = c.decode("sprint:coordination", c.encode({"id": 1, "done": [True, None]}))
    assert msg == Message(
        "sprint:coordination", {"id": 1, "done": [True, None]}, "agent-7", 1, NOW, f"{c.id_prefix}1"
    )


def test_json_envelope_is_readable_by_any_json_parser() -> None:
    c = codec()
    raw = json.loads(c.encode(Task(3, "write tests")))
    assert raw == {
        "ls": 1,
        "id": f"{c.id_prefix}1",
        "from": "agent-7",
        "seq": 1,
        "ts": NOW,
        "data": {"id": 3, "title": "write tests"},
    }


def test_sequence_counts_from_one_and_skips_nothing() -> None:
    c = codec()
    assert c.next_seq == 1
    seqs = [c.decode("ch", c.encode(i)).seq for i in range(3)]
    many = [m.seq for m in c.decode_many("ch", c.encode_many(["a", "b"])) if isinstance(m, Message)]
    assert seqs + many == [1, 2, 3, 4, 5]
    with pytest.raises(EnvelopeError):
        c.encode(object())  # a rejected message does not burn a seq
    with pytest.raises(EnvelopeError):
        c.encode_many([1, object()])
    assert c.next_seq == 6
    assert c.encode_many([]) == []


def test_ids_are_unique_across_instances_of_one_sender() -> None:
    a, b = codec(), codec()
    assert a.id_prefix != b.id_prefix
    assert a.decode("ch", a.encode(1)).id != b.decode("ch", b.encode(1)).id
    _core.validate_name(a.id_prefix + "18446744073709551615", "message id")


def test_typed_decode_into_a_struct() -> None:
    c = codec()
    msg = c.decode("tasks", c.encode(Task(1, "x")), type=Task)
    assert msg.data == Task(1, "x")
    with pytest.raises(
        EnvelopeError, match=r"channel 'tasks' does not match Task: Object missing required field `title`"
    ):
        c.decode("tasks", c.encode({"id": 1}), type=Task)
    mp = codec("msgpack")
    assert mp.decode("tasks", mp.encode(Task(2, "y")), type=Task).data == Task(2, "y")


def test_foreign_json_and_text_are_delivered_with_sender_none() -> None:
    c = codec()
    assert c.decode("ch", b'{"id": 1}') == Message("ch", {"id": 1})
    assert c.decode("ch", b"hello from redis-cli") == Message(
        "ch", "hello from redis-cli", None, None, None, None
    )
    assert c.decode("ch", b"\xff\x00") == Message("ch", b"\xff\x00")
    assert c.decode("ch", b'{"id": 5, "title": "t"}', type=Task).data == Task(5, "t")
    assert codec("msgpack").decode("ch", b"[1,2]").data == [1, 2]
    with pytest.raises(EnvelopeError, match="does not match Task"):
        c.decode("ch", b"plain text", type=Task)
    assert c.decode("ch", b"plain text", type=str).data == "plain text"


def test_malformed_envelopes_name_the_channel() -> None:
    c = codec()
    with pytest.raises(
        EnvelopeError, match=r"^message on channel 'ch': bad message envelope: .*missing field"
    ):
        c.decode("ch", b'{"ls":1}')
    too_big = codec(max_size=60)
    with pytest.raises(MessageTooLargeError, match="channel 'ch'") as info:
        too_big.decode("ch", b"x" * 61)
    assert (info.value.size, info.value.limit) == (61, 60)  # type: ignore[attr-defined]
    with pytest.raises(MessageTooLargeError):
        too_big.encode("x" * 100)


def test_decode_many_keeps_good_messages_around_bad_ones() -> None:
    c = codec()
    good = c.encode_many([Task(1, "a"), Task(2, "b")])
    out = c.decode_many("ch", [good[0], b'{"ls":9}', b'{"id": 1}', b"text", good[1]], type=Task)
    assert isinstance(out[0], Message) and out[0].data == Task(1, "a")
    assert isinstance(out[1], EnvelopeError) and "channel 'ch'" in str(out[1]) and "ls=9" in str(out[1])
    assert isinstance(out[2], EnvelopeError) and "does not match Task" in str(out[2])
    assert isinstance(out[3], EnvelopeError)
    assert isinstance(out[4], Message) and out[4].seq == 2


def test_unencodable_data_names_the_type() -> None:
    with pytest.raises(EnvelopeError, match="cannot encode data of type object as json"):
        codec().encode(object())
    with pytest.raises(EnvelopeError, match="of type int"):
        codec("msgpack").encode(2**70)


def test_constructor_validates() -> None:
    with pytest.raises(InvalidNameError, match="invalid sender name"):
        EnvelopeCodec("bad sender")
    with pytest.raises(ConfigError, match="accepted codecs: 'json', 'msgpack'"):
        EnvelopeCodec("a", "yaml")
    with pytest.raises(InvalidInputError, match="max_size"):
        EnvelopeCodec("a", max_size=-1)
    c = EnvelopeCodec("a")
    assert (c.codec, c.max_size, DEFAULT_MAX_SIZE) == ("json", 1 << 20, 1 << 20)


def test_hostile_nesting_is_an_envelope_error() -> None:
    c = codec()
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(EnvelopeError, match="channel 'ch'"):
        c.decode("ch", deep)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_payloads_decode_or_raise_envelope_errors(payload: bytes) -> None:
    for c in (codec(), codec("msgpack")):
        for candidate in (payload, b'{"ls":1' + payload):
            try:
                msg = c.decode("ch", candidate)
            except EnvelopeError:
                continue
            assert msg.channel == "ch"
        assert len(c.decode_many("ch", [payload, payload])) == 2
