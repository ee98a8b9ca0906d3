"""``APIKeyRotator``: several API keys behind one call, with per-key limits shared by every process.

The seed's Assumption 5: agents of every sprint share a few provider keys. The rotator
keeps one sliding-window limit of ``rate_limit_threshold`` per ``window`` seconds per
key, through the coordinator's backend, so all processes together never send a key
more than its threshold in any window: it throttles *before* the provider has to
answer 429. Each request goes to the key with the most room left (keys at their limit
are skipped). When the user's ``call`` raises :class:`~lockstep.errors.RateLimited`
anyway (the provider's limit was lower, or shared with someone else), that key cools
down for the error's ``retry_after`` (default: ``window``), for every process.

Keys never leave this object: limits, cool-downs, stats, logs and errors name a key
only by its **fingerprint**, ``HMAC-SHA256(secret, key)`` truncated to 16 hex digits.
The secret is the one given, or a random one kept in the backend for the namespace
(so every process computes the same fingerprints); a fingerprint is never a prefix of
the key and says nothing about it without the secret.

    rotator = APIKeyRotator(coord, [key1, key2, key3], call=ask_provider)
    result = await rotator.make_request_with_backoff({"model": "...", "messages": [...]})
    result.value, result.attempt_number, result.key_fingerprint
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ..coordinator import Coordinator
from ..errors import ConfigError, OutcomeUnknown, RateLimited

__all__ = ["APIKeyRotator", "KeyUsageStats", "RotatorResult"]

T = TypeVar("T")
Call = Callable[[str, Any], Awaitable[T]]
FINGERPRINT_HEX = 16
SECRET_BYTES = 32


@dataclass(frozen=True)
class RotatorResult(Generic[T]):
    """What a request returned, and how it got there."""

    value: T
    key_fingerprint: str
    attempt_number: int = 1  #: 1 + the backoff waits it took (make_request: always 1)
    success: bool = True


@dataclass(frozen=True)
class KeyUsageStats:
    """Requests this rotator made per key fingerprint (this process)."""

    keys_used: int
    usage_per_key: dict[str, int] = field(default_factory=dict)


def fingerprint(secret: bytes, key: str) -> str:
    """``HMAC-SHA256(secret, key)`` as 16 hex digits."""
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


def secret_key(coord: Coordinator) -> str:
    """Where the namespace's fingerprint secret lives in the backend."""
    return coord.keys.meta("apikey-secret")


