"""Rate limits: lockstep vs ``limits`` and pyrate-limiter, in-process and on Redis.

    .venv/bin/pytest benches/bench_ratelimit.py -s --benchmark-columns=min,median,ops

Measured in the same run, against one fresh ``redis-server`` (AOF everysec); every
benchmark round makes ``BATCH`` decisions, so decisions/s = ops x BATCH:

* in-process, one key hammered past its limit (mostly refusals) and 10 000 keys in
  turn (mostly admissions): lockstep's Rust counters (``try_acquire_nowait``, and the
  async ``acquire``) vs ``limits`` MemoryStorage moving window and pyrate-limiter's
  in-memory limiter (non-blocking ``try_acquire``; one key only: a pyrate ``Limiter``
  holds one bucket for every name unless given a bucket factory);
* on Redis, one decision per round trip: lockstep's Lua script (asyncio) vs ``limits``
  RedisStorage moving window (sync redis-py, also one Lua script per call);
* on Redis with token leasing (``lease=1000``): blocks of units per round trip, spent
  in-process, and a check that the shared limit still held across 3 coordinators.

``test_ratio_report`` prints medians side by side with the ratios. Benchmarks are not
timed tests: they assert the decisions are right, never that they are fast. The box is
shared with other work: read the ratios, not the absolutes.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import limits
import lockstep
import pyrate_limiter
from limits import storage, strategies

from tests.support.redis_server import RedisServer

BATCH = 1000
REDIS_BATCH = 300
KEYS = [f"k{i}" for i in range(10_000)]
LOOP = asyncio.new_event_loop()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer(Path(tempfile.mkdtemp(prefix="bench-rl-"))) as server:
        yield server.url()


def run(coro: Any) -> Any:
    return LOOP.run_until_complete(coro)


# -- contenders, each making `n` decisions ----------------------------------------------
# The timed loops are as lean as Python allows ([f(k) for k in keys]) for every contender
# alike, so the loop's own cost does not hide the difference; the admitted count is
# taken from the returned results afterwards.
def _keys_for(keys: list[str], n: int) -> Callable[[], list[str]]:
    """Successive slices of ``keys`` (cycled), ``n`` at a time."""
    cycle = itertools.cycle(keys).__next__
    return lambda: [cycle() for _ in range(n)] if len(keys) > 1 else keys * n


def admitted(results: list[Any]) -> int:
    return sum(bool(r.allowed if hasattr(r, "allowed") else r) for r in results)


def lockstep_memory(rate: str, keys: list[str]) -> tuple[Callable[[int], int], Callable[[int], int]]:
    """(try_acquire_nowait batch, async acquire batch) on the memory driver."""
    coord = run(lockstep.connect(f"memory://bench-{time.time_ns()}", namespace="bench").open())
    limiter = coord.rate_limit("bench", rate, algorithm="sliding_window")
    nowait = limiter.try_acquire_nowait
    slices = {n: _keys_for(keys, n) for n in (BATCH,)}

    def sync_batch(n: int) -> int:
        ks = slices[n]()
        return admitted([nowait(k) for k in ks])

    async def many(ks: list[str]) -> list[Any]:
        return [await limiter.acquire(k) for k in ks]

    return sync_batch, lambda n: admitted(run(many(slices[n]())))


def limits_memory(rate: str, keys: list[str]) -> Callable[[int], int]:
    hit = strategies.MovingWindowRateLimiter(storage.MemoryStorage()).hit
    item = limits.parse(rate)
    slices = _keys_for(keys, BATCH)
    return lambda n: admitted([hit(item, k) for k in slices()])


def pyrate_memory(limit: int, period_ms: int, keys: list[str]) -> Callable[[int], int]:
    acquire = pyrate_limiter.Limiter(pyrate_limiter.Rate(limit, period_ms)).try_acquire
    slices = _keys_for(keys, BATCH)
    return lambda n: admitted([acquire(k, blocking=False) for k in slices()])


def lockstep_redis(url: str, *, lease: int | None = None) -> Callable[[int], int]:
    coord = run(lockstep.connect(url, namespace=f"bench{time.time_ns()}", timeout=10).open())
    limiter = coord.rate_limit("bench", "1000000/minute", algorithm="sliding_window", lease=lease)

    async def many(n: int) -> int:
        return sum([(await limiter.acquire("k")).allowed for _ in range(n)])

    return lambda n: run(many(n))


def limits_redis(url: str) -> Callable[[int], int]:
    hit = strategies.MovingWindowRateLimiter(storage.RedisStorage(url)).hit
    item = limits.parse("1000000/minute")
    key = f"bench{time.time_ns()}"
    return lambda n: sum(hit(item, key) for _ in range(n))


# -- pytest-benchmark entries -----------------------------------------------------------
SAT = ("100/second", ["k"])  # one key, hammered: mostly refusals
MANY = ("100/minute", KEYS)  # 10 000 keys in turn: mostly admissions


@pytest.mark.benchmark(group="in-process, one key past its limit (x1000)")
def test_memory_saturated_lockstep_nowait(benchmark: Any) -> None:
    sync_batch, _ = lockstep_memory(*SAT)
    assert benchmark(sync_batch, BATCH) <= 100


@pytest.mark.benchmark(group="in-process, one key past its limit (x1000)")
def test_memory_saturated_lockstep_async(benchmark: Any) -> None:
    _, async_batch = lockstep_memory(*SAT)
    assert benchmark(async_batch, BATCH) <= 100


@pytest.mark.benchmark(group="in-process, one key past its limit (x1000)")
def test_memory_saturated_limits_moving_window(benchmark: Any) -> None:
    assert benchmark(limits_memory(*SAT), BATCH) <= 100


@pytest.mark.benchmark(group="in-process, one key past its limit (x1000)")
def test_memory_saturated_pyrate(benchmark: Any) -> None:
    assert benchmark(pyrate_memory(100, 1000, ["k"]), BATCH) <= 100


@pytest.mark.benchmark(group="in-process, 10 000 keys (x1000)")
def test_memory_keys_lockstep_nowait(benchmark: Any) -> None:
    sync_batch, _ = lockstep_memory(*MANY)
    assert benchmark(sync_batch, BATCH) == BATCH


@pytest.mark.benchmark(group="in-process, 10 000 keys (x1000)")
def test_memory_keys_limits_moving_window(benchmark: Any) -> None:
    assert benchmark(limits_memory(*MANY), BATCH) == BATCH


@pytest.mark.benchmark(group="redis, one decision per round trip (x300)")
def test_redis_lockstep(benchmark: Any, redis_url: str) -> None:
    assert benchmark.pedantic(lockstep_redis(redis_url), (REDIS_BATCH,), rounds=8, warmup_rounds=1) == REDIS_BATCH


@pytest.mark.benchmark(group="redis, one decision per round trip (x300)")
def test_redis_limits_moving_window(benchmark: Any, redis_url: str) -> None:
    assert benchmark.pedantic(limits_redis(redis_url), (REDIS_BATCH,), rounds=8, warmup_rounds=1) == REDIS_BATCH


@pytest.mark.benchmark(group="redis, leased (x1000)")
def test_redis_lockstep_leased(benchmark: Any, redis_url: str) -> None:
    assert benchmark(lockstep_redis(redis_url, lease=1000), BATCH) == BATCH


def test_leased_redis_never_exceeds_the_limit(redis_url: str) -> None:
    """3 coordinators, leased blocks of 200, a 5000-per-10 s limit hammered for 2 s."""
    admitted = run(_leased_hammer(redis_url, limit=5000, seconds=2.0))
    assert 0 < admitted <= 5000


async def _leased_hammer(url: str, *, limit: int, seconds: float) -> int:
    namespace = f"bench-cap{time.time_ns()}"
    coords = [await lockstep.connect(url, namespace=namespace, timeout=10).open() for _ in range(3)]
    limiters = [c.rate_limit("cap", f"{limit}/10s", algorithm="sliding_window", lease=200) for c in coords]
    stop = time.monotonic() + seconds

    async def hammer(limiter: Any) -> int:
        got = 0
        while time.monotonic() < stop:
            decision = await limiter.acquire("k")
            got += decision.allowed
            if not decision.allowed:
                await asyncio.sleep(0.01)
        return got

    counts = await asyncio.gather(*(hammer(lim) for lim in limiters))
    for limiter in limiters:
        await limiter.close()
    for c in coords:
        await c.close()
    return sum(counts)


# -- side by side -----------------------------------------------------------------------------
def _rate(batch: Callable[[int], int], n: int, rounds: int) -> float:
    batch(n)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        batch(n)
        samples.append(time.perf_counter() - started)
    return n / statistics.median(samples)


def test_ratio_report(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Decisions per second, medians, with lockstep's ratio to each baseline."""
    sat_nowait, sat_async = lockstep_memory(*SAT)
    many_nowait, many_async = lockstep_memory(*MANY)
    table = {
        "in-process, one key past its limit": {
            "lockstep try_acquire_nowait": _rate(sat_nowait, BATCH, 20),
            "lockstep await acquire": _rate(sat_async, BATCH, 20),
            "limits moving window": _rate(limits_memory(*SAT), BATCH, 20),
            "pyrate-limiter": _rate(pyrate_memory(100, 1000, ["k"]), BATCH, 10),
        },
        "in-process, 10 000 keys in turn": {
            "lockstep try_acquire_nowait": _rate(many_nowait, BATCH, 20),
            "lockstep await acquire": _rate(many_async, BATCH, 20),
            "limits moving window": _rate(limits_memory(*MANY), BATCH, 10),
        },
        "redis": {
            "lockstep await acquire (1 round trip)": _rate(lockstep_redis(redis_url), REDIS_BATCH, 5),
            "lockstep leased, lease=1000": _rate(lockstep_redis(redis_url, lease=1000), BATCH * 10, 5),
            "limits RedisStorage moving window": _rate(limits_redis(redis_url), REDIS_BATCH, 5),
        },
    }
    admitted = run(_leased_hammer(redis_url, limit=5000, seconds=2.0))
    with capsys.disabled():
        print("\nrate-limit decisions per second (medians; the box is shared)")
        for group, rows in table.items():
            print(f"  {group}")
            baselines = {k: v for k, v in rows.items() if not k.startswith("lockstep")}
            for name, value in rows.items():
                ratios = "" if name in baselines else "  " + "  ".join(f"x{value / b:7.1f} vs {bn}" for bn, b in baselines.items())
                print(f"    {name:40} {value:12,.0f}/s{ratios}")
        print(f"  leased, 3 coordinators, 5000 per 10 s hammered 2 s: {admitted} admitted (limit 5000)")
    assert admitted <= 5000
