"""Rate limits, the same on every driver: never over the limit, exact retry_after,
refusals of what can never fit, peek/reset, isolated keys, typed errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import lockstep
import pytest
from lockstep import Decision, RateLimiter

ALGORITHMS = ["gcra", "sliding_window"]


@pytest.fixture
async def coords(url: str, namespace: str) -> AsyncIterator[list[lockstep.Coordinator]]:
    """Four coordinators on one backend: separate connections (and threads, on file://)."""
    opened = [await lockstep.connect(url, namespace=namespace, timeout=5.0) for _ in range(4)]
    try:
        yield opened
    finally:
        for c in opened:
            await c.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_200_concurrent_tasks_never_get_more_than_the_limit(
    coords: list[lockstep.Coordinator], algorithm: str
) -> None:
    burst = 50 if algorithm == "gcra" else None
    # A long period, so no unit frees up while the 200 requests are decided.
    limiters = [c.rate_limit("burst", "50/1000s", algorithm=algorithm, burst=burst) for c in coords]  # type: ignore[arg-type]
    decisions = await asyncio.gather(*(limiters[i % 4].acquire("k") for i in range(200)))
    allowed = sum(d.allowed for d in decisions)
    assert allowed == 50
    refused = [d for d in decisions if not d.allowed]
    assert all(d.retry_after > 0 and d.remaining == 0 for d in refused)


async def test_gcra_default_burst_spaces_requests(coords: list[lockstep.Coordinator]) -> None:
    limiters = [c.rate_limit("spaced", "5/100s") for c in coords]
    decisions = await asyncio.gather(*(limiters[i % 4].acquire("k") for i in range(200)))
    assert sum(d.allowed for d in decisions) == 1  # burst 1: one now, the next 20 s later
    assert max(d.retry_after for d in decisions) <= 20.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_retry_after_is_exact(coord: lockstep.Coordinator, algorithm: str) -> None:
    limiter = coord.rate_limit("retry", "4/0.4s", algorithm=algorithm)  # type: ignore[arg-type]
    first = await limiter.acquire("k")
    assert first.allowed and first.source == "store"
    refused = await limiter.acquire("k", cost=1) if algorithm == "gcra" else None
    if algorithm == "sliding_window":
        for _ in range(3):
            assert (await limiter.acquire("k")).allowed
        refused = await limiter.acquire("k")
    assert refused is not None and not refused.allowed
    assert 0.0 < refused.retry_after <= (0.1 if algorithm == "gcra" else 0.4)
    await asyncio.sleep(refused.retry_after)
    assert (await limiter.acquire("k")).allowed, "refused at retry_after"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_wait_sleeps_off_a_refusal_within_its_bound(coord: lockstep.Coordinator, algorithm: str) -> None:
    limiter = coord.rate_limit("wait", "5/0.5s", algorithm=algorithm)  # type: ignore[arg-type]
    while (await limiter.acquire("k")).allowed:
        pass
    started = time.monotonic()
    short = await limiter.acquire("k", wait=0.01)
    assert not short.allowed and time.monotonic() - started < 0.2, "returns at once when retry_after > wait"
    started = time.monotonic()
    waited = await limiter.acquire("k", wait=1.0)
    assert waited.allowed
    assert time.monotonic() - started <= 0.6


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_cost_above_what_can_ever_fit_is_refused_outright(coord: lockstep.Coordinator, algorithm: str) -> None:
    limiter = coord.rate_limit("costly", "5/second", algorithm=algorithm)  # type: ignore[arg-type]
    too_much = 2 if algorithm == "gcra" else 6  # GCRA's default burst is 1
    with pytest.raises(lockstep.InvalidInputError, match=f"cost {too_much} is more than"):
        await limiter.acquire("k", cost=too_much)
    for bad in (0, -1, 1.5, True, "1", None):
        with pytest.raises(lockstep.InvalidInputError):
            await limiter.acquire("k", cost=bad)  # type: ignore[arg-type]
    assert (await limiter.peek("k")).allowed, "nothing was spent by the refusals"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_peek_spends_nothing_and_reset_restores(coord: lockstep.Coordinator, algorithm: str) -> None:
    limiter = coord.rate_limit("peek", "3/10s", algorithm=algorithm, burst=3 if algorithm == "gcra" else None)  # type: ignore[arg-type]
    assert await limiter.reset("k") is False
    for _ in range(5):
        peeked = await limiter.peek("k")
        assert peeked.allowed and peeked.remaining == 2
    assert [(await limiter.acquire("k")).allowed for _ in range(4)] == [True, True, True, False]
    peeked = await limiter.peek("k")
    assert not peeked.allowed and peeked.retry_after > 0 and peeked.remaining == 0
    assert await limiter.reset("k") is True
    assert (await limiter.acquire("k", cost=3)).allowed


async def test_keys_names_and_namespaces_are_isolated(url: str, coord: lockstep.Coordinator) -> None:
    a = coord.rate_limit("iso", "2/10s", algorithm="sliding_window")
    assert (await a.acquire("k1", cost=2)).allowed
    assert not (await a.acquire("k1")).allowed
    assert (await a.acquire("k2", cost=2)).allowed
    other_name = coord.rate_limit("iso2", "2/10s", algorithm="sliding_window")
    assert (await other_name.acquire("k1", cost=2)).allowed
    async with lockstep.connect(url, namespace=f"{coord.namespace}-other") as elsewhere:
        assert (await elsewhere.rate_limit("iso", "2/10s", algorithm="sliding_window").acquire("k1", cost=2)).allowed


async def test_bad_keys_names_and_rates_get_typed_errors(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("typed", "5/second")
    for key in ("has space", "", "{tag}", "x" * 201, 5, None, "a\udcff"):
        with pytest.raises(lockstep.InvalidNameError):
            await limiter.acquire(key)  # type: ignore[arg-type]
    with pytest.raises(lockstep.InvalidNameError):
        coord.rate_limit("bad name", "5/second")
    for rate in ("100", "0/s", "5/fortnight", "1e9/s", (0, 1.0), (5, -1.0), (5, float("nan")), 5):
        with pytest.raises(lockstep.ConfigError, match="rate|limit|period"):
            coord.rate_limit("typed", rate)  # type: ignore[arg-type]
    with pytest.raises(lockstep.ConfigError, match="algorithm"):
        coord.rate_limit("typed", "5/second", algorithm="leaky")  # type: ignore[arg-type]
    with pytest.raises(lockstep.ConfigError, match="burst"):
        coord.rate_limit("typed", "5/second", algorithm="sliding_window", burst=3)
    with pytest.raises(lockstep.ConfigError, match="on_backend_error"):
        coord.rate_limit("typed", "5/second", on_backend_error="retry")  # type: ignore[arg-type]
    with pytest.raises(lockstep.InvalidInputError, match="wait"):
        await limiter.acquire("k", wait=float("nan"))


async def test_one_name_with_two_configurations_is_refused_while_live(coord: lockstep.Coordinator) -> None:
    first = coord.rate_limit("shared", "5/10s", algorithm="sliding_window")
    assert (await first.acquire("k")).allowed
    second = None
    with pytest.raises(lockstep.ConfigError, match="5/10s sliding_window"):
        second = coord.rate_limit("shared", "6/10s", algorithm="sliding_window")
        await second.acquire("k")
    await first.reset("k")
    again = coord.rate_limit("shared", "6/10s", algorithm="sliding_window")
    assert (await again.acquire("k")).allowed


async def test_try_acquire_nowait_decides_in_process_only_on_memory(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("nowait", "2/10s", algorithm="sliding_window")
    got = limiter.try_acquire_nowait("k")
    if coord.driver.name == "memory":
        assert isinstance(got, Decision) and got.allowed and got.remaining == 1
        assert (await limiter.acquire("k")).allowed
        refused = limiter.try_acquire_nowait("k", 1)
        assert refused is not None and not refused.allowed
    else:
        assert got is None


async def test_a_limit_above_1024_rounds_expiries_and_stays_exact(coord: lockstep.Coordinator) -> None:
    """Above 1024 units a sliding window logs expiries rounded up to period / 1024 (entries
    of one slot merged): still exactly the limit, and a unit counts at most one slot longer."""
    limiter = coord.rate_limit("big", "1500/10s", algorithm="sliding_window")
    got = [(await limiter.acquire("k", cost=100)).allowed for _ in range(16)]
    assert got == [True] * 15 + [False]
    assert not (await limiter.acquire("k")).allowed
    peek = await limiter.peek("k")
    assert not peek.allowed and peek.remaining == 0
    assert 9.0 < peek.retry_after <= 10.0 + 10.0 / 1024 + 0.001, peek


async def test_hit_nowait_is_the_same_decision_as_a_bool(coord: lockstep.Coordinator) -> None:
    limiter = coord.rate_limit("hit", "2/10s", algorithm="sliding_window")
    if coord.driver.name != "memory":
        assert limiter.hit_nowait("k") is None, "only the store can decide: never a refusal"
        assert (await limiter.peek("k")).remaining == 1, "and nothing was spent"
        return
    assert limiter.hit_nowait("k") is True
    assert limiter.try_acquire_nowait("k", 1).remaining == 0  # type: ignore[union-attr]
    assert limiter.hit_nowait("k") is False and not (await limiter.acquire("k")).allowed
    assert limiter.hit_nowait("other", 2) is True
    with pytest.raises(lockstep.InvalidInputError, match="cost 3"):
        limiter.hit_nowait("k", 3)
    with pytest.raises(lockstep.InvalidNameError):
        limiter.hit_nowait("bad key")


async def test_decision_reports_the_deciding_clock(coord: lockstep.Coordinator) -> None:
    limiter: RateLimiter = coord.rate_limit("clock", "5/second")
    before = await coord.time()
    decision = await limiter.acquire("k")
    after = await coord.time()
    assert before - 0.05 <= decision.at <= after + 0.05
    assert "RateLimiter 'clock' 5/1s gcra (burst 1)" in repr(limiter)
    assert repr(decision).startswith("Decision(allowed=True")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_idle_limits_vanish_from_the_backend(coord: lockstep.Coordinator, algorithm: str) -> None:
    limiter = coord.rate_limit("idle", "5/0.2s", algorithm=algorithm)  # type: ignore[arg-type]
    assert (await limiter.acquire("k")).allowed
    state = limiter._store.state_key("k")
    stored = [state, f"{state}|log"] if coord.driver.name.startswith("redis") and algorithm != "gcra" else [state]
    if coord.driver.name != "memory":
        for key in stored:
            ttl = await coord.driver.ttl(key, timeout=1.0)
            assert ttl is not None and 0 < ttl <= 0.21, (key, ttl)
    await asyncio.sleep(0.25)
    if coord.driver.name == "memory":
        assert limiter._store.table.live_keys() == 0  # type: ignore[attr-defined]
    elif coord.driver.name == "file":
        assert await coord.driver.get(state, timeout=1.0) is None
    else:  # a hash (and a sorted set): gone, not merely emptied
        assert await coord.driver.hgetall(state, timeout=1.0) == {}
        assert [await coord.driver.ttl(key, timeout=1.0) for key in stored] == [None] * len(stored)
