"""Rate limits: lockstep vs ``limits`` and pyrate-limiter, in-process and on Redis.

    .venv/bin/pytest benches/bench_ratelimit.py -s --benchmark-columns=min,median,ops

Measured in the same run, against one fresh ``redis-server`` (AOF everysec); every
benchmark round makes the decisions its group's name shows (x1000 ...), so decisions/s =
ops x that:

* in-process, one key hammered past its limit (mostly refusals) and 10 000 keys in
  turn (mostly admissions). Like for like: ``limits``' ``hit()`` (MemoryStorage, moving
  window) and pyrate-limiter's non-blocking ``try_acquire()`` answer a bool, and so does
  lockstep's ``hit_nowait()`` (the Rust counters, no Decision built). lockstep's
  ``try_acquire_nowait()`` (a full Decision) and ``await acquire()`` are shown beside
  them. pyrate runs on one key only: a pyrate ``Limiter`` holds one bucket for every
  name unless given a bucket factory;
* on Redis, one decision per round trip: lockstep's Lua script (asyncio, one EVALSHA)
  vs ``limits`` RedisStorage moving window (sync redis-py, also one EVALSHA per call);
* on Redis with token leasing (``lease=1000``): blocks of units per round trip, spent
  in-process, and a check that the shared limit still held across 3 coordinators.

Where lockstep's in-process time goes (perf, this 2-core VM, where a clock read costs
35-40 ns and a read of the CPU's cycle counter ~20 ns). One key hammered: ~85-95 ns a
``hit_nowait``, of which ~30 ns is the loop itself, ~9 ns the pyo3 call and its
arguments, ~8 ns the one atomic of the table's exclusive borrow (the mutex is bypassed),
~20 ns the cycle counter and ~20 ns the decision: the key is the ``str`` object decided
on last, so its slot is at hand without hashing, and its window is full until its next
expiry, which the counter shows is still ahead, so the call refuses without reading the
clock (``rust/python/src/ratelimit/local.rs``; that bound can only refuse, never admit).
10 000 keys in turn: ~220-290 ns a call, all admissions: ~85 ns the loop and the call on a
cold ``str``, ~60 ns the borrow and the clock (an admission is stamped with the exact
time), the rest the lookup and the decision, on cold memory: Python's cached hash of the
key into a compact index (128 KiB, stays in cache), then one 128-byte slot holding the
key and a short log inline, slots kept in the order keys came, so a sweep over the keys
streams them. On Redis the server's script time is on the critical path: lockstep's
sliding window (exact, on the server clock) costs about twice ``limits``' list script.

Only the calls are timed: each timed loop is ``[decide(k) for k in keys]`` over a key
list built beforehand, alike for every contender; admissions are counted afterwards.
With 10 000 keys a round is one pass over all of them (10 000 calls). ``limits``'
MemoryStorage does part of its work on a background thread: a timer, re-armed by the
calls 10 ms after its last run, that walks every key's event list (on 10 000 keys that
walk takes milliseconds, holding the GIL). Rounds shorter than that period (this bench
once timed 1 000 calls a round: ~7 ms for ``limits``) charged the walk at random: to
``limits`` when it fired inside a ``limits`` round, to whoever ran next when it fired
after one, to nobody in between (then ``limits`` measured up to twice as fast). A pass
spans several periods, so the walks happen inside ``limits``' own rounds as they do in
continuous use; and after each of its rounds its timer is joined, untimed, so that no
other contender's round pays for it.
``test_ratio_report`` interleaves the contenders round by round (so a change in the
shared box's load hits all of them alike), prints medians side by side with the ratios
and the load average. Benchmarks are not timed tests: they assert the decisions are
right, never that they are fast. Read the ratios, not the absolutes.
"""

from __future__ import annotations

import asyncio
import os
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

#: a contender: makes one batch of decisions and returns how many were admitted, the
#: timed part being only the calls themselves
Batch = Callable[[], int]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer(Path(tempfile.mkdtemp(prefix="bench-rl-"))) as server:
        yield server.url()


def run(coro: Any) -> Any:
    return LOOP.run_until_complete(coro)


def _batches(keys: list[str]) -> Callable[[], list[str]]:
    """The keys of each round, built once: one key, that key ``BATCH`` times; many, all of them."""
    slices = [keys * BATCH] if len(keys) == 1 else [keys]
    state = {"i": -1}

    def next_batch() -> list[str]:
        state["i"] = (state["i"] + 1) % len(slices)
        return slices[state["i"]]

    return next_batch


def admitted(results: list[Any]) -> int:
    return sum(bool(r.allowed if hasattr(r, "allowed") else r) for r in results)


def sync_contender(decide: Callable[[str], Any], keys: list[str]) -> Batch:
    """Times ``[decide(k) for k in batch]`` only; the count is taken after, and a
    contender's background work (``decide.settle``, if any) is waited for after that."""
    next_batch = _batches(keys)
    timed: list[float] = []
    settle = getattr(decide, "settle", lambda: None)

    def batch() -> int:
        ks = next_batch()
        started = time.perf_counter()
        results = [decide(k) for k in ks]
        timed.append(time.perf_counter() - started)
        settle()
        return admitted(results)

    batch.timed = timed  # type: ignore[attr-defined]
    return batch


