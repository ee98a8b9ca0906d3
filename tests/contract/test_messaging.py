"""Messaging contract, run against every driver: publish, subscribe, publish_many, foreign
messages, typed channels, bad payloads, gaps and the coalescing publisher."""

from __future__ import annotations

import asyncio
import time

import lockstep
import msgspec
import pytest
from lockstep import Capability
from lockstep.envelope import EnvelopeCodec
from lockstep.errors import EnvelopeError
from lockstep.messaging import Gap, Message

from tests.contract.messaging_support import (
    gaps,
    messages,
    nothing_more,
    publish_raw,
    take,
)


class Task(msgspec.Struct):
    id: int
    name: str


async def test_drivers_declare_messaging(coord: lockstep.Coordinator) -> None:
    assert Capability.PUBSUB in coord.capabilities
    durable = coord.settings.scheme != "redis"
    assert (Capability.DURABLE_MESSAGES in coord.capabilities) is durable


async def test_publish_and_subscribe_in_order(coord: lockstep.Coordinator) -> None:
    async with coord.subscribe("sprint:coordination", "agent:lifecycle") as sub:
        first = await coord.publish("sprint:coordination", {"id": 1})
        await coord.publish("agent:lifecycle", {"agent": "a-1", "state": "up"})
        ids = await coord.publish_many("sprint:coordination", [{"id": 2}, {"id": 3}])
        items = await take(sub, 4)
        await nothing_more(sub)
    assert isinstance(first, str) and first and len(ids) == 2 and len({first, *ids}) == 3
    by_channel: dict[str, list[Message]] = {}
    for m in items:
        assert isinstance(m, Message), m
        by_channel.setdefault(m.channel, []).append(m)
    sprint = by_channel["sprint:coordination"]
    assert [m.data for m in sprint] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert [m.seq for m in sprint] == [1, 2, 3], "seqs count per sender and channel, from 1"
    assert [m.id for m in sprint] == [first, *ids]
    assert by_channel["agent:lifecycle"][0].seq == 1
    for m in items:
        assert m.sender == coord.member
        assert m.ts is not None and abs(m.ts - time.time()) < 60
        durable = coord.settings.scheme != "redis"
        assert (m.position is not None) is durable


async def test_subscriber_gets_only_what_follows_it(coord: lockstep.Coordinator) -> None:
    await coord.publish("c", "before")
    async with coord.subscribe("c") as sub:
        await coord.publish("c", "after")
        items = await take(sub, 1)
        await nothing_more(sub)
    assert [m.data for m in messages(items)] == ["after"]


async def test_two_coordinators_share_the_backend(url: str, namespace: str) -> None:
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace) as b:
        async with b.subscribe("shared") as sub:
            await a.publish("shared", {"from": "a"})
            (m,) = await take(sub, 1)
    assert m.data == {"from": "a"} and m.sender == a.member != b.member


async def test_namespaces_are_isolated(url: str, namespace: str) -> None:
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace + "x") as b:
        async with b.subscribe("c") as sub:
            await a.publish("c", "not for b")
            await nothing_more(sub, 0.3)


async def test_publish_many_is_one_batch_in_order(coord: lockstep.Coordinator) -> None:
    items = [{"id": i, "timestamp": time.time()} for i in range(2000)]
    async with coord.subscribe("bulk") as sub:
        ids = await coord.publish_many("bulk", items)
        got = await take(sub, 2000)
    assert len(ids) == 2000
    assert [m.data for m in got] == items
    assert [m.seq for m in got] == list(range(1, 2001))
    assert await coord.publish_many("bulk", []) == []


