"""Rows for the seed's Assumption 1: pub/sub carries 10,000+ msg/s with low latency.

Both rows run the seed's own test shapes through lockstep on the chosen backend:

* throughput: 10,000 ``publish`` calls started at once with ``asyncio.gather`` over the
  seed's three channels, with one subscriber counting what it receives; the figure is
  both published and delivered messages per second (the seed only timed publishing).
* latency: a steady 100 msg/s of ``{"id": i, "timestamp": now}``; latency is arrival
  time minus the timestamp. By default 1.5 s of it (150 messages); ``--full`` runs the
  seed's 1000 messages (10 s).

A Gap during either row fails it: the seed's risk is exactly agents missing signals.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..messaging import Gap, Message
from . import CheckContext, CheckResult, check
from .stats import human, percentile, rate

SEED_CHANNELS = ("sprint:coordination", "agent:lifecycle", "test:coordination")
THROUGHPUT_MESSAGES = 10_000
THROUGHPUT_FLOOR = 10_000  # msg/s, the seed's
LATENCY_RATE = 100  # msg/s
LATENCY_SHORT, LATENCY_FULL = 150, 1000  # messages
AVG_LIMIT, MAX_LIMIT = 0.100, 0.500  # s


async def _drain(sub: Any, want: int, deadline: float) -> tuple[list[Message], list[Gap], list[float]]:
    """Receive until ``want`` messages arrived or the deadline; arrival times alongside."""
    got: list[Message] = []
    lost: list[Gap] = []
    arrivals: list[float] = []
    while len(got) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        batch = await sub.get_batch(want, timeout=left)
        now = time.time()
        for item in batch:
            if isinstance(item, Message):
                got.append(item)
                arrivals.append(now)
            elif isinstance(item, Gap):
                lost.append(item)
    return got, lost, arrivals


@check(
    "pubsub-throughput",
    title="pub/sub throughput (seed: 10,000 publishes at once)",
    source="Assumption 1: Redis pub/sub can handle 10,000+ msg/sec",
    target=f"over {THROUGHPUT_FLOOR:,} msg/s published and delivered, nothing lost",
    requires=("pubsub",),
    deadline=30.0,
)
async def pubsub_throughput(ctx: CheckContext) -> CheckResult:
    async with ctx.connect() as coord:
        channels = [f"check:{c}" for c in SEED_CHANNELS]
        try:
            async with coord.subscribe(*channels, max_buffer=THROUGHPUT_MESSAGES * 2) as sub:
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        coord.publish(channels[i % 3], {"id": i, "timestamp": time.time()})
                        for i in range(THROUGHPUT_MESSAGES)
                    )
                )
                published = time.perf_counter() - started
                got, lost, _ = await _drain(sub, THROUGHPUT_MESSAGES, time.monotonic() + 15)
                delivered = time.perf_counter() - started
        finally:
            await coord.messaging.purge(channels)
    pub_rate, sub_rate = rate(THROUGHPUT_MESSAGES, published), rate(len(got), delivered)
    problems = []
    if len(got) < THROUGHPUT_MESSAGES:
        problems.append(f"{THROUGHPUT_MESSAGES - len(got)} messages not delivered")
    if lost:
        problems.append(f"{len(lost)} gap(s): {lost[0].detail}")
    ids = {m.data["id"] for m in got if isinstance(m.data, dict) and "id" in m.data}
    if len(ids) != len(got):
        problems.append("duplicates delivered")
    return CheckResult(
        passed=not problems and pub_rate > THROUGHPUT_FLOOR and sub_rate > THROUGHPUT_FLOOR,
        measured=f"{human(pub_rate, 'msg/s')} published, {human(sub_rate, 'msg/s')} delivered "
        f"({len(got):,}/{THROUGHPUT_MESSAGES:,} in {delivered:.2f} s)",
        detail="; ".join(problems),
        figures={"published_per_s": pub_rate, "delivered_per_s": sub_rate, "delivered": float(len(got))},
    )


@check(
    "pubsub-latency",
    title="pub/sub latency at 100 msg/s",
    source="Assumption 1: <100ms latency under load",
    target=f"average under {AVG_LIMIT * 1000:.0f} ms, maximum under {MAX_LIMIT * 1000:.0f} ms, nothing lost",
    requires=("pubsub",),
    deadline=10.0,
)
async def pubsub_latency(ctx: CheckContext) -> CheckResult:
    count = LATENCY_FULL if ctx.full else LATENCY_SHORT
    channel = "check:latency:test"
    async with ctx.connect() as coord:
        try:
            async with coord.subscribe(channel) as sub:
                receiver = asyncio.ensure_future(
                    _drain(sub, count, time.monotonic() + count / LATENCY_RATE + 5)
                )
                started = time.monotonic()
                for i in range(count):
                    await coord.publish(channel, {"id": i, "timestamp": time.time()})
                    # a steady rate, not 10 ms plus however long the publish took
                    await asyncio.sleep(max(0.0, started + (i + 1) / LATENCY_RATE - time.monotonic()))
                got, lost, arrivals = await receiver
        finally:
            await coord.messaging.purge([channel])
    latencies = [arrived - m.data["timestamp"] for m, arrived in zip(got, arrivals, strict=True)]
    if not latencies:
        return CheckResult(passed=False, measured="no message arrived", detail=f"0 of {count} delivered")
    avg, worst = sum(latencies) / len(latencies), max(latencies)
    p99 = percentile(latencies, 99)
    problems = []
    if len(got) < count:
        problems.append(f"{count - len(got)} of {count} not delivered")
    if lost:
        problems.append(f"{len(lost)} gap(s): {lost[0].detail}")
    return CheckResult(
        passed=not problems and avg < AVG_LIMIT and worst < MAX_LIMIT,
        measured=f"avg {avg * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {worst * 1000:.2f} ms "
        f"({len(got)} messages at {LATENCY_RATE}/s)",
        detail="; ".join(problems),
        figures={"avg_s": avg, "p99_s": p99, "max_s": worst, "messages": float(len(got))},
    )