def memory_limiter(rate: str) -> Any:
    coord = run(lockstep.connect(f"memory://bench-{time.time_ns()}", namespace="bench").open())
    return coord.rate_limit("bench", rate, algorithm="sliding_window")


def lockstep_async(limiter: Any, keys: list[str]) -> Batch:
    next_batch = _batches(keys)
    timed: list[float] = []

    async def many(ks: list[str]) -> list[Any]:
        started = time.perf_counter()
        results = [await limiter.acquire(k) for k in ks]
        timed.append(time.perf_counter() - started)
        return results

    def batch() -> int:
        return admitted(run(many(next_batch())))

    batch.timed = timed  # type: ignore[attr-defined]
    return batch


class LimitsMemory:
    """``limits``' ``hit()`` on a MemoryStorage; ``settle()`` waits out its expiry timer
    (see the module docstring)."""

    def __init__(self, rate: str) -> None:
        self.storage = storage.MemoryStorage()
        self.hit = strategies.MovingWindowRateLimiter(self.storage).hit
        self.item = limits.parse(rate)

    def __call__(self, key: str) -> bool:
        return self.hit(self.item, key)

    def settle(self) -> None:
        self.storage.timer.join()


def limits_memory(rate: str) -> Callable[[str], bool]:
    return LimitsMemory(rate)


def pyrate_memory(limit: int, period_ms: int) -> Callable[[str], Any]:
    """pyrate's sync limiter: ``try_acquire`` answers a bool (awaitable only on async buckets)."""
    acquire = pyrate_limiter.Limiter(pyrate_limiter.Rate(limit, period_ms)).try_acquire
    return lambda key: acquire(key, blocking=False)


def in_process(rate: str, keys: list[str], *, pyrate: tuple[int, int] | None) -> dict[str, Batch]:
    """The in-process contenders for one workload, lockstep's first. lockstep's three calls
    share one limiter, as an application's would (one table of keys, not three)."""
    limiter = memory_limiter(rate)
    contenders = {
        "lockstep hit_nowait -> bool": sync_contender(limiter.hit_nowait, keys),
        "lockstep try_acquire_nowait -> Decision": sync_contender(limiter.try_acquire_nowait, keys),
        "lockstep await acquire -> Decision": lockstep_async(limiter, keys),
        "limits hit(), moving window": sync_contender(limits_memory(rate), keys),
    }
    if pyrate is not None:
        contenders["pyrate-limiter try_acquire()"] = sync_contender(pyrate_memory(*pyrate), keys)
    return contenders


def lockstep_redis(url: str, *, lease: int | None = None, n: int = REDIS_BATCH) -> Batch:
    coord = run(lockstep.connect(url, namespace=f"bench{time.time_ns()}", timeout=10).open())
    limiter = coord.rate_limit("bench", "1000000/minute", algorithm="sliding_window", lease=lease)
    timed: list[float] = []

    async def many() -> int:
        acquire = limiter.acquire
        started = time.perf_counter()
        results = [await acquire("k") for _ in range(n)]
        timed.append(time.perf_counter() - started)
        return admitted(results)

    def batch() -> int:
        return run(many())

    batch.timed = timed  # type: ignore[attr-defined]
    return batch


def limits_redis(url: str, n: int = REDIS_BATCH) -> Batch:
    hit = strategies.MovingWindowRateLimiter(storage.RedisStorage(url)).hit
    item = limits.parse("1000000/minute")
    key = f"bench{time.time_ns()}"
    timed: list[float] = []

    def batch() -> int:
        started = time.perf_counter()
        results = [hit(item, key) for _ in range(n)]
        timed.append(time.perf_counter() - started)
        return admitted(results)

    batch.timed = timed  # type: ignore[attr-defined]
    return batch


# -- pytest-benchmark entries -----------------------------------------------------------
SAT = ("100/second", ["k"])  # one key, hammered: mostly refusals
MANY = ("100/minute", KEYS)  # 10 000 keys in turn: mostly admissions
SAT_GROUP = "in-process, one key past its limit (x1000)"
MANY_GROUP = "in-process, 10 000 keys (x10000)"


def bench_calls(benchmark: Any, decide: Callable[[str], Any], keys: list[str]) -> int:
    """pytest-benchmark times ``[decide(k) for k in keys]``; returns the last round's admissions.
    With many keys: 5 rounds of one pass each, every key asked once a round, well within its
    limit, for every contender alike; a contender's background work is waited for (untimed)
    before each round."""
    next_batch = _batches(keys)

    def calls() -> list[Any]:
        return [decide(k) for k in next_batch()]

    if len(keys) > 1:
        settle = getattr(decide, "settle", lambda: None)
        return admitted(benchmark.pedantic(calls, setup=settle, rounds=5, iterations=1))
    return admitted(benchmark(calls))