async def test_what_is_published_is_the_data_as_it_was_at_the_call(coord: lockstep.Coordinator) -> None:
    state = {"n": 1}
    items = [{"k": 1}]
    async with coord.subscribe("snapshot") as sub:
        one = coord.publish("snapshot", state)  # a future: the call ran, the flush comes later
        many = asyncio.ensure_future(coord.publish_many("snapshot", items))  # a coroutine:
        await asyncio.sleep(0)  # ... its call runs at its first step
        bad = coord.publish("snapshot", {"f": object()})  # fails at the call, alone
        state["n"] = 2
        items[0]["k"] = 2
        items.append({"k": 3})
        await one
        assert len(await many) == 1
        with pytest.raises(EnvelopeError, match="cannot encode"):
            await bad
        got = await take(sub, 2)
        await nothing_more(sub)
    assert [m.data for m in got] == [{"n": 1}, {"k": 1}]
    assert [m.seq for m in got] == [1, 2], "the failed call took no sequence number"


async def test_raw_json_data_is_published_as_it_is(coord: lockstep.Coordinator) -> None:
    """Items travel as JSON lines: a msgspec.Raw holding newlines (pretty-printed JSON) is
    still one item; a raw newline inside a string is not JSON and fails its call alone; a
    Raw that is not one value (nothing checks it at the call) reaches subscribers as an
    EnvelopeError in its own place, its neighbours intact."""
    pretty = msgspec.Raw(b'{\n  "a": [1,\n  2],\n  "s": "x\\ny"\n}')
    async with coord.subscribe("raw") as sub:
        await coord.publish_many("raw", [1, pretty, "line\nbreak"])
        with pytest.raises(EnvelopeError, match="raw newline inside a string"):
            await coord.publish("raw", msgspec.Raw(b'"a\nb"'))
        with pytest.raises(EnvelopeError, match="encode as 2 JSON values"):
            await coord.publish("raw", msgspec.Raw(b"1,\n2"))
        await coord.publish_many("raw", [msgspec.Raw(b"[1"), msgspec.Raw(b"2]"), {"ok": True}])
        await coord.publish("raw", msgspec.Raw(b'{"b":\n 2}'))  # one publish() takes the same path
        got = await take(sub, 7)
        await nothing_more(sub)
    assert [m.data for m in got[:3]] == [1, {"a": [1, 2], "s": "x\ny"}, "line\nbreak"]
    assert all(isinstance(bad, EnvelopeError) for bad in got[3:5]), got[3:5]
    assert isinstance(got[5], Message) and got[5].data == {"ok": True} and got[5].seq == 6
    assert got[6].data == {"b": 2} and got[6].seq == 7, "the refused calls took no sequence number"


async def test_seed_shape_10k_concurrent_publishes_are_coalesced(coord: lockstep.Coordinator) -> None:
    """The seed's own test: 10,000 publish calls started at once over three channels."""
    channels = ["sprint:coordination", "agent:lifecycle", "test:coordination"]
    async with coord.subscribe(*channels, max_buffer=20_000) as sub:
        started = time.perf_counter()
        await asyncio.gather(
            *(coord.publish(channels[i % 3], {"id": i, "timestamp": time.time()}) for i in range(10_000))
        )
        elapsed = time.perf_counter() - started
        got = await take(sub, 10_000, timeout=20)
    assert sorted(m.data["id"] for m in got) == list(range(10_000))
    for channel in channels:
        seqs = [m.seq for m in got if m.channel == channel]
        assert seqs == list(range(1, len(seqs) + 1)), "concurrent publishes keep a gap-free sequence"
    assert 10_000 / elapsed > 10_000, f"{10_000 / elapsed:.0f} msg/s"


async def test_foreign_messages_are_delivered_with_sender_unknown(
    coord: lockstep.Coordinator, request: pytest.FixtureRequest
) -> None:
    async with coord.subscribe("ext") as sub:
        await publish_raw(coord, request, "ext", b'{"id": 7, "from": "redis-cli"}')
        await publish_raw(coord, request, "ext", b"plain text")
        await publish_raw(coord, request, "ext", b"\xff\xfe not utf-8")
        items = await take(sub, 3)
    assert [m.data for m in items] == [{"id": 7, "from": "redis-cli"}, "plain text", b"\xff\xfe not utf-8"]
    for m in items:
        assert (m.sender, m.seq, m.ts, m.id) == (None, None, None, None)
        assert m.channel == "ext"