def _positive(value: object, what: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value >= 0 if allow_zero else value > 0):  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    raise ConfigError(f"{what} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_keys(keys: Sequence[str]) -> list[str]:
    """Validated keys. Errors name positions, never key text."""
    if isinstance(keys, str | bytes) or not isinstance(keys, Sequence) or not keys:
        raise ConfigError("keys must be a non-empty list of API key strings")
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not key:
            raise ConfigError(f"keys[{i}] must be a non-empty string (got a {type(key).__name__})")
        if key in keys[:i]:
            raise ConfigError(f"keys[{i}] repeats keys[{list(keys).index(key)}]")
    return list(keys)


class APIKeyRotator(Generic[T]):
    """Rotate ``keys`` under per-key limits shared through ``coord``; see the module docstring."""

    def __init__(
        self,
        coord: Coordinator,
        keys: Sequence[str],
        *,
        call: Call[T],
        rate_limit_threshold: int = 100,
        window: float = 60.0,
        backoff: Sequence[float] = (1, 2, 4, 8),
        jitter: bool = False,
        max_attempts: int | None = None,
        max_total: float | None = None,
        secret: bytes | str | None = None,
        name: str = "api-keys",
        time_scale: float = 1.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._keys = _check_keys(keys)
        if not callable(call):
            raise ConfigError("call must be an async function call(key, params)")
        self._call = call
        if not isinstance(rate_limit_threshold, int) or isinstance(rate_limit_threshold, bool) or rate_limit_threshold < 1:
            raise ConfigError(f"rate_limit_threshold must be a positive integer, got {rate_limit_threshold!r}")
        self.rate_limit_threshold = rate_limit_threshold
        self.window = _positive(window, "window")
        self._delays = [_positive(d, "each backoff delay", allow_zero=True) for d in backoff]
        if not self._delays:
            raise ConfigError("backoff must list at least one delay")
        self.jitter = bool(jitter)
        attempts = len(self._delays) + 1 if max_attempts is None else max_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ConfigError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        self.max_attempts = attempts
        self.max_total = None if max_total is None else _positive(max_total, "max_total")
        self.time_scale = _positive(time_scale, "time_scale")
        self._sleep = sleep
        self._coord = coord
        self.name = name
        self._limiter = coord.rate_limit(name, (rate_limit_threshold, self.window), algorithm="sliding_window")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._fingerprints: list[str] = []
        self._ready_lock = asyncio.Lock()
        self._remaining: list[int] = [rate_limit_threshold] * len(self._keys)
        self._usage: list[int] = [0] * len(self._keys)
        self._next = 0
        #: the backoff delays (nominal seconds) waited by the last make_request_with_backoff
        self.last_backoff: list[float] = []

    def __repr__(self) -> str:
        prints = ", ".join(self._fingerprints) if self._fingerprints else "fingerprints not computed yet"
        return (
            f"<APIKeyRotator {self.name!r} {len(self._keys)} keys ({prints}) "
            f"{self.rate_limit_threshold}/{self.window:g}s per key>"
        )

    # -- fingerprints ------------------------------------------------------------------------
    async def fingerprints(self) -> list[str]:
        """The keys' fingerprints, in the order given (computes the secret on first use)."""
        if not self._fingerprints:
            async with self._ready_lock:
                if not self._fingerprints:
                    secret = self._secret or await self._shared_secret()
                    self._fingerprints = [fingerprint(secret, k) for k in self._keys]
        return self._fingerprints

    async def _shared_secret(self) -> bytes:
        """The namespace's secret from the backend, created once by whoever comes first."""
        where, driver, timeout = secret_key(self._coord), self._coord.driver, self._coord.timeout
        found = await driver.get(where, timeout=timeout)
        if found is None:
            try:
                await driver.set(where, secrets.token_bytes(SECRET_BYTES), only_if_absent=True, timeout=timeout)
            except OutcomeUnknown:
                pass  # stored or not, reading it back tells
            found = await driver.get(where, timeout=timeout)
        if not found:
            raise ConfigError(f"the fingerprint secret at {where!r} could not be stored in the backend")
        return found

    async def _cooling(self, prints: list[str]) -> dict[str, float]:
        """Seconds of cool-down left per fingerprint (only those cooling), from the backend."""
        where = [self._cool_key(fp) for fp in prints]
        stamps = await self._coord.driver.mget(where, timeout=self._coord.timeout)
        now = time.time()
        left = {fp: float(s) - now for fp, s in zip(prints, stamps, strict=True) if s is not None}
        return {fp: s for fp, s in left.items() if s > 0}

    def _cool_key(self, fp: str) -> str:
        return self._coord.keys.key("rate", self.name, f"{fp}.cooldown")

    async def _cool_down(self, fp: str, seconds: float) -> None:
        until = str(time.time() + seconds).encode()
        await self._coord.driver.set(self._cool_key(fp), until, ttl=max(seconds, 0.001), timeout=self._coord.timeout)

    # -- requests ------------------------------------------------------------------------------
    def _order(self) -> list[int]:
        """Keys with the most room first; ties in rotation order from the last key used."""
        n = len(self._keys)
        return sorted(range(n), key=lambda i: (-self._remaining[i], (i - self._next) % n))

    async def make_request(self, params: Any) -> RotatorResult[T]:
        """One request on the key with the most room; RateLimited when every key is at its limit.

        The RateLimited raised names no key and carries the soonest ``retry_after``.
        Any other exception from ``call`` propagates as it is.
        """
        prints = await self.fingerprints()
        cooling = await self._cooling(prints)
        soonest = math.inf
        for i in self._order():
            fp = prints[i]
            if fp in cooling:
                soonest = min(soonest, cooling[fp])
                continue
            self._remaining[i] -= 1  # optimistic, so concurrent requests spread over the keys
            decision = await self._limiter.acquire(fp)
            self._remaining[i] = decision.remaining
            if not decision.allowed:
                soonest = min(soonest, decision.retry_after)
                continue
            try:
                value = await self._call(self._keys[i], params)
            except RateLimited as exc:
                wait = exc.retry_after if isinstance(exc.retry_after, int | float) and exc.retry_after >= 0 else self.window
                await self._cool_down(fp, wait)
                soonest = min(soonest, wait)
                continue
            self._usage[i] += 1
            self._next = (i + 1) % len(self._keys)
            return RotatorResult(value, fp)
        raise RateLimited(
            f"all {len(self._keys)} API keys of {self.name!r} are at their limit or cooling down; "
            f"the soonest frees up in {soonest:.3f} s",
            retry_after=soonest,
        )

    async def make_request_with_backoff(self, params: Any) -> RotatorResult[T]:
        """``make_request``, waiting the backoff delays (1, 2, 4, 8 s by default, times
        ``time_scale``, optionally jittered) between attempts while every key is limited.

        Gives up with the last RateLimited after ``max_attempts`` attempts (default: one
        more than the delays), or before a wait that would pass ``max_total`` seconds.
        """
        started = time.monotonic()
        self.last_backoff = []
        for attempt in range(1, self.max_attempts + 1):
            try:
                return replace(await self.make_request(params), attempt_number=attempt)
            except RateLimited as exc:
                if attempt == self.max_attempts:
                    raise
                delay = self._delays[min(attempt - 1, len(self._delays) - 1)]
                if self.jitter:
                    delay *= random.uniform(0.5, 1.0)
                # Nominal seconds so far: the waits themselves (an injected sleep may not
                # really sleep), or the clock when requests took longer than that.
                spent = max(sum(self.last_backoff), (time.monotonic() - started) / self.time_scale)
                if self.max_total is not None and spent + delay > self.max_total:
                    raise RateLimited(
                        f"{exc} (gave up after {attempt} attempts: the next wait of {delay:g} s would pass "
                        f"max_total={self.max_total:g} s)",
                        retry_after=exc.retry_after,
                    ) from exc
                self.last_backoff.append(delay)
                await self._sleep(delay * self.time_scale)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- what it did -----------------------------------------------------------------------------
    def get_backoff_delays(self) -> list[float]:
        """The configured delays between attempts, in seconds: ``[1.0, 2.0, 4.0, 8.0]`` by default."""
        return list(self._delays)

    def get_key_usage_stats(self) -> KeyUsageStats:
        """Successful requests per key fingerprint made by this rotator (all keys listed)."""
        if not self._fingerprints:
            return KeyUsageStats(0, {})
        usage = dict(zip(self._fingerprints, self._usage, strict=True))
        return KeyUsageStats(sum(1 for n in self._usage if n), usage)

    async def clear(self) -> None:
        """Reset every key's shared limit and cool-down (the fingerprint secret stays)."""
        prints = await self.fingerprints()
        for fp in prints:
            await self._limiter.reset(fp)
        await self._coord.driver.delete([self._cool_key(fp) for fp in prints], timeout=self._coord.timeout)
        self._remaining = [self.rate_limit_threshold] * len(self._keys)
