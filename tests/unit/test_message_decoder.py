"""MessageDecoder (make_decoder): batches of payloads in any mix of codecs become Messages in
order, each codec's data decoded by one call, a bad item failing alone."""

from __future__ import annotations

import msgspec
import pytest

from lockstep.envelope import EnvelopeCodec, Message
from lockstep.errors import EnvelopeError
from lockstep.messaging import make_decoder


class Task(msgspec.Struct):
    id: int
    title: str


def codec(kind: str, sender: str = "agent-7") -> EnvelopeCodec:
    return EnvelopeCodec(sender, kind, now=lambda: 1700000000.25)


def test_a_mixed_batch_keeps_its_order_and_data() -> None:
    js, mp = codec("json"), codec("msgpack", "agent-8")
    payloads = [
        js.encode({"n": 1}),
        mp.encode({"n": 2, "b": b"\x00"}),
        b'{"foreign": true}',
        mp.encode([3, "three"]),
        b"plain text",
        js.encode("four"),
        mp.encode(None),
    ]
    items, jumps = make_decoder().decode("ch", payloads)
    assert [m.data for m in items] == [{"n": 1}, {"n": 2, "b": b"\x00"}, {"foreign": True}, [3, "three"],
                                       "plain text", "four", None]  # fmt: skip
    assert [(m.sender, m.seq) for m in items] == [
        ("agent-7", 1), ("agent-8", 1), (None, None), ("agent-8", 2), (None, None), ("agent-7", 2), ("agent-8", 3)
    ]  # fmt: skip
    assert all(isinstance(m, Message) for m in items) and jumps == []


@pytest.mark.parametrize("count", [1, 15, 16, 65_535, 65_536])
def test_msgpack_batches_of_every_array_header_size(count: int) -> None:
    mp = codec("msgpack")
    items, jumps = make_decoder().decode("ch", mp.encode_many(list(range(count))))
    assert [m.data for m in items] == list(range(count)) and jumps == []


def test_a_bad_item_fails_alone_in_either_codec() -> None:
    js, mp = codec("json"), codec("msgpack", "agent-8")
    payloads = [
        mp.encode(Task(1, "a")),
        mp.encode({"id": "not an int"}),
        js.encode(Task(2, "b")),
        js.encode({"title": "no id"}),
        mp.encode(Task(3, "c")),
    ]
    items, _ = make_decoder(Task).decode("ch", payloads)
    assert [getattr(m, "data", None) for m in items] == [Task(1, "a"), None, Task(2, "b"), None, Task(3, "c")]
    for bad in (items[1], items[3]):
        assert isinstance(bad, EnvelopeError) and "does not match Task" in str(bad)
        assert bad.channel == "ch" and bad.sender in ("agent-7", "agent-8")  # type: ignore[attr-defined]


def test_jumps_are_reported_across_codecs() -> None:
    js = codec("json")
    first, _, third = js.encode_many([1, 2, 3])
    items, jumps = make_decoder().decode("ch", [first, codec("msgpack", "other").encode(0), third])
    assert [m.data for m in items] == [1, 0, 3]
    assert jumps == [(2, "agent-7", 2, 2)]


def canonical(data: bytes, seq: int) -> bytes:
    """A canonical JSON envelope around ``data`` written by hand (lockstep's encoder refuses
    data that is not one JSON value; a foreign or hostile publisher need not)."""
    return b'{"ls":1,"id":"p-%d","from":"agent-7","seq":%d,"ts":1.5,"data":%s}' % (seq, seq, data)


def test_json_data_holding_newlines_is_decoded_alone_and_intact() -> None:
    # JSON data is decoded as one line per item: data with newlines (a pretty-printed
    # foreign message, or an envelope re-indented by another tool) must not be split
    pretty_envelope = b'{"ls":1,"id":"p-2","from":"agent-7","seq":2,"ts":1.5,"data":{\n  "a": [1,\n 2]\n}\n}'
    payloads = [canonical(b"1", 1), pretty_envelope, b'{\n "foreign": "x\\ny"\n}\n', canonical(b'"z"', 3)]
    items, jumps = make_decoder().decode("ch", payloads)
    assert [m.data for m in items] == [1, {"a": [1, 2]}, {"foreign": "x\ny"}, "z"]
    assert [m.seq for m in items] == [1, 2, None, 3] and jumps == []


def test_envelopes_whose_data_is_not_one_value_fail_alone_without_spilling() -> None:
    # "[1" and "2]" would make one value "[1,2]" if items were only joined; "1,2" would make
    # two. Each fails in its own place; the neighbours arrive as they were sent.
    payloads = [canonical(b"[1", 1), canonical(b"2]", 2), canonical(b"1,2", 3), canonical(b'{"ok":3}', 4)]
    items, jumps = make_decoder().decode("ch", payloads)
    assert all(isinstance(bad, EnvelopeError) for bad in items[:3]), items
    assert [getattr(bad, "seq", None) for bad in items[:3]] == [1, 2, 3]
    assert isinstance(items[3], Message) and items[3].data == {"ok": 3} and jumps == []