@pytest.mark.benchmark(group=SAT_GROUP)
def test_memory_saturated_lockstep_hit_nowait(benchmark: Any) -> None:
    assert bench_calls(benchmark, memory_limiter(SAT[0]).hit_nowait, SAT[1]) <= 100


@pytest.mark.benchmark(group=SAT_GROUP)
def test_memory_saturated_lockstep_try_acquire_nowait(benchmark: Any) -> None:
    assert bench_calls(benchmark, memory_limiter(SAT[0]).try_acquire_nowait, SAT[1]) <= 100


@pytest.mark.benchmark(group=SAT_GROUP)
def test_memory_saturated_lockstep_async(benchmark: Any) -> None:
    assert benchmark(lockstep_async(memory_limiter(SAT[0]), SAT[1])) <= 100


@pytest.mark.benchmark(group=SAT_GROUP)
def test_memory_saturated_limits_moving_window(benchmark: Any) -> None:
    assert bench_calls(benchmark, limits_memory(SAT[0]), SAT[1]) <= 100


@pytest.mark.benchmark(group=SAT_GROUP)
def test_memory_saturated_pyrate(benchmark: Any) -> None:
    assert bench_calls(benchmark, pyrate_memory(100, 1000), SAT[1]) <= 100


@pytest.mark.benchmark(group=MANY_GROUP)
def test_memory_keys_lockstep_hit_nowait(benchmark: Any) -> None:
    assert bench_calls(benchmark, memory_limiter(MANY[0]).hit_nowait, MANY[1]) == len(KEYS)


@pytest.mark.benchmark(group=MANY_GROUP)
def test_memory_keys_limits_moving_window(benchmark: Any) -> None:
    assert bench_calls(benchmark, limits_memory(MANY[0]), MANY[1]) == len(KEYS)


@pytest.mark.benchmark(group="redis, one decision per round trip (x300)")
def test_redis_lockstep(benchmark: Any, redis_url: str) -> None:
    assert benchmark.pedantic(lockstep_redis(redis_url), rounds=8, warmup_rounds=1) == REDIS_BATCH


@pytest.mark.benchmark(group="redis, one decision per round trip (x300)")
def test_redis_limits_moving_window(benchmark: Any, redis_url: str) -> None:
    assert benchmark.pedantic(limits_redis(redis_url), rounds=8, warmup_rounds=1) == REDIS_BATCH


@pytest.mark.benchmark(group="redis, leased (x1000)")
def test_redis_lockstep_leased(benchmark: Any, redis_url: str) -> None:
    assert benchmark(lockstep_redis(redis_url, lease=1000, n=BATCH)) == BATCH


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
def interleaved(contenders: dict[str, Batch], n: int, rounds: int) -> dict[str, float]:
    """Decisions per second of each contender: the median of its timed rounds, the
    contenders taking turns round by round, in an order rotated every round (whoever goes
    first after another's round finds the caches cold), after one warm-up round each."""
    for batch in contenders.values():
        batch()
        batch.timed.clear()  # type: ignore[attr-defined]
    order = list(contenders.values())
    for r in range(rounds):
        for batch in order[r % len(order) :] + order[: r % len(order)]:
            batch()
    return {name: n / statistics.median(batch.timed) for name, batch in contenders.items()}  # type: ignore[attr-defined]


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def test_ratio_report(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Decisions per second, medians, with lockstep's ratio to each baseline."""
    load_before = _load()
    table = {
        "in-process, one key past its limit": interleaved(in_process(*SAT, pyrate=(100, 1000)), BATCH, 15),
        "in-process, 10 000 keys in turn": interleaved(in_process(*MANY, pyrate=None), len(KEYS), 7),
        "redis, one EVALSHA per decision": interleaved(
            {"lockstep await acquire": lockstep_redis(redis_url), "limits RedisStorage hit()": limits_redis(redis_url)},
            REDIS_BATCH,
            9,
        ),
        "redis, leased": interleaved(
            {
                "lockstep leased, lease=1000": lockstep_redis(redis_url, lease=1000, n=BATCH * 10),
                "limits RedisStorage hit()": limits_redis(redis_url),
            },
            BATCH * 10,
            5,
        ),
    }
    table["redis, leased"]["limits RedisStorage hit()"] *= REDIS_BATCH / (BATCH * 10)  # it made REDIS_BATCH a round
    admitted = run(_leased_hammer(redis_url, limit=5000, seconds=2.0))
    with capsys.disabled():
        print(f"\nrate-limit decisions per second (medians, interleaved; load average {load_before} -> {_load()})")
        for group, rows in table.items():
            print(f"  {group}")
            baselines = {k: v for k, v in rows.items() if not k.startswith("lockstep")}
            for name, value in rows.items():
                ratios = "" if name in baselines else "  " + "  ".join(f"x{value / b:6.1f} vs {bn}" for bn, b in baselines.items())
                print(f"    {name:42} {value:11,.0f}/s{ratios}")
        print(f"  leased, 3 coordinators, 5000 per 10 s hammered 2 s: {admitted} admitted (limit 5000)")
    assert admitted <= 5000
