"""Signals, ACKs and epics: the figures issue 6 promises, measured.

    .venv/bin/python -m pytest benches/bench_signals.py -s

- **epic makespan / lower bound** (target <= 1.05): the seed's three epics (examples/)
  at 1 simulated minute = 50 ms, on the file driver and on Redis, sprints as tasks of
  this process, and the 10-sprint epic once more with a worker process per sprint. The
  bound is the plan's own (critical path, test-lock serialization, capacity): no
  schedule can beat it, so the ratio is the runner's overhead plus its scheduling loss.
- **signal wake-up latency on Redis** (target p99 <= 5 ms): one coordinator waits with
  ``wait_signal(after_generation=g)``, another sends generation g + 1; the time from the
  send's start to the waiter's return, 300 times. In the same run, the floor a user of
  redis-py would get: PUBLISH to a ``PubSub`` subscriber, send to receipt.
- **wait_acks with 50 parties** on Redis: 50 parties (over 5 coordinators) ack a signal
  at once; the time until ``wait_acks`` returns complete, and the round trips of one
  check (one MGET), against the naive one GET per party.

Benchmarks are not timed tests: they assert that each run did what it says (released,
complete, every sprint done), never that it was fast. ``test_report`` prints the figures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lockstep
import pytest
from lockstep.epic import EpicRunner, load_plan, summary

from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
PLANS = ["epic-3-independent.toml", "epic-5-mixed.toml", "epic-10-sprints.toml"]
EPIC_SCALE = 0.05  # real seconds per simulated minute
SAMPLES = 300
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("bench-redis"), appendonly="everysec") as s:
        yield s


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


@pytest.mark.parametrize("driver", ["file", "redis"])
def test_epic_makespan_over_lower_bound(driver: str, server: RedisServer, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'coord.db'}" if driver == "file" else server.url()
    cases = [(plan, "inline") for plan in PLANS]
    if driver == "redis":
        cases.append(("epic-10-sprints.toml", "process"))
    for plan_file, workers in cases:
        plan = load_plan(ROOT / "examples" / plan_file)
        result = asyncio.run(EpicRunner(plan, url=url, time_scale=EPIC_SCALE, workers=workers).run())
        s = summary(result)
        assert s["ok"], s["sprints"]
        FIGURES[f"epic {plan.name} ({driver}, {workers})"] = (
            f"makespan {s['makespan_min']:.1f} min / bound {s['lower_bound_min']:.1f} = "
            f"{s['makespan_over_bound']:.3f} (target <= 1.05; seed target < {plan.target_minutes:g})"
        )


def test_signal_wakeup_latency_on_redis(server: RedisServer) -> None:
    async def measure() -> list[float]:
        url = server.url()
        async with lockstep.connect(url, namespace="bench-sig", member="sender") as sender, \
                lockstep.connect(url, namespace="bench-sig", member="waiter") as waiter:  # fmt: skip
            await sender.signal("s", "warm")
            await waiter.wait_signal("s", "warm", timeout=5)
            latencies = []
            for g in range(SAMPLES):
                waiting = asyncio.ensure_future(waiter.wait_signal("s", "tick", timeout=5, after_generation=g))
                await asyncio.sleep(0.002)  # the waiter is subscribed and has checked: waiting
                started = time.perf_counter()
                await asyncio.gather(sender.signal("s", "tick", g + 1), waiting)
                got = waiting.result()
                latencies.append(time.perf_counter() - started)
                assert got.generation == g + 1
            return latencies

    lat = asyncio.run(measure())
    FIGURES["signal wake-up latency, Redis (lockstep)"] = (
        f"p50 {ms(statistics.median(lat))}, p99 {ms(pct(lat, 99))}, max {ms(max(lat))} over {SAMPLES} (target p99 <= 5 ms)"
    )

    client = server.client()
    sub = server.client().pubsub()
    sub.subscribe("bench-floor")
    assert sub.get_message(timeout=1) is not None  # the subscribe confirmation
    floor = []
    for i in range(SAMPLES):
        started = time.perf_counter()
        client.publish("bench-floor", str(i))
        while sub.get_message(timeout=1) is None:
            pass
        floor.append(time.perf_counter() - started)
    sub.close()
    FIGURES["PUBLISH -> PubSub receipt, redis-py (floor)"] = (
        f"p50 {ms(statistics.median(floor))}, p99 {ms(pct(floor, 99))}, max {ms(max(floor))}"
    )


def test_wait_acks_with_fifty_parties(server: RedisServer) -> None:
    parties = [f"p{i:02d}" for i in range(50)]

    async def measure() -> tuple[list[float], int]:
        url = server.url()
        coords = [lockstep.connect(url, namespace="bench-ack", member=f"c{i}") for i in range(6)]
        for c in coords:
            await c.open()
        lead, ackers = coords[0], coords[1:]
        try:
            times = []
            for _ in range(20):
                sig = await lead.signal("lead", "deploy", {"build": 1})
                waiting = asyncio.ensure_future(lead.wait_acks(sig, parties, timeout=10))
                await asyncio.sleep(0.005)
                started = time.perf_counter()
                await asyncio.gather(*(ackers[i % 5].ack(sig, by=p) for i, p in enumerate(parties)))
                result = await waiting
                times.append(time.perf_counter() - started)
                assert result.complete and len(result.acked) == 50
            calls = 0
            driver: Any = lead.driver
            real = driver._call

            async def counted(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                return await real(*args, **kwargs)

            driver._call = counted
            try:
                assert (await lead.wait_acks(sig, parties, timeout=5)).complete
            finally:
                driver._call = real
            return times, calls
        finally:
            for c in coords:
                await c.close()

    times, calls = asyncio.run(measure())
    FIGURES["wait_acks, 50 parties acking at once (Redis)"] = (
        f"all 50 in and seen: median {ms(statistics.median(times))}, max {ms(max(times))}; "
        f"one complete check = {calls} round trip(s) (naive: 50 GETs)"
    )


def test_report() -> None:
    print("\n\nbench_signals (a busy 2-core box: ratios, not absolutes)")
    for name, figure in FIGURES.items():
        print(f"  {name:<55} {figure}")
