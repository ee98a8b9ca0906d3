"""Membership on Redis: sweeping 10,000 agents with 30% dead, heartbeat cost, memory per agent.

    .venv/bin/pytest benches/bench_membership.py -s --benchmark-min-rounds=3

Measured against a fresh ``redis-server`` (started here on a free loopback port):

- **sweep**: 7,000 live agents and 3,000 dead ones (silent past their ttl); one
  ``coord.sweep()`` reaps the 3,000. Time and round trips. Target: at most 1 s, work
  proportional to the dead (the sweep reads only the stale end of the heartbeat order).
  Baseline, in the same run: what the seed did, a heartbeat key per agent
  (``hb:<id>`` = last beat) found with ``SCAN MATCH`` and read with ``MGET``, whose work
  grows with every agent, living or dead.
- **idle sweep**: the same with nobody dead, the cost paid every sweep interval.
- **heartbeat**: one coordinator's heartbeat of all its agents (one script per 1,000
  agents, so the server is never blocked long); cost per agent per interval.
- **memory**: ``used_memory`` growth per idle registered agent (record, heartbeat order,
  process index), and the same by ``MEMORY USAGE``.

Benchmarks are not timed tests: they assert what each run did (the exact dead reaped),
never that it was fast. ``test_report`` prints the figures.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lockstep
from lockstep import procinfo
from lockstep.drivers.member_store import Registration
from lockstep.drivers.redis_members import HEARTBEAT_CHUNK

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.redis_server import RedisServer  # noqa: E402

LIVING, DEAD = 7_000, 3_000
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("bench-redis"), appendonly="everysec")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def coord(server: RedisServer, loop: asyncio.AbstractEventLoop) -> Iterator[lockstep.Coordinator]:
    c = lockstep.connect(server.url(), namespace="bench", timeout=30)
    loop.run_until_complete(c.open())
    yield c
    loop.run_until_complete(c.close())


class RoundTrips:
    """Counts commands the driver sends (each is one round trip)."""

    def __init__(self, coord: lockstep.Coordinator) -> None:
        self.driver: Any = coord.driver
        self.count = 0
        self._call = self.driver._call

    def __enter__(self) -> RoundTrips:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await self._call(*args, **kwargs)

        self.driver._call = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.driver._call = self._call


def registration(agent: str, ttl: float) -> Registration:
    me = procinfo.current()
    # A host id of no real host: the sweep's local process check has nothing to look at.
    return Registration(agent, ttl, ttl / 3, b"{}", "bench", "bench-host/0", me.pid, me.start, "bench")


async def register_many(coord: lockstep.Coordinator, names: list[str], ttl: float) -> None:
    store = coord._membership_manager().store
    for start in range(0, len(names), 500):
        await asyncio.gather(*(store.register(registration(n, ttl), timeout=30) for n in names[start : start + 500]))


def used_memory(server: RedisServer) -> int:
    return int(server.client().info("memory")["used_memory"])


def test_memory_per_idle_agent(
    coord: lockstep.Coordinator, server: RedisServer, loop: asyncio.AbstractEventLoop
) -> None:
    loop.run_until_complete(register_many(coord, ["warm-up"], 3600))  # scripts loaded, structures made
    before, usage_before = used_memory(server), loop.run_until_complete(coord.memory_usage())
    loop.run_until_complete(register_many(coord, [f"live-{i}" for i in range(LIVING)], 3600))
    after, usage_after = used_memory(server), loop.run_until_complete(coord.memory_usage())
    per_agent = (after - before) / LIVING
    by_keys = (usage_after.namespace_bytes - usage_before.namespace_bytes) / LIVING
    FIGURES["memory per idle agent"] = f"{per_agent:.0f} B (used_memory), {by_keys:.0f} B (MEMORY USAGE of its keys)"
    assert len(loop.run_until_complete(coord.members())) == LIVING + 1


def test_heartbeat_cost(benchmark: Any, coord: lockstep.Coordinator, loop: asyncio.AbstractEventLoop) -> None:
    store = coord._membership_manager().store
    beats = [(m.agent_id, m.incarnation) for m in loop.run_until_complete(coord.members())]

    def beat_all() -> list[bool]:
        return loop.run_until_complete(store.heartbeat(beats, timeout=30))

    with RoundTrips(coord) as trips:
        oks = benchmark.pedantic(beat_all, rounds=5, iterations=1)
    assert all(oks)
    seconds = benchmark.stats.stats.median
    FIGURES["heartbeat, all agents"] = (
        f"{len(beats)} agents, {trips.count // 5} round trips (1 per {HEARTBEAT_CHUNK} agents): "
        f"{seconds * 1e3:.1f} ms, {seconds / len(beats) * 1e6:.1f} us per agent per interval"
    )


def test_sweep_10000_agents_30_percent_dead(
    benchmark: Any, coord: lockstep.Coordinator, loop: asyncio.AbstractEventLoop
) -> None:
    rounds: list[tuple[float, int]] = []

    def make_dead() -> None:
        loop.run_until_complete(register_many(coord, [f"dead-{i}" for i in range(DEAD)], 0.2))
        loop.run_until_complete(asyncio.sleep(0.3))

    def sweep() -> Any:
        with RoundTrips(coord) as trips:
            started = time.perf_counter()
            report = loop.run_until_complete(coord.sweep())
            rounds.append((time.perf_counter() - started, trips.count))
        assert sorted(report.agents) == sorted(f"dead-{i}" for i in range(DEAD))
        return report

    benchmark.pedantic(sweep, setup=make_dead, rounds=3, iterations=1)
    seconds, trips = sorted(rounds)[len(rounds) // 2]
    FIGURES["sweep, 10,000 agents, 30% dead"] = f"{seconds * 1e3:.0f} ms, {trips} round trips (median of {len(rounds)})"


def test_baseline_scan_sweep(benchmark: Any, server: RedisServer) -> None:
    """The seed's way: a heartbeat key per agent, found by SCAN, read by MGET, dead ones DELeted."""
    client = server.client()
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for i in range(LIVING):
            pipe.set(f"hb:live-{i}", now + 3600)
        pipe.execute()
    rounds: list[tuple[float, int]] = []

    def make_dead() -> None:
        with client.pipeline(transaction=False) as pipe:
            for i in range(DEAD):
                pipe.set(f"hb:dead-{i}", time.time() - 1)
            pipe.execute()

    def scan_sweep() -> int:
        started, trips, cursor, dead = time.perf_counter(), 0, 0, 0
        while True:
            cursor, keys = client.scan(cursor, match="hb:*", count=1000)
            trips += 1
            if keys:
                values = client.mget(keys)
                trips += 1
                stale = [k for k, v in zip(keys, values, strict=True) if v is not None and float(v) < time.time()]
                if stale:
                    dead += client.delete(*stale)
                    trips += 1
            if cursor == 0:
                break
        rounds.append((time.perf_counter() - started, trips))
        return dead

    assert benchmark.pedantic(scan_sweep, setup=make_dead, rounds=3, iterations=1) == DEAD
    seconds, trips = sorted(rounds)[len(rounds) // 2]
    FIGURES["baseline: SCAN + MGET sweep"] = f"{seconds * 1e3:.0f} ms, {trips} round trips (median of {len(rounds)})"


def test_sweep_when_nobody_died(benchmark: Any, coord: lockstep.Coordinator, loop: asyncio.AbstractEventLoop) -> None:
    """The steady state, paid every sweep interval: 7,000 live agents, none dead."""
    trips = RoundTrips(coord)
    with trips:
        report = benchmark.pedantic(lambda: loop.run_until_complete(coord.sweep()), rounds=20, iterations=1)
    assert report.reaped == []
    FIGURES["sweep, 7,000 agents, none dead"] = (
        f"{benchmark.stats.stats.median * 1e3:.1f} ms, {trips.count // 20} round trips"
    )


def test_baseline_scan_when_nobody_died(benchmark: Any, server: RedisServer) -> None:
    client = server.client()

    def scan_all() -> int:
        cursor, seen = 0, 0
        while True:
            cursor, keys = client.scan(cursor, match="hb:*", count=1000)
            if keys:
                seen += sum(1 for v in client.mget(keys) if v is not None and float(v) < time.time())
            if cursor == 0:
                return seen

    assert benchmark.pedantic(scan_all, rounds=20, iterations=1) == 0
    FIGURES["baseline: SCAN + MGET, none dead"] = f"{benchmark.stats.stats.median * 1e3:.1f} ms"


def test_report(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nmembership on Redis ({LIVING:,} live + {DEAD:,} dead agents)")
        for name, figure in FIGURES.items():
            print(f"  {name:34} {figure}")