async def test_typed_channel_delivers_instances_and_isolates_bad_payloads(
    coord: lockstep.Coordinator, request: pytest.FixtureRequest
) -> None:
    coord.bind_channel("tasks", Task)
    async with coord.subscribe("tasks") as sub:
        await coord.publish("tasks", Task(1, "build"))
        await coord.publish("tasks", {"id": "not a number", "name": "x"})
        await publish_raw(coord, request, "tasks", b'{"ls":1,"id":broken')
        await coord.publish("tasks", {"id": 2, "name": "test"})
        items = await take(sub, 4)
    assert isinstance(items[0], Message) and items[0].data == Task(1, "build")
    assert isinstance(items[1], lockstep.EnvelopeError)
    assert "Task" in str(items[1]) and "tasks" in str(items[1])
    assert items[1].sender == coord.member and items[1].seq == 2
    assert isinstance(items[2], lockstep.EnvelopeError) and items[2].payload == b'{"ls":1,"id":broken'
    assert isinstance(items[3], Message) and items[3].data == Task(2, "test")


async def test_subscribe_type_argument_overrides_binding(coord: lockstep.Coordinator) -> None:
    async with coord.subscribe("t2", type=Task) as sub:
        await coord.publish_many("t2", [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        items = await take(sub, 2)
    assert [m.data for m in items] == [Task(1, "a"), Task(2, "b")]


async def test_strict_subscription_raises_bad_payloads_and_continues(coord: lockstep.Coordinator) -> None:
    async with coord.subscribe("st", type=Task, strict=True) as sub:
        await coord.publish_many("st", [{"id": "x", "name": "bad"}, {"id": 1, "name": "good"}])
        with pytest.raises(lockstep.EnvelopeError):
            await sub.get(timeout=5)
        assert (await sub.get(timeout=5)).data == Task(1, "good")


async def test_sequence_jump_is_reported_exactly(coord: lockstep.Coordinator, request: pytest.FixtureRequest) -> None:
    """A sender's seq numbers skip (its messages never arrived): a Gap names exactly which."""
    codec = EnvelopeCodec("agent-9")
    envelopes = codec.encode_many([{"n": i} for i in range(1, 7)])
    async with coord.subscribe("seq") as sub:
        for index in (0, 1, 4, 5):  # seqs 3 and 4 are lost
            await publish_raw(coord, request, "seq", envelopes[index])
        items = await take(sub, 5)
    assert [type(i).__name__ for i in items] == ["Message", "Message", "Gap", "Message", "Message"]
    gap = items[2]
    assert gap.reason == "sequence" and gap.missed == {"agent-9": ((3, 4),)} and gap.count == 2 and gap.complete
    assert gap.channels == ("seq",)


async def test_overflow_is_reported_exactly_or_never_happens(coord: lockstep.Coordinator) -> None:
    """A subscriber 10 items behind: push drivers drop the newest and say exactly which;
    log-based drivers wait for it and lose nothing."""
    async with coord.subscribe("of", max_buffer=10) as sub:
        await coord.publish_many("of", list(range(50)))
        await asyncio.sleep(0.3)
        items = await take(sub, 11 if coord.settings.scheme in ("memory", "redis") else 50)
        await asyncio.sleep(0.2)
        items += await sub.get_batch(100, timeout=0.3)
    if coord.settings.scheme in ("memory", "redis"):
        got = messages(items)
        (gap,) = gaps(items)
        assert gap.reason == "overflow" and gap.complete
        assert [m.seq for m in got] == list(range(1, 11))
        assert gap.missed == {coord.member: ((11, 50),)} and gap.count == 40
    else:
        assert [m.data for m in items] == list(range(50)) and not gaps(items)


async def test_gap_items_are_typed_and_strict_raises_messages_lost(coord: lockstep.Coordinator, request: pytest.FixtureRequest) -> None:
    codec = EnvelopeCodec("agent-3")
    envelopes = codec.encode_many(["a", "b", "c"])
    async with coord.subscribe("strictgap", strict=True) as sub:
        await publish_raw(coord, request, "strictgap", envelopes[0])
        await publish_raw(coord, request, "strictgap", envelopes[2])
        assert (await sub.get(timeout=5)).data == "a"
        with pytest.raises(lockstep.MessagesLost) as lost:
            await sub.get(timeout=5)
        assert isinstance(lost.value.gap, Gap) and lost.value.gap.missed == {"agent-3": ((2, 2),)}
        assert (await sub.get(timeout=5)).data == "c"


async def test_bad_arguments_get_typed_errors(coord: lockstep.Coordinator) -> None:
    with pytest.raises(lockstep.InvalidNameError):
        await coord.publish("bad channel", 1)
    with pytest.raises(lockstep.InvalidNameError):
        coord.subscribe("{tag}")
    with pytest.raises(lockstep.InvalidInputError):
        coord.subscribe()
    with pytest.raises(lockstep.EnvelopeError):
        await coord.publish("c", object())
    with pytest.raises(lockstep.EnvelopeError):
        await coord.publish_many("c", "not a list")
    with pytest.raises(lockstep.MessageTooLargeError):
        await coord.publish("c", "x" * (2 << 20))
    with pytest.raises(lockstep.InvalidInputError):
        coord.subscribe("c", max_buffer=0)
    with pytest.raises(lockstep.InvalidInputError):
        coord.bind_channel("c", type=lambda x: x)
    # a failed publish costs the others nothing, and leaves no hole in the sequence
    async with coord.subscribe("c") as sub:
        results = await asyncio.gather(coord.publish("c", 1), coord.publish("c", object()), coord.publish("c", 2),
                                       return_exceptions=True)
        assert isinstance(results[1], lockstep.EnvelopeError)
        items = await take(sub, 2)
    assert [(m.data, m.seq) for m in items] == [(1, 1), (2, 2)]


async def test_a_flush_over_the_size_limit(coord: lockstep.Coordinator) -> None:
    """Many publish_many calls at once make one flush bigger than the size limit: made of
    small items, it all arrives, in order, gap-free; a too-large item among them fails its
    own call only."""
    small = [{"i": i, "pad": "x" * 100} for i in range(2000)]  # ~230 KB a call, 1.15 MB in all
    async with coord.subscribe("big", max_buffer=20_000) as sub:
        calls = [coord.publish_many("big", small) for _ in range(5)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)]
        items = await take(sub, 10_000)
        assert [m.seq for m in items] == list(range(1, 10_001))
        assert [m.data["i"] for m in items[:3]] == [0, 1, 2] and items[-1].data == small[-1]
        results = await asyncio.gather(
            *(coord.publish_many("big", small) for _ in range(5)),
            coord.publish("big", "y" * (2 << 20)),
            coord.publish_many("big", small[:10]),
            return_exceptions=True,
        )
        assert isinstance(results[5], lockstep.MessageTooLargeError)
        assert not [r for i, r in enumerate(results) if i != 5 and isinstance(r, BaseException)]
        items = await take(sub, 10_010)
        assert [m.seq for m in items] == list(range(10_001, 20_011))


async def test_subscription_closes_cleanly(coord: lockstep.Coordinator) -> None:
    sub = coord.subscribe("cl")
    with pytest.raises(lockstep.BackendUnavailable):
        await sub.get(timeout=0.1)
    await sub.open()
    await coord.publish("cl", 1)
    assert (await sub.get(timeout=5)).data == 1
    with pytest.raises(lockstep.Timeout):
        await sub.get(timeout=0.1)
    await sub.close()
    assert [item async for item in sub] == []
