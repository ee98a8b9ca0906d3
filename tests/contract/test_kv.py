"""The key/value plumbing every primitive builds on, with identical semantics per driver."""

from __future__ import annotations

import asyncio

import pytest

import lockstep


@pytest.fixture
def k(coord: lockstep.Coordinator):
    return lambda name, *parts: coord.keys.key("test", name, *parts)


async def test_set_get_delete(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    assert await d.get(k("a"), timeout=2) is None
    assert await d.set(k("a"), b"1", timeout=2) is True
    assert await d.get(k("a"), timeout=2) == b"1"
    assert await d.set(k("a"), b"\x00\xff binary", timeout=2) is True
    assert await d.get(k("a"), timeout=2) == b"\x00\xff binary"
    assert await d.delete([k("a"), k("missing")], timeout=2) == 1
    assert await d.get(k("a"), timeout=2) is None


async def test_set_only_if_absent(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    assert await d.set(k("n"), b"first", only_if_absent=True, timeout=2) is True
    assert await d.set(k("n"), b"second", only_if_absent=True, timeout=2) is False
    assert await d.get(k("n"), timeout=2) == b"first"


async def test_mget_keeps_order_and_gaps(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    await d.set(k("x"), b"X", timeout=2)
    await d.set(k("z"), b"Z", timeout=2)
    assert await d.mget([k("x"), k("y"), k("z")], timeout=2) == [b"X", None, b"Z"]
    assert await d.mget([], timeout=2) == []


async def test_ttl_expiry(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    await d.set(k("t"), b"v", ttl=0.3, timeout=2)
    left = await d.ttl(k("t"), timeout=2)
    assert left is not None and 0 < left <= 0.3
    await asyncio.sleep(0.45)
    assert await d.get(k("t"), timeout=2) is None
    assert await d.ttl(k("t"), timeout=2) is None
    # an expired key counts as absent for only_if_absent
    assert await d.set(k("t"), b"again", only_if_absent=True, timeout=2) is True


async def test_expire_and_ttl(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    assert await d.expire(k("missing"), 5, timeout=2) is False
    await d.set(k("p"), b"v", timeout=2)
    assert await d.ttl(k("p"), timeout=2) is None
    assert await d.expire(k("p"), 10, timeout=2) is True
    left = await d.ttl(k("p"), timeout=2)
    assert left is not None and 9 < left <= 10
    # a plain set clears the TTL, as in Redis
    await d.set(k("p"), b"w", timeout=2)
    assert await d.ttl(k("p"), timeout=2) is None


async def test_incr(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    assert await d.incr(k("c"), timeout=2) == 1
    assert await d.incr(k("c"), 41, timeout=2) == 42
    assert await d.incr(k("c"), -2, timeout=2) == 40
    assert await d.get(k("c"), timeout=2) == b"40"


async def test_incr_on_text_is_a_backend_error(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    await d.set(k("s"), b"not a number", timeout=2)
    with pytest.raises(lockstep.BackendError):
        await d.incr(k("s"), timeout=2)
    assert await d.get(k("s"), timeout=2) == b"not a number"


async def test_concurrent_incr_counts_every_call(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    results = await asyncio.gather(*(d.incr(k("cc"), timeout=5) for _ in range(200)))
    assert sorted(results) == list(range(1, 201))


async def test_hashes(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    assert await d.hgetall(k("h"), timeout=2) == {}
    assert await d.hset(k("h"), {"a": b"1", "b": b"2"}, timeout=2) == 2
    assert await d.hset(k("h"), {"b": b"3", "c": b"4"}, timeout=2) == 1
    assert await d.hget(k("h"), "b", timeout=2) == b"3"
    assert await d.hget(k("h"), "zz", timeout=2) is None
    assert await d.hgetall(k("h"), timeout=2) == {"a": b"1", "b": b"3", "c": b"4"}
    assert await d.hdel(k("h"), ["a", "zz"], timeout=2) == 1
    assert await d.hgetall(k("h"), timeout=2) == {"b": b"3", "c": b"4"}


async def test_hash_ttl_and_delete(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    await d.hset(k("hh"), {"f": b"v"}, timeout=2)
    assert await d.expire(k("hh"), 0.3, timeout=2) is True
    await asyncio.sleep(0.45)
    assert await d.hgetall(k("hh"), timeout=2) == {}
    await d.hset(k("hd"), {"f": b"v"}, timeout=2)
    assert await d.delete([k("hd")], timeout=2) == 1
    assert await d.hget(k("hd"), "f", timeout=2) is None


async def test_wrong_type_is_a_backend_error(coord: lockstep.Coordinator, k) -> None:
    d = coord.driver
    await d.set(k("str"), b"v", timeout=2)
    with pytest.raises(lockstep.BackendError):
        await d.hset(k("str"), {"f": b"v"}, timeout=2)
    await d.hset(k("hash"), {"f": b"v"}, timeout=2)
    with pytest.raises(lockstep.BackendError):
        await d.get(k("hash"), timeout=2)


async def test_namespaces_are_isolated(url: str) -> None:
    async with lockstep.connect(url, namespace="ns-a") as a, lockstep.connect(url, namespace="ns-b") as b:
        key_a = a.keys.key("test", "same")
        key_b = b.keys.key("test", "same")
        assert key_a != key_b
        await a.driver.set(key_a, b"a", timeout=2)
        assert await b.driver.get(key_b, timeout=2) is None


async def test_two_coordinators_share_state(url: str, namespace: str) -> None:
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace) as b:
        key = a.keys.key("test", "shared")
        await a.driver.set(key, b"hello", timeout=2)
        assert await b.driver.get(key, timeout=2) == b"hello"
