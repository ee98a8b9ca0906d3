"""The in-process driver, and the Redis rules both local drivers (memory, file) emulate.

The rule tests are parametrized over ``memory://`` and ``file://``: each states
what Redis 7 does (checked against redis-server 7.0.15 with redis-cli) and
asserts that the local driver does the same.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lockstep
from lockstep.drivers import memory
from lockstep.drivers.base import Driver

T = 2.0  # per-call deadline


@pytest.fixture(params=["memory", "file"])
async def local(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Driver]:
    url = f"memory://rules-{time.monotonic_ns()}" if request.param == "memory" else f"file://{tmp_path}/r.db"
    async with lockstep.connect(url) as coord:
        yield coord.driver


# -- memory spaces ---------------------------------------------------------------------
async def test_same_name_shares_a_space_other_names_are_isolated() -> None:
    async with (
        lockstep.connect("memory://shared-a") as a1,
        lockstep.connect("memory://shared-a") as a2,
        lockstep.connect("memory://shared-b") as b,
    ):
        await a1.driver.set("k", b"from a1", timeout=T)
        assert await a2.driver.get("k", timeout=T) == b"from a1"
        assert await b.driver.get("k", timeout=T) is None
        await b.driver.set("k", b"from b", timeout=T)
        assert await a2.driver.get("k", timeout=T) == b"from a1"


async def test_empty_name_is_the_default_space() -> None:
    async with lockstep.connect("memory://") as anon, lockstep.connect("memory://default") as named:
        assert anon.driver.space_name == "default"
        await anon.driver.set("anon-key", b"v", timeout=T)
        assert await named.driver.get("anon-key", timeout=T) == b"v"


async def test_space_outlives_its_coordinators() -> None:
    async with lockstep.connect("memory://outlives") as first:
        await first.driver.set("kept", b"yes", timeout=T)
    async with lockstep.connect("memory://outlives") as later:
        assert await later.driver.get("kept", timeout=T) == b"yes"


async def test_unconnected_driver_is_unavailable() -> None:
    coord = lockstep.connect("memory://never-opened")
    with pytest.raises(lockstep.BackendUnavailable, match="never-opened"):
        await coord.driver.get("k", timeout=T)


def test_any_option_is_refused_by_name() -> None:
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect("memory://x?busy_timeout=1")
    assert info.value.option == "busy_timeout"
    assert "busy_timeout" in str(info.value) and "memory" in str(info.value)


async def test_server_info_and_capabilities() -> None:
    async with lockstep.connect("memory://info") as coord:
        info = await coord.server_info()
        assert (info.driver, info.version, info.durable) == ("memory", lockstep.__version__, False)
        assert info.persistence == "none (in-process)"
        C = lockstep.Capability
        assert coord.capabilities == frozenset({C.KV, C.LOCKS, C.PUBSUB, C.DURABLE_MESSAGES, C.RATE_LIMIT})
        assert abs(await coord.time() - time.time()) < 1.0


async def test_expired_keys_are_purged_by_writes_without_being_read() -> None:
    async with lockstep.connect("memory://purge") as coord:
        d = coord.driver
        for i in range(50):
            await d.set(f"short{i}", b"v", ttl=0.05, timeout=T)
        await d.set("long", b"v", ttl=60, timeout=T)
        await asyncio.sleep(0.1)
        await d.set("trigger", b"v", timeout=T)  # a write purges what has expired
        assert set(memory.space("purge").entries) == {"long", "trigger"}


async def test_renewals_do_not_grow_the_deadline_heap_without_bound() -> None:
    async with lockstep.connect("memory://renew") as coord:
        d = coord.driver
        await d.set("hb", b"alive", ttl=30, timeout=T)
        for _ in range(2000):
            await d.expire("hb", 30, timeout=T)
        assert len(memory.space("renew").deadlines) <= 64 + 2 * 1 + 1


def test_spaces_are_atomic_across_threads_and_event_loops() -> None:
    async def bump(n: int) -> None:
        async with lockstep.connect("memory://threads") as coord:
            for _ in range(n):
                await coord.driver.incr("count", timeout=T)

    workers = [threading.Thread(target=asyncio.run, args=(bump(500),)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    async def read() -> bytes | None:
        async with lockstep.connect("memory://threads") as coord:
            return await coord.driver.get("count", timeout=T)

    assert asyncio.run(read()) == b"2000"


# -- Redis rules, both local drivers -----------------------------------------------------
async def test_wrong_type_errors_name_the_key(local: Driver) -> None:
    await local.set("str", b"v", timeout=T)
    await local.hset("hash", {"f": b"v"}, timeout=T)
    for call in (
        local.get("hash", timeout=T),
        local.incr("hash", timeout=T),
        local.hset("str", {"f": b"v"}, timeout=T),
        local.hget("str", "f", timeout=T),
        local.hgetall("str", timeout=T),
        local.hdel("str", ["f"], timeout=T),
    ):
        with pytest.raises(lockstep.BackendError, match="WRONGTYPE") as info:
            await call
        assert "'str'" in str(info.value) or "'hash'" in str(info.value)
    # nothing was changed by the refused calls
    assert await local.get("str", timeout=T) == b"v"
    assert await local.hgetall("hash", timeout=T) == {"f": b"v"}


async def test_mget_answers_none_for_a_hash(local: Driver) -> None:
    await local.hset("h", {"f": b"v"}, timeout=T)
    await local.set("s", b"1", timeout=T)
    assert await local.mget(["h", "s", "nope", "s"], timeout=T) == [None, b"1", None, b"1"]


async def test_set_replaces_a_hash_and_clears_its_ttl(local: Driver) -> None:
    await local.hset("h", {"a": b"1", "b": b"2"}, timeout=T)
    await local.expire("h", 100, timeout=T)
    assert await local.set("h", b"plain", timeout=T) is True
    assert await local.get("h", timeout=T) == b"plain"
    assert await local.ttl("h", timeout=T) is None
    await local.hset("h2", {"a": b"1"}, timeout=T)
    assert await local.set("h2", b"x", only_if_absent=True, timeout=T) is False


async def test_incr_keeps_the_ttl_and_creates_without_one(local: Driver) -> None:
    await local.set("t", b"5", ttl=100, timeout=T)
    assert await local.incr("t", timeout=T) == 6
    left = await local.ttl("t", timeout=T)
    assert left is not None and 99 < left <= 100
    assert await local.incr("fresh", 3, timeout=T) == 3
    assert await local.ttl("fresh", timeout=T) is None


@pytest.mark.parametrize("text", [b" 1", b"01", b"+1", b"-0", b"1.5", b"", b"99999999999999999999"])
async def test_incr_refuses_what_redis_refuses(local: Driver, text: bytes) -> None:
    await local.set("n", text, timeout=T)
    with pytest.raises(lockstep.BackendError, match=r"'n'.*not an integer"):
        await local.incr("n", timeout=T)
    assert await local.get("n", timeout=T) == text


async def test_incr_overflow_and_negative_values(local: Driver) -> None:
    await local.set("big", b"9223372036854775807", timeout=T)
    with pytest.raises(lockstep.BackendError, match="overflow"):
        await local.incr("big", timeout=T)
    await local.set("neg", b"-10", timeout=T)
    assert await local.incr("neg", 3, timeout=T) == -7


async def test_deleting_the_last_field_deletes_the_hash(local: Driver) -> None:
    await local.hset("h", {"a": b"1"}, timeout=T)
    await local.expire("h", 100, timeout=T)
    assert await local.hdel("h", ["a", "a", "zz"], timeout=T) == 1
    assert await local.ttl("h", timeout=T) is None
    assert await local.expire("h", 5, timeout=T) is False
    assert await local.set("h", b"now a string", only_if_absent=True, timeout=T) is True


async def test_hset_keeps_the_ttl(local: Driver) -> None:
    await local.hset("h", {"a": b"1"}, timeout=T)
    await local.expire("h", 100, timeout=T)
    assert await local.hset("h", {"b": b"2"}, timeout=T) == 1
    left = await local.ttl("h", timeout=T)
    assert left is not None and 99 < left <= 100


async def test_an_expired_hash_comes_back_empty(local: Driver) -> None:
    await local.hset("h", {"old": b"1"}, timeout=T)
    await local.expire("h", 0.1, timeout=T)
    await asyncio.sleep(0.2)
    assert await local.hset("h", {"new": b"2"}, timeout=T) == 1
    assert await local.hgetall("h", timeout=T) == {"new": b"2"}
    assert await local.ttl("h", timeout=T) is None


async def test_delete_counts_each_live_key_once(local: Driver) -> None:
    await local.set("a", b"1", timeout=T)
    await local.hset("b", {"f": b"1"}, timeout=T)
    await local.set("gone", b"1", ttl=0.05, timeout=T)
    await asyncio.sleep(0.1)
    assert await local.delete(["a", "a", "b", "gone", "never"], timeout=T) == 2
    assert await local.delete([], timeout=T) == 0


async def test_bad_input_is_refused_with_a_typed_error(local: Driver) -> None:
    with pytest.raises(lockstep.InvalidInputError, match=r"'k'.*bytes"):
        await local.set("k", "text", timeout=T)  # type: ignore[arg-type]
    with pytest.raises(lockstep.InvalidInputError, match=r"ttl.*'k'"):
        await local.set("k", b"v", ttl=0, timeout=T)
    await local.set("e", b"kept", timeout=T)
    for bad_ttl in (0, -1, float("nan"), float("inf"), True):
        with pytest.raises(lockstep.InvalidInputError, match=r"ttl.*'e'"):
            await local.expire("e", bad_ttl, timeout=T)
    assert await local.get("e", timeout=T) == b"kept"
    assert await local.ttl("e", timeout=T) is None
    for bad_key in ("", b"bytes-key", "lone \udc80 surrogate", None):
        with pytest.raises(lockstep.InvalidInputError, match="key"):
            await local.get(bad_key, timeout=T)  # type: ignore[arg-type]
    with pytest.raises(lockstep.InvalidInputError, match="key"):
        await local.delete(["ok", ""], timeout=T)
    with pytest.raises(lockstep.InvalidInputError, match="amount"):
        await local.incr("k", 1.5, timeout=T)  # type: ignore[arg-type]
    with pytest.raises(lockstep.InvalidInputError, match="field"):
        await local.hset("k", {1: b"v"}, timeout=T)  # type: ignore[dict-item]
    assert await local.get("k", timeout=T) is None


async def test_empty_batches_are_no_ops(local: Driver) -> None:
    await local.set("s", b"v", timeout=T)
    assert await local.mget([], timeout=T) == []
    assert await local.delete([], timeout=T) == 0
    # like the Redis driver, which sends nothing for an empty batch
    assert await local.hset("s", {}, timeout=T) == 0
    assert await local.hdel("s", [], timeout=T) == 0
    assert await local.get("s", timeout=T) == b"v"
