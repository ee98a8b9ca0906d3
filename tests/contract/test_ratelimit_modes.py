"""Rate limits when the store is down (fail closed / open / local) and with token leasing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import lockstep
import pytest
from lockstep import Decision

from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

ALGORITHMS = ["gcra", "sliding_window"]


# -- the store is down ---------------------------------------------------------------------
async def test_fail_closed_is_the_default_and_raises(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("down", "5/second")
    await coord.driver.close()  # every driver: calls now fail with BackendUnavailable
    with pytest.raises(lockstep.BackendUnavailable, match="failed closed"):
        await limiter.acquire("k")
    with pytest.raises(lockstep.BackendUnavailable, match="failed closed"):
        await limiter.peek("k")


async def test_fail_open_admits_and_says_so(coord: lockstep.Coordinator, caplog: pytest.LogCaptureFixture) -> None:
    limiter = coord.rate_limit("down", "1/minute", on_backend_error="fail_open")
    await coord.driver.close()
    decisions = [await limiter.acquire("k") for _ in range(3)]
    assert all(d.allowed and d.source == "open" for d in decisions)
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1, "one warning per outage"


async def test_local_fallback_limits_in_process(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("down", "2/minute", algorithm="sliding_window", on_backend_error="local")
    assert (await limiter.acquire("k")).source == "store"
    await coord.driver.close()
    decisions = [await limiter.acquire("k") for _ in range(3)]
    assert [(d.allowed, d.source) for d in decisions] == [(True, "local"), (True, "local"), (False, "local")]
    assert (await limiter.peek("k")).source == "local"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, to stop."""
    server = RedisServer(tmp_path / "redis", appendonly="everysec")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_stopped_redis_fails_closed_within_the_deadline_then_recovers(own_redis: RedisServer) -> None:
    async with lockstep.connect(own_redis.url(), namespace="down", timeout=1.0) as coord:
        closed = coord.rate_limit("down", "5/second", algorithm="sliding_window")
        local = coord.rate_limit("down", "5/second", algorithm="sliding_window", on_backend_error="local")
        assert (await closed.acquire("k")).allowed
        own_redis.stop()
        started = time.monotonic()
        with pytest.raises(lockstep.BackendUnavailable, match="failed closed"):
            await closed.acquire("k")
        assert time.monotonic() - started < 1.3
        assert [(await local.acquire("k")).allowed for _ in range(6)] == [True] * 5 + [False]
        own_redis.restart()
        recovered = await closed.acquire("k")
        assert recovered.allowed and recovered.source == "store"


@pytest.fixture
async def proxied(redis_server: RedisServer) -> AsyncIterator[tuple[lockstep.Coordinator, FaultProxy]]:
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        async with lockstep.connect(redis_server.url(port=proxy.port), namespace=f"px{time.time_ns()}", timeout=0.5) as c:
            yield c, proxy
            proxy.passthrough()


async def test_a_silent_network_fails_closed_by_the_deadline(proxied: tuple[lockstep.Coordinator, FaultProxy]) -> None:
    coord, proxy = proxied
    limiter = coord.rate_limit("hole", "5/second")
    assert (await limiter.acquire("k")).allowed
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(lockstep.BackendError, match="failed closed"):
        await limiter.acquire("k", wait=5.0)
    assert time.monotonic() - started < 0.5 + 0.3


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_lost_reply_counts_as_spent(proxied: tuple[lockstep.Coordinator, FaultProxy], algorithm: str) -> None:
    """Scenario 5 for the counters: the script ran, its reply was lost; the unit stays spent."""
    coord, proxy = proxied
    limiter = coord.rate_limit("lost", "3/10s", algorithm=algorithm, burst=3 if algorithm == "gcra" else None)  # type: ignore[arg-type]
    assert (await limiter.peek("k")).allowed  # loads the script: a lost NOSCRIPT reply would spend nothing
    proxy.drop_replies(count=1)
    with pytest.raises(lockstep.OutcomeUnknown, match="count as spent"):
        await limiter.acquire("k")
    proxy.passthrough()
    assert [(await limiter.acquire("k")).allowed for _ in range(3)] == [True, True, False]


# -- token leasing -----------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_leasing_with_three_coordinators_never_exceeds_the_limit(url: str, namespace: str, algorithm: str) -> None:
    limit, period = 20, 0.3
    coords = [await lockstep.connect(url, namespace=namespace, timeout=5.0) for _ in range(3)]
    limiters = [c.rate_limit("leased", f"{limit}/{period}s", algorithm=algorithm, lease=4) for c in coords]  # type: ignore[arg-type]
    spends: list[float] = []
    stop = time.monotonic() + 3 * period

    async def hammer(i: int) -> None:
        limiter = limiters[i % 3]
        while time.monotonic() < stop:
            decision = await limiter.acquire("k")
            if decision.allowed:
                spends.append(time.monotonic())
            else:
                await asyncio.sleep(min(decision.retry_after, 0.01))

    try:
        await asyncio.gather(*(hammer(i) for i in range(12)))
    finally:
        for limiter in limiters:
            await limiter.close()
        for c in coords:
            await c.close()
    spends.sort()
    busiest = max(sum(1 for t in spends[i:] if t < start + period - 0.005) for i, start in enumerate(spends))
    assert busiest <= limit, f"{busiest} spent within one period; the limit is {limit}"
    assert len(spends) >= limit, "leasing admitted something every period"


async def test_leased_units_are_spent_locally_and_handed_back(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("handback", "10/10s", algorithm="sliding_window", lease=6)
    first = await limiter.acquire("k")
    assert first.allowed and first.source == "lease"
    local = limiter.try_acquire_nowait("k")
    assert isinstance(local, Decision) and local.allowed and local.source == "lease" and local.remaining == 4
    assert limiter.hit_nowait("k") is True, "the same leased units, as a bool"
    assert (await limiter.peek("k")).remaining == 3, "the store counts the whole block as spent"
    await limiter.close()
    assert (await limiter.peek("k")).remaining == 6, "the 3 unspent units came back"
    assert limiter.hit_nowait("k") is None and limiter.try_acquire_nowait("k") is None, "nothing held after close"


async def test_gcra_leases_pace_locally(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("paced", "20/1s", lease=5, lease_ttl=0.5)
    first = await limiter.acquire("k")
    assert first.allowed and first.source == "lease"
    second = await limiter.acquire("k")
    assert not second.allowed and second.source == "lease" and 0 < second.retry_after <= 0.05
    third = await limiter.acquire("k", wait=0.2)
    assert third.allowed
    with pytest.raises(lockstep.ConfigError, match="burst 1"):
        coord.rate_limit("paced2", "20/1s", burst=2, lease=5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(lockstep.ConfigError, match="lease"):
            coord.rate_limit("paced3", "20/1s", lease=bad)  # type: ignore[arg-type]
    await limiter.close()
