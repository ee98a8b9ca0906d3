"""The Redis driver under network and server faults: deadlines hold, nothing is blindly retried.

Faults come from the FaultProxy between the driver and a real redis-server (lost
replies, a silent network, reset connections) and from signals to the server
itself (kill -9, SIGSTOP).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rx

import lockstep
from lockstep.drivers.redis import RedisDriver
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

SLACK = 0.3  # how late past its deadline a call may return on a busy 2-core box


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@pytest.fixture
async def driver(redis_server: RedisServer, proxy: FaultProxy) -> AsyncIterator[RedisDriver]:
    """A driver connected through the proxy, with one warm pooled connection."""
    async with lockstep.connect(redis_server.url(port=proxy.port), timeout=2) as coord:
        assert isinstance(coord.driver, RedisDriver)
        yield coord.driver
        proxy.passthrough()


@pytest.fixture
def key() -> str:
    return f"faults:{{{uuid.uuid4().hex}}}"


async def timed(call: Awaitable[Any]) -> tuple[float, Any]:
    """(seconds taken, the result or the exception raised)."""
    started = time.monotonic()
    try:
        result: Any = await call
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result


async def wait_until(check: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- lost replies ------------------------------------------------------------------------
async def test_lost_incr_reply_is_outcome_unknown_and_applied_once(
    driver: RedisDriver, proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    proxy.drop_replies()
    elapsed, outcome = await timed(driver.incr(key, timeout=0.5))
    assert isinstance(outcome, lockstep.OutcomeUnknown), outcome
    assert 0.5 <= elapsed < 0.5 + SLACK
    elapsed, outcome = await timed(driver.get(key, timeout=0.5))
    assert isinstance(outcome, lockstep.Timeout), outcome
    assert 0.5 <= elapsed < 0.5 + SLACK
    proxy.passthrough()
    assert redis_server.client().get(key) == b"1"  # ran exactly once: no blind retry


async def test_lost_reply_is_not_retried_even_when_a_retry_would_succeed(
    redis_server: RedisServer, proxy: FaultProxy, key: str
) -> None:
    """One reply is lost, then the network is fine again: a retry would apply INCR twice."""
    url = redis_server.url(port=proxy.port, socket_timeout=0.2)
    async with lockstep.connect(url, timeout=2) as coord:
        await coord.ping()
        proxy.drop_replies(count=1)
        elapsed, outcome = await timed(coord.driver.incr(key, timeout=2))
        assert isinstance(outcome, lockstep.OutcomeUnknown), outcome
        assert elapsed < 1.0  # the socket timeout ended it, and nothing tried again
        # the raw client shares the no-retry policy
        raw = coord.driver.client  # type: ignore[attr-defined]
        await raw.ping()  # a warm connection, so the dropped chunk is INCR's reply
        proxy.drop_replies(count=1)
        with pytest.raises(rx.TimeoutError):
            await raw.incr(key)
        assert raw.connection_pool.connection_kwargs["retry"].get_retries() == 0
    assert redis_server.client().get(key) == b"2"  # two calls, each applied exactly once


async def test_redis_py_defaults_would_apply_a_lost_incr_twice(
    redis_server: RedisServer, proxy: FaultProxy, key: str
) -> None:
    """The control for the test above: the fault is real, and redis-py's default retry doubles INCR."""
    client = aioredis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.2)
    try:
        await client.ping()
        proxy.drop_replies(count=1)
        assert await client.incr(key) == 2
    finally:
        await client.aclose()
    assert redis_server.client().get(key) == b"2"


NON_IDEMPOTENT: dict[str, Callable[[RedisDriver, str], Awaitable[Any]]] = {
    "set": lambda d, k: d.set(k, b"v", timeout=0.4),
    "set_nx": lambda d, k: d.set(k, b"v", only_if_absent=True, timeout=0.4),
    "delete": lambda d, k: d.delete([k], timeout=0.4),
    "incr": lambda d, k: d.incr(k, 5, timeout=0.4),
    "expire": lambda d, k: d.expire(k, 100, timeout=0.4),
    "hset": lambda d, k: d.hset(k + "h", {"f": b"v"}, timeout=0.4),
    "hdel": lambda d, k: d.hdel(k + "h", ["f"], timeout=0.4),
}

IDEMPOTENT: dict[str, Callable[[RedisDriver, str], Awaitable[Any]]] = {
    "get": lambda d, k: d.get(k, timeout=0.4),
    "mget": lambda d, k: d.mget([k, k + "x"], timeout=0.4),
    "ttl": lambda d, k: d.ttl(k, timeout=0.4),
    "hget": lambda d, k: d.hget(k + "h", "f", timeout=0.4),
    "hgetall": lambda d, k: d.hgetall(k + "h", timeout=0.4),
    "ping": lambda d, k: d.ping(timeout=0.4),
    "time": lambda d, k: d.time(timeout=0.4),
    "server_info": lambda d, k: d.server_info(timeout=0.4),
}


