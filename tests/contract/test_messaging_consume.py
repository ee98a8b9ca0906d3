"""Durable messaging contract (memory, file, redis+streams): consumer groups, acks,
redelivery with delivery_count, dead letters, replay, retention that never drops pending
entries in silence. The redis driver refuses, naming redis+streams."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import lockstep
import pytest
from lockstep.messaging import Delivery, Gap, Message

from tests.conftest import driver_url
from tests.contract.messaging_support import messages, take
from tests.support.redis_server import RedisServer

DURABLE = ["memory", "file", "redis+streams"]


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(request.param, request, tmp_path)


@pytest.fixture
async def durable(durable_url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    async with lockstep.connect(durable_url, namespace=namespace, timeout=5.0) as c:
        yield c


async def test_redis_refuses_consume_and_replay_naming_streams(redis_server: RedisServer) -> None:
    async with lockstep.connect(redis_server.url(), namespace="refuse") as coord:
        with pytest.raises(lockstep.CapabilityError, match=r"redis\+streams://"):
            coord.consume("tasks", "workers")
        with pytest.raises(lockstep.CapabilityError, match=r"redis\+streams://"):
            coord.subscribe("tasks", from_id="0")


async def test_group_splits_work_and_acks(durable: lockstep.Coordinator, durable_url: str, namespace: str) -> None:
    await durable.publish_many("tasks", [{"n": i} for i in range(20)])  # before the group: start="0" sees them
    async with (
        durable.consume("tasks", "workers", consumer="w1", batch=5) as w1,
        lockstep.connect(durable_url, namespace=namespace) as other,
        other.consume("tasks", "workers", consumer="w2", batch=5) as w2,
    ):
        seen: dict[int, str] = {}
        while len(seen) < 20:
            for name, q in (("w1", w1), ("w2", w2)):
                d = await q.get(timeout=5)
                assert isinstance(d, Delivery) and d.delivery_count == 1
                assert d.message.data["n"] not in seen
                seen[d.message.data["n"]] = name
                assert await d.ack() is True
                assert await d.ack() is False, "a second ack says it was no longer pending"
        assert sorted(seen) == list(range(20)) and set(seen.values()) == {"w1", "w2"}
        with pytest.raises(lockstep.Timeout):
            await w1.get(timeout=0.3)


async def test_bulk_acks_say_which_or_how_many_were_pending(durable: lockstep.Coordinator) -> None:
    await durable.publish_many("bulk", list(range(6)))
    async with durable.consume("bulk", "workers", batch=6) as q:
        batch = await q.get_batch(6, timeout=5)
        deliveries = [d for d in batch if isinstance(d, Delivery)]
        assert [d.message.data for d in deliveries] == list(range(6))
        assert await q.ack_many(deliveries[:2]) == [True, True]
        assert await q.ack_many(deliveries[1:3]) == [False, True], "per delivery: acked before, or not"
        assert await q.ack_all(deliveries) == 3, "only the three still pending count"
        assert await q.ack_all(deliveries) == 0
        assert await q.ack_all([]) == 0 and await q.ack_many([]) == []
        assert q.stats["acked"] == 6


async def test_start_dollar_skips_the_backlog(durable: lockstep.Coordinator) -> None:
    await durable.publish("jobs", "old")
    async with durable.consume("jobs", "fresh", start="$") as q:
        await durable.publish("jobs", "new")
        d = await q.get(timeout=5)
        assert d.message.data == "new"
    async with durable.consume("jobs", "all", start="0") as q:
        assert (await q.get(timeout=5)).message.data == "old"


async def test_unacked_entries_are_redelivered_then_dead_lettered(durable: lockstep.Coordinator) -> None:
    await durable.publish("work", {"job": 1})
    async with durable.consume("work", "g", idle=0.2, max_deliveries=3) as q:
        counts = []
        for _ in range(3):
            d = await q.get(timeout=5)
            counts.append(d.delivery_count)
            assert d.message.data == {"job": 1}
        assert counts == [1, 2, 3]
        with pytest.raises(lockstep.Timeout):
            await q.get(timeout=0.8)
        assert q.stats["dead_lettered"] == 1
        assert await d.ack() is False, "a dead-lettered entry is no longer pending"
    async with durable.subscribe("work:dead", from_id="0") as dead:
        (m,) = await take(dead, 1)
    assert isinstance(m, Message) and m.data == {"job": 1} and m.sender == durable.member


async def test_named_dead_letter_channel_and_no_dead_letter(durable: lockstep.Coordinator) -> None:
    await durable.publish_many("w2", ["a", "b"])
    async with durable.consume("w2", "g", idle=0.1, max_deliveries=1, dead_letter="graveyard") as q:
        await q.get(timeout=5)
        await q.get(timeout=5)
        with pytest.raises(lockstep.Timeout):
            await q.get(timeout=0.6)
    async with durable.subscribe("graveyard", from_id="0") as dead:
        assert sorted(m.data for m in await take(dead, 2)) == ["a", "b"]
    await durable.publish("w3", "c")
    async with durable.consume("w3", "g", idle=0.1, max_deliveries=1, dead_letter=False) as q:
        await q.get(timeout=5)
        with pytest.raises(lockstep.Timeout):
            await q.get(timeout=0.6)
        assert q.stats["dead_lettered"] == 1


async def test_a_crashed_consumer_s_entries_go_to_another(durable: lockstep.Coordinator, durable_url: str, namespace: str) -> None:
    await durable.publish_many("crash", list(range(5)))
    async with lockstep.connect(durable_url, namespace=namespace) as doomed:
        q = doomed.consume("crash", "g", consumer="doomed", batch=5, idle=0.3)
        await q.open()
        d = await q.get(timeout=5)
        assert d.message.data == 0
        # the coordinator goes away without acking anything it read
    async with durable.consume("crash", "g", consumer="survivor", idle=0.3) as q2:
        got = []
        while len(got) < 5:
            d = await q2.get(timeout=5)
            got.append((d.message.data, d.delivery_count))
            await d.ack()
    assert sorted(n for n, _ in got) == list(range(5))
    assert all(count >= 2 for _, count in got), got


async def test_typed_consumer_delivers_errors_for_bad_payloads(durable: lockstep.Coordinator) -> None:
    await durable.publish_many("typed", [{"id": 1}, {"id": "x"}])
    async with durable.consume("typed", "g", type=dict[str, int]) as q:
        good, bad = await q.get(timeout=5), await q.get(timeout=5)
    assert good.message.data == {"id": 1} and good.error is None
    assert isinstance(bad.error, lockstep.EnvelopeError)
    with pytest.raises(lockstep.EnvelopeError):
        _ = bad.message


async def test_replay_from_a_position(durable: lockstep.Coordinator) -> None:
    await durable.publish_many("log", ["a", "b", "c"])
    async with durable.subscribe("log", from_id="0") as sub:
        first = await take(sub, 3)
    assert [m.data for m in first] == ["a", "b", "c"]
    async with durable.subscribe("log", from_id=first[0].position) as sub:
        rest = await take(sub, 2)
        await durable.publish("log", "d")
        rest += await take(sub, 1)
    assert [m.data for m in rest] == ["b", "c", "d"]
    with pytest.raises(lockstep.InvalidInputError):
        durable.subscribe("log", from_id="not-a-position")


async def test_retention_never_trims_pending_or_unread_entries(durable: lockstep.Coordinator) -> None:
    """Scenario 10 in miniature: retention (max_len 10) runs on every publish while a
    group has read nothing; every entry is still delivered."""
    durable.bind_channel("ret", max_len=10)
    async with durable.consume("ret", "slow", batch=7, idle=60) as q:
        await durable.publish_many("ret", list(range(30)))
        for _ in range(3):
            await durable.publish_many("ret", list(range(30, 40)))
        first = await q.get(timeout=5)  # pending now, unacked, while more is published
        for _ in range(3):
            await durable.publish_many("ret", list(range(40, 50)))
        got = [first.message.data]
        while len(got) < 90:
            d = await q.get(timeout=5)
            got.append(d.message.data)
            await d.ack()
        assert got == list(range(30)) + list(range(30, 40)) * 3 + list(range(40, 50)) * 3
        assert await first.ack() is True, "the pending entry survived every trim"


async def test_a_reader_passed_by_retention_gets_a_gap(durable: lockstep.Coordinator) -> None:
    durable.bind_channel("ret2", max_len=10)
    await durable.publish_many("ret2", list(range(1500)))
    await durable.publish_many("ret2", list(range(1500, 3000)))
    async with durable.subscribe("ret2", from_id="0") as sub:
        items = await take(sub, 1)
        items += await sub.get_batch(5000, timeout=1)
    assert isinstance(items[0], Gap) and items[0].reason == "trimmed", items[:2]
    got = [m.data for m in messages(items)]
    assert got == list(range(got[0], 3000)) and got[0] > 0


async def test_deleted_pending_entries_are_reported(
    durable: lockstep.Coordinator, request: pytest.FixtureRequest
) -> None:
    scheme = durable.settings.scheme
    if scheme == "memory":
        return  # nothing outside lockstep can delete a memory entry; retention never does
    await durable.publish_many("del", ["keep", "drop"])
    async with durable.consume("del", "g", batch=2, idle=0.2) as q:
        a, b = await q.get(timeout=5), await q.get(timeout=5)
        await a.ack()
        store = durable.messaging.store
        if scheme == "file":
            with sqlite3.connect(str(durable.driver.path)) as conn:
                conn.execute("DELETE FROM msg_log WHERE id = ?", (int(b.id),))
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            with server.client() as client:
                client.xdel(store.wire("del"), b.id)
        gap = await q.get(timeout=5)
    assert isinstance(gap, Gap) and gap.reason == "deleted" and gap.ids == (b.id,) and gap.count == 1


async def test_group_vanishing_is_healed_and_reported(
    durable: lockstep.Coordinator, request: pytest.FixtureRequest
) -> None:
    scheme = durable.settings.scheme
    await durable.publish("heal", "x")
    async with durable.consume("heal", "g") as q:
        d = await q.get(timeout=5)
        await d.ack()
        store = durable.messaging.store
        if scheme == "file":
            with sqlite3.connect(str(durable.driver.path)) as conn:
                conn.execute("DELETE FROM msg_group WHERE grp = 'g'")
        elif scheme == "memory":
            store.space.log(store.wire("heal")).groups.clear()
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            with server.client() as client:
                client.xgroup_destroy(store.wire("heal"), "g")
        await durable.publish("heal", "y")
        items = [await q.get(timeout=5) for _ in range(3)]
    assert isinstance(items[0], Gap) and items[0].reason == "group-lost"
    assert [d.message.data for d in items[1:]] == ["x", "y"], "recreated at 0: everything is redelivered"


async def test_consume_arguments_are_checked(durable: lockstep.Coordinator) -> None:
    with pytest.raises(lockstep.InvalidInputError):
        durable.consume("c", "g", start="1")
    with pytest.raises(lockstep.InvalidInputError):
        durable.consume("c", "g", batch=0)
    with pytest.raises(lockstep.InvalidInputError):
        durable.consume("c", "g", idle=-1)
    with pytest.raises(lockstep.InvalidNameError):
        durable.consume("c", "bad group")
    q = durable.consume("c", "g")
    with pytest.raises(lockstep.BackendUnavailable):
        await q.get(timeout=0.1)
    await asyncio.sleep(0)
