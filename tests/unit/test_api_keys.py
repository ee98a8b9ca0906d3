"""``lockstep.cfn.APIKeyRotator``: per-key limits shared through the backend, rotation,
cool-downs, backoff, and API keys that never leave the object (fingerprints only)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import lockstep
import pytest
from lockstep.cfn import APIKeyRotator, KeyUsageStats, RotatorResult
from lockstep.drivers.memory import space

from tests.support.redis_server import RedisServer

SECRET_KEYS = ["sk-live-QWERTY0SECRET0one", "sk-live-QWERTY0SECRET0two", "sk-live-QWERTY0SECRET0three"]
LEAK = re.compile(rb"QWERTY0SECRET|SECRET0(one|two|three)")


class Provider:
    """A fake provider: counts calls per key, optionally answering 429 for some keys."""

    def __init__(self, limited: dict[str, float | None] | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.limited = dict(limited or {})

    async def __call__(self, key: str, params: Any) -> dict[str, Any]:
        self.calls[key] += 1
        if key in self.limited:
            raise lockstep.RateLimited("429 from the provider", retry_after=self.limited.pop(key))
        return {"success": True, "echo": params}


async def test_300_requests_over_3_keys_at_100_all_succeed(coord: lockstep.Coordinator) -> None:
    provider = Provider()
    rotator = APIKeyRotator(coord, SECRET_KEYS, call=provider, rate_limit_threshold=100)
    results = await asyncio.gather(*(rotator.make_request({"i": i}) for i in range(300)))
    assert all(r.success and r.value["success"] for r in results)
    stats = rotator.get_key_usage_stats()
    assert isinstance(stats, KeyUsageStats) and stats.keys_used == 3
    assert sorted(stats.usage_per_key.values()) == [100, 100, 100]
    assert set(stats.usage_per_key) == set(await rotator.fingerprints())
    assert max(provider.calls.values()) == 100
    with pytest.raises(lockstep.RateLimited) as refused:
        await rotator.make_request({})
    assert 55 < refused.value.retry_after <= 60  # type: ignore[operator]


async def test_two_processes_share_each_keys_limit(url: str, namespace: str) -> None:
    provider = Provider()
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace) as b:
        rotators = [APIKeyRotator(c, SECRET_KEYS, call=provider, rate_limit_threshold=10) for c in (a, b)]
        outcomes = await asyncio.gather(
            *(rotators[i % 2].make_request(i) for i in range(50)), return_exceptions=True
        )
    assert sum(isinstance(o, RotatorResult) for o in outcomes) == 30
    assert all(isinstance(o, RotatorResult | lockstep.RateLimited) for o in outcomes)
    assert sorted(provider.calls.values()) == [10, 10, 10], "no key is ever sent past its threshold"


async def test_rotation_moves_off_a_key_near_its_limit(coord: lockstep.Coordinator) -> None:
    provider = Provider()
    rotator = APIKeyRotator(coord, SECRET_KEYS[:2], call=provider, rate_limit_threshold=10)
    first, _ = await rotator.fingerprints()
    # Another process has spent 8 of the first key's 10.
    other = coord.rate_limit("api-keys", (10, 60.0), algorithm="sliding_window")
    assert (await other.acquire(first, cost=8)).allowed
    used = [(await rotator.make_request(i)).key_fingerprint for i in range(4)]
    assert used[0] == first  # nothing known yet: rotation order
    assert first not in used[1:], "after learning it is nearly spent, the other key is preferred"


async def test_a_429_cools_the_key_down_for_every_process(url: str, namespace: str) -> None:
    provider = Provider(limited={SECRET_KEYS[0]: 0.3})
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace) as b:
        ra = APIKeyRotator(a, SECRET_KEYS[:2], call=provider, rate_limit_threshold=100)
        rb = APIKeyRotator(b, SECRET_KEYS[:2], call=provider, rate_limit_threshold=100)
        hot, cold = await ra.fingerprints()
        assert (await ra.make_request(0)).key_fingerprint == cold  # the first key answered 429
        assert provider.calls[SECRET_KEYS[0]] == 1
        assert {(await rb.make_request(i)).key_fingerprint for i in range(5)} == {cold}, "b skips the cooling key"
        await asyncio.sleep(0.35)
        assert hot in {(await rb.make_request(i)).key_fingerprint for i in range(4)}


async def test_all_keys_limited_raises_with_the_soonest_retry_after(coord: lockstep.Coordinator) -> None:
    provider = Provider(limited={SECRET_KEYS[1]: 2.5})
    rotator = APIKeyRotator(coord, SECRET_KEYS[:2], call=provider, rate_limit_threshold=1, window=5.0)
    assert (await rotator.make_request(0)).success
    with pytest.raises(lockstep.RateLimited, match="all 2 API keys") as refused:
        await rotator.make_request(1)
    assert 2.0 < refused.value.retry_after <= 2.5  # type: ignore[operator]


async def test_backoff_follows_1_2_4_8_then_gives_up(coord: lockstep.Coordinator) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    rotator = APIKeyRotator(
        coord, SECRET_KEYS[:2], call=Provider(), rate_limit_threshold=1, window=60.0, sleep=fake_sleep, time_scale=0.5
    )
    assert rotator.get_backoff_delays() == [1.0, 2.0, 4.0, 8.0]
    for i in range(2):
        assert (await rotator.make_request_with_backoff(i)).attempt_number == 1
    with pytest.raises(lockstep.RateLimited):
        await rotator.make_request_with_backoff(2)
    assert slept == [0.5, 1.0, 2.0, 4.0]
    assert rotator.last_backoff == [1.0, 2.0, 4.0, 8.0]


async def test_backoff_caps_jitter_and_success_on_a_later_attempt(coord: lockstep.Coordinator) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    limited = {"call": Provider(), "rate_limit_threshold": 1, "window": 60.0, "sleep": fake_sleep}
    capped = APIKeyRotator(coord, SECRET_KEYS[:1], max_attempts=3, name="capped", **limited)  # type: ignore[arg-type]
    await capped.make_request(0)
    with pytest.raises(lockstep.RateLimited):
        await capped.make_request_with_backoff(1)
    assert slept == [1.0, 2.0]
    slept.clear()
    budget = APIKeyRotator(coord, SECRET_KEYS[:1], max_total=5.0, name="budget", **limited)  # type: ignore[arg-type]
    await budget.make_request(0)
    with pytest.raises(lockstep.RateLimited, match="max_total"):
        await budget.make_request_with_backoff(1)
    assert slept == [1.0, 2.0], "the 4 s wait would pass 5 s in all"
    slept.clear()
    jittered = APIKeyRotator(coord, SECRET_KEYS[:1], jitter=True, name="jitter", **limited)  # type: ignore[arg-type]
    await jittered.make_request(0)
    with pytest.raises(lockstep.RateLimited):
        await jittered.make_request_with_backoff(1)
    assert all(0.5 * d <= s <= d for s, d in zip(slept, [1, 2, 4, 8], strict=True))
    # Real sleeping, scaled: a 0.2 s window frees the key during the backoff.
    quick = APIKeyRotator(coord, SECRET_KEYS[:1], call=Provider(), rate_limit_threshold=1, window=0.2, time_scale=0.1, name="quick")
    await quick.make_request(0)
    result = await quick.make_request_with_backoff(1)
    assert result.attempt_number in (2, 3) and result.success


async def test_fingerprints_are_keyed_hashes_never_prefixes(url: str, namespace: str) -> None:
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace) as b:
        prints_a = await APIKeyRotator(a, SECRET_KEYS, call=Provider()).fingerprints()
        prints_b = await APIKeyRotator(b, SECRET_KEYS, call=Provider()).fingerprints()
        assert prints_a == prints_b, "one secret per namespace: every process agrees"
        assert all(re.fullmatch(r"[0-9a-f]{16}", fp) for fp in prints_a)
        assert all(not key.startswith(fp) and fp not in key for fp, key in zip(prints_a, SECRET_KEYS, strict=True))
        given = await APIKeyRotator(a, SECRET_KEYS[:1], call=Provider(), secret=b"s3").fingerprints()
        assert given == [hmac.new(b"s3", SECRET_KEYS[0].encode(), hashlib.sha256).hexdigest()[:16]]
    async with lockstep.connect(url, namespace=f"{namespace}-x") as c:
        assert await APIKeyRotator(c, SECRET_KEYS, call=Provider()).fingerprints() != prints_a


def _backend_bytes(url: str, namespace: str, redis_server: RedisServer | None, tmp_path: Path) -> list[bytes]:
    """Every key name and value the backend holds (raw file bytes for SQLite)."""
    if url.startswith("memory://"):
        entries = space(url.removeprefix("memory://")).entries
        out = [k.encode() for k in entries]
        for e in entries.values():
            out += [e.value] if isinstance(e.value, bytes) else [*map(str.encode, e.value), *e.value.values()]
        return out
    if url.startswith("file://"):
        files = sorted(tmp_path.glob("coord.db*"))
        assert files
        with sqlite3.connect(files[0]) as db:
            rows = db.execute("SELECT key, value FROM kv").fetchall()
        return [f.read_bytes() for f in files] + [str(rows).encode()]
    assert redis_server is not None
    client = redis_server.client()
    out = []
    for name in client.scan_iter(match=f"ls:{namespace}:*"):
        out.append(name)
        kind = client.type(name)
        if kind == b"string":
            out.append(client.get(name))
        elif kind == b"hash":
            out.append(repr(client.hgetall(name)).encode())
        elif kind == b"zset":
            out.append(repr(client.zrange(name, 0, -1)).encode())
    return out


async def test_api_keys_appear_nowhere(
    url: str, namespace: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = Provider(limited={SECRET_KEYS[0]: 30.0})
    shown: list[str] = []
    async with lockstep.connect(url, namespace=namespace) as coord:
        rotator = APIKeyRotator(coord, SECRET_KEYS, call=provider, rate_limit_threshold=2)
        results = [await rotator.make_request(i) for i in range(4)]
        with pytest.raises(lockstep.RateLimited) as exhausted:
            await rotator.make_request(9)
        shown += [repr(rotator), repr(rotator.get_key_usage_stats()), *map(repr, results), str(exhausted.value)]
        shown += [repr(rotator._limiter), repr(await rotator._limiter.peek((await rotator.fingerprints())[1]))]
        for bad in ([SECRET_KEYS[0], SECRET_KEYS[0]], [SECRET_KEYS[0], 5], []):
            with pytest.raises(lockstep.ConfigError) as err:
                APIKeyRotator(coord, bad, call=provider)  # type: ignore[arg-type]
            shown.append(str(err.value))
        redis = request.getfixturevalue("redis_server") if url.startswith("redis") else None
        stored = _backend_bytes(url, namespace, redis, tmp_path)
    assert len(stored) > 3, "the backend holds the limits, the cool-down and the secret"
    leaks = [s for s in stored if LEAK.search(s)] + [s for s in shown if LEAK.search(s.encode())]
    assert not leaks, f"an API key leaked: {leaks[:2]!r}"
    assert not LEAK.search(caplog.text.encode())


async def test_bad_configuration_is_refused(coord: lockstep.Coordinator) -> None:
    ok: dict[str, Any] = {"call": Provider()}
    for bad in (
        {"rate_limit_threshold": 0},
        {"rate_limit_threshold": 1.5},
        {"window": 0},
        {"window": float("inf")},
        {"backoff": ()},
        {"backoff": (1, -2)},
        {"max_attempts": 0},
        {"max_total": -1},
        {"time_scale": 0},
        {"call": None},
    ):
        with pytest.raises(lockstep.ConfigError):
            APIKeyRotator(coord, SECRET_KEYS, **{**ok, **bad})
    with pytest.raises(lockstep.ConfigError):
        APIKeyRotator(coord, "one-key-as-a-string", **ok)  # type: ignore[arg-type]