@pytest.mark.parametrize("op", list(NON_IDEMPOTENT))
async def test_every_write_with_a_lost_reply_is_outcome_unknown(
    driver: RedisDriver, proxy: FaultProxy, key: str, op: str
) -> None:
    proxy.drop_replies()
    elapsed, outcome = await timed(NON_IDEMPOTENT[op](driver, key))
    assert isinstance(outcome, lockstep.OutcomeUnknown), outcome
    assert elapsed < 0.4 + SLACK


@pytest.mark.parametrize("op", list(IDEMPOTENT))
async def test_every_read_with_a_lost_reply_times_out(
    driver: RedisDriver, proxy: FaultProxy, key: str, op: str
) -> None:
    proxy.drop_replies()
    elapsed, outcome = await timed(IDEMPOTENT[op](driver, key))
    assert isinstance(outcome, lockstep.Timeout), outcome
    assert elapsed < 0.4 + SLACK


# -- a silent network --------------------------------------------------------------------
async def test_blackhole_every_call_returns_by_its_deadline(
    driver: RedisDriver, proxy: FaultProxy, key: str
) -> None:
    proxy.blackhole()
    calls = {
        **{f"w:{n}": f for n, f in NON_IDEMPOTENT.items()},
        **{f"r:{n}": f for n, f in IDEMPOTENT.items()},
    }
    results = await asyncio.gather(*(timed(call(driver, key)) for call in calls.values()))
    for name, (elapsed, outcome) in zip(calls, results, strict=True):
        assert elapsed < 0.4 + 0.5, (name, elapsed)
        if name.startswith("r:"):
            assert isinstance(outcome, lockstep.Timeout), (name, outcome)
        else:  # OutcomeUnknown if it was sent; Timeout if it never left (no connection)
            assert isinstance(outcome, lockstep.OutcomeUnknown | lockstep.Timeout), (name, outcome)
    proxy.passthrough()
    assert await driver.ping(timeout=2) < 1.0  # and it recovers


# -- broken connections ------------------------------------------------------------------
async def test_dead_idle_connection_is_replaced_before_sending(
    driver: RedisDriver, proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    assert proxy.reset_connections() == 1
    await asyncio.sleep(0.05)
    assert await driver.incr(key, timeout=2) == 1
    assert proxy.stats.connections_total == 2


async def test_reset_after_an_incr_was_sent_is_outcome_unknown(
    driver: RedisDriver, proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    server = redis_server.client()
    proxy.drop_replies()
    pending = asyncio.ensure_future(timed(driver.incr(key, timeout=3)))
    await wait_until(lambda: server.get(key) == b"1")
    proxy.passthrough()
    proxy.reset_connections()
    elapsed, outcome = await pending
    assert isinstance(outcome, lockstep.OutcomeUnknown), outcome
    assert elapsed < 2.0  # the reset ended it, not the deadline
    await asyncio.sleep(0.1)
    assert server.get(key) == b"1"


async def test_a_read_is_retried_once_after_a_reset(
    driver: RedisDriver, proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    redis_server.client().set(key, b"v")
    proxy.drop_replies(count=1)
    pending = asyncio.ensure_future(timed(driver.get(key, timeout=3)))
    await wait_until(lambda: proxy.stats.chunks_dropped == 1)
    proxy.reset_connections()
    elapsed, outcome = await pending
    assert outcome == b"v"
    assert elapsed < 2.0
    assert proxy.stats.connections_total == 2


# -- the server itself fails -------------------------------------------------------------
@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


async def test_killed_server_fails_fast_and_reconnects_after_restart(
    own_server: RedisServer, key: str
) -> None:
    async with lockstep.connect(own_server.url(), timeout=2) as coord:
        assert await coord.driver.incr(key, timeout=1) == 1
        own_server.kill()
        elapsed, outcome = await timed(coord.driver.incr(key, timeout=1))
        assert isinstance(outcome, lockstep.BackendUnavailable), outcome
        assert "not sent" in str(outcome) and elapsed < 1.0
        elapsed, outcome = await timed(coord.driver.get(key, timeout=1))
        assert isinstance(outcome, lockstep.BackendUnavailable), outcome
        own_server.restart()
        assert await coord.driver.incr(key, timeout=2) == 2  # AOF everysec kept the first one


async def test_stalled_server_calls_end_at_their_deadline(own_server: RedisServer, key: str) -> None:
    async with lockstep.connect(own_server.url(), timeout=2) as coord:
        await coord.ping()
        own_server.pause()
        try:
            elapsed, outcome = await timed(coord.driver.get(key, timeout=0.5))
            assert isinstance(outcome, lockstep.Timeout) and elapsed < 0.5 + SLACK
            elapsed, outcome = await timed(coord.driver.incr(key, timeout=0.5))
            assert isinstance(outcome, lockstep.OutcomeUnknown | lockstep.Timeout) and elapsed < 0.5 + SLACK
        finally:
            own_server.resume()
        assert await coord.driver.ping(timeout=2) < 1.0
