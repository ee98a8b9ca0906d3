"""Rows for the seed's Assumption 5: API rate limits mitigated by key rotation and backoff."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..cfn.api_keys import APIKeyRotator, secret_key
from ..errors import RateLimited
from . import CheckContext, CheckResult, check
from .stats import human, ms

#: stand-in keys for the checks: made up, never sent anywhere
CHECK_KEYS = ("check-key-primary", "check-key-secondary", "check-key-fallback")
SLACK = 0.06  # s: how late a scaled backoff wait may end on a busy box


async def _echo(key: str, params: Any) -> dict[str, Any]:
    """A provider that always answers: the rows measure the rotation, not a network."""
    return {"success": True}


@check(
    "api-keys",
    title="300 requests over 3 keys at 100 per window",
    source="Assumption 5 (fallback to several API keys)",
    target="all 300 succeed; no key exceeds its limit; all 3 keys used",
)
async def rotation_spreads_the_load(ctx: CheckContext) -> CheckResult:
    async with ctx.connect() as coord:
        rotator = APIKeyRotator(coord, CHECK_KEYS, call=_echo, rate_limit_threshold=100, window=60.0, name="check-keys")
        try:
            started = time.perf_counter()
            outcomes = await asyncio.gather(*(rotator.make_request({"i": i}) for i in range(300)), return_exceptions=True)
            elapsed = time.perf_counter() - started
            stats = rotator.get_key_usage_stats()
        finally:
            await rotator.clear()
            await coord.driver.delete([secret_key(coord)], timeout=coord.timeout)
    succeeded = sum(1 for o in outcomes if not isinstance(o, BaseException) and o.success)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    most = max(stats.usage_per_key.values(), default=0)
    passed = succeeded == 300 and stats.keys_used == 3 and most <= 100
    return CheckResult(
        passed=passed,
        measured=f"{succeeded}/300 succeeded; busiest key {most}/100; {stats.keys_used} keys; "
        f"{human(300 / elapsed, 'req/s')}",
        detail=f"first failure: {type(failures[0]).__name__}: {failures[0]}" if failures else "",
        figures={"succeeded": succeeded, "max_per_key": most, "keys_used": stats.keys_used, "seconds": elapsed},
    )


@check(
    "api-backoff",
    title="backoff while every key is limited",
    source="Assumption 5 (exponential backoff)",
    target="waits 1, 2, 4, 8 s (scaled x0.02) between attempts, then RateLimited",
)
async def backoff_when_all_keys_are_limited(ctx: CheckContext) -> CheckResult:
    scale = 0.02
    waited: list[float] = []

    async def timed_sleep(seconds: float) -> None:
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        waited.append(time.perf_counter() - started)

    async with ctx.connect() as coord:
        rotator = APIKeyRotator(
            coord, CHECK_KEYS[:2], call=_echo, rate_limit_threshold=10, window=60.0, time_scale=scale,
            sleep=timed_sleep, name="check-backoff",
        )
        try:
            for i in range(20):
                await rotator.make_request(i)  # every key at its limit
            gave_up = False
            try:
                await rotator.make_request_with_backoff({"i": 20})
            except RateLimited:
                gave_up = True
        finally:
            await rotator.clear()
            await coord.driver.delete([secret_key(coord)], timeout=coord.timeout)
    expected = [d * scale for d in rotator.get_backoff_delays()]
    on_time = len(waited) == len(expected) and all(e <= w <= e + SLACK for w, e in zip(waited, expected, strict=True))
    return CheckResult(
        passed=gave_up and on_time and rotator.last_backoff == [1.0, 2.0, 4.0, 8.0],
        measured="waited " + ", ".join(ms(w) for w in waited) + f" (x{scale:g} of 1, 2, 4, 8 s)",
        detail="" if gave_up else "a request got through although every key was limited",
        figures={f"wait_{i + 1}_s": w for i, w in enumerate(waited)},
    )
