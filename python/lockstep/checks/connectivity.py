"""Rows that prove the backend is there and its plumbing is sound."""

from __future__ import annotations

import time

from . import CheckContext, CheckResult, check
from .stats import human, ms, percentile, rate

PINGS = 50
KEYS = 200


@check(
    "connect",
    title="backend reachable",
    source="foundation",
    target="connects and answers within the deadline",
)
async def backend_reachable(ctx: CheckContext) -> CheckResult:
    started = time.perf_counter()
    async with ctx.connect() as coord:
        connect_s = time.perf_counter() - started
        rtts = [await coord.ping() for _ in range(PINGS)]
        info = await coord.server_info()
    p50, p99 = percentile(rtts, 50), percentile(rtts, 99)
    return CheckResult(
        passed=True,
        measured=f"{info.driver} {info.version}; connect {ms(connect_s)}; ping p50 {ms(p50)} p99 {ms(p99)}",
        detail="; ".join(info.warnings),
        figures={"connect_s": connect_s, "ping_p50_s": p50, "ping_p99_s": p99},
    )


@check(
    "clock",
    title="backend clock agrees with this host",
    source="foundation (TTLs and heartbeats are judged on it)",
    target="skew under 1 s",
)
async def clock_skew(ctx: CheckContext) -> CheckResult:
    async with ctx.connect() as coord:
        before = time.time()
        backend = await coord.time()
        after = time.time()
    skew = backend - (before + after) / 2
    return CheckResult(
        passed=abs(skew) < 1.0,
        measured=f"skew {skew * 1000:+.1f} ms",
        figures={"skew_s": skew},
    )


@check(
    "kv",
    title="key/value round trip",
    source="foundation",
    target=f"{KEYS} keys written, read back intact, with TTLs, and deleted",
)
async def kv_round_trip(ctx: CheckContext) -> CheckResult:
    async with ctx.connect() as coord:
        d, t = coord.driver, coord.timeout
        keys = [coord.keys.key("check", "kv", str(i)) for i in range(KEYS)]
        values = [f"value-{i}".encode() * 4 for i in range(KEYS)]
        started = time.perf_counter()
        try:
            for key, value in zip(keys, values, strict=True):
                await d.set(key, value, ttl=60, timeout=t)
            read = await d.mget(keys, timeout=t)
            ttls = [await d.ttl(k, timeout=t) for k in keys[:10]]
        finally:
            deleted = await d.delete(keys, timeout=t)
        elapsed = time.perf_counter() - started
        left = await d.mget(keys, timeout=t)
    problems = []
    if read != values:
        problems.append(f"{sum(a != b for a, b in zip(read, values, strict=True))} values came back wrong")
    if not all(x is not None and 0 < x <= 60 for x in ttls):
        problems.append(f"TTLs not kept: {ttls}")
    if deleted != KEYS or any(v is not None for v in left):
        problems.append(f"delete removed {deleted} of {KEYS}")
    return CheckResult(
        passed=not problems,
        measured=human(rate(2 * KEYS + 10, elapsed), "ops/s") + " (one call at a time)",
        detail="; ".join(problems),
        figures={"ops_per_s": rate(2 * KEYS + 10, elapsed)},
    )
