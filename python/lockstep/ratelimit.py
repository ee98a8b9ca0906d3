"""Shared rate limits that never over-admit: ``coord.rate_limit(name, rate, ...)``.

    limiter = coord.rate_limit("zai", rate="100/minute", algorithm="sliding_window")
    decision = await limiter.acquire(key_fingerprint, cost=1, wait=5.0)
    if decision.allowed: ...
    else: print(f"try again in {decision.retry_after:.2f} s")

**The guarantee.** A limit of ``limit`` per ``period`` never admits more than
``limit`` units in any window of length ``period``, counted by every process that
uses the name through the backend, under any concurrency:

* ``algorithm="gcra"`` (the default) spaces admissions ``period / limit`` apart
  (rounded up to whole microseconds). ``burst`` (default 1) is how many units may
  pass at once after an idle spell; with burst ``b`` a window of ``period`` holds at
  most ``limit + b - 1``, so the guarantee above is for the default ``burst=1``.
* ``algorithm="sliding_window"`` admits up to ``limit`` at once and counts each unit
  for exactly ``period`` after it was admitted: exact, never an estimate. ``burst``
  does not apply to it.

A request costing more than it could ever get (the limit, or GCRA's burst) raises
:class:`~lockstep.errors.InvalidInputError` at once: it is never admitted, never
queued. A refused request gets a :class:`Decision` with ``retry_after``: trying
again after that long succeeds unless others took the units first.

**Clocks.** Decisions are made where the state lives, on its clock: Redis ``TIME``
inside a Lua script; on the file driver the host clock inside one SQLite write
transaction; in memory the Rust core's monotonic clock. Callers' clocks never count.

**When the store is down** (``BackendUnavailable``, ``Timeout``, or a lost reply,
``OutcomeUnknown``), ``on_backend_error`` decides:

* ``"fail_closed"`` (default): the call raises that error (its message says it failed
  closed). Nothing is admitted. A lost reply's units count as spent on the store.
* ``"fail_open"``: every request is admitted (``Decision.source == "open"``) and a
  warning is logged once per outage: use it only where over-admitting is harmless.
* ``"local"``: a limit of the same rate kept in this process decides
  (``source == "local"``). Each process then admits up to the whole limit on its own.

A lost reply is never retried: the units count as spent (conservative), never as
unspent. **Leasing** (``lease=N``) takes up to ``N`` units per round trip and spends
them in-process; see :mod:`lockstep.ratelimit_lease`. Leased units count as spent
on the store from the moment they are granted, so the limit still holds.

**Without a round trip.** On the memory driver, and with ``lease=`` while this process
holds units, :meth:`RateLimiter.try_acquire_nowait` (a :class:`Decision`) and
:meth:`RateLimiter.hit_nowait` (a bool: the fast path, no object built) decide in the
calling thread through the Rust counters; elsewhere they return None (use ``acquire``).

**Keys** are names (letters, digits, ``_ . : / @ + = # ~ -``; ``InvalidNameError``
otherwise). They appear in backend keys and errors, so never pass a secret such as
an API key: pass a fingerprint (``lockstep.cfn.APIKeyRotator`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from ._core import Decision, RateRule, RateTable
from .drivers.rate_store import KEY_WHAT, RateStore
from .errors import (
    BackendUnavailable,
    ConfigError,
    InvalidInputError,
    LockstepError,
    OutcomeUnknown,
    Timeout,
)
from .names import validate_name
from .ratelimit_lease import LeasedUnits

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ["Algorithm", "Decision", "FailMode", "RateLimiter", "RateLimits", "RateRule", "make_rule"]

log = logging.getLogger("lockstep.ratelimit")

Algorithm = Literal["gcra", "sliding_window"]
FailMode = Literal["fail_closed", "fail_open", "local"]
FAIL_MODES: tuple[str, ...] = ("fail_closed", "fail_open", "local")
#: errors that mean "the store is down or did not answer"; others (bad input, WRONGTYPE) propagate
STORE_DOWN = (BackendUnavailable, Timeout, OutcomeUnknown)
#: while the store keeps failing, a warning is logged at most this often (seconds)
WARN_EVERY = 30.0
#: a lease lives this long by default, or a tenth of the period if shorter
DEFAULT_LEASE_TTL = 1.0

# The local fallback limits of this process, one per (namespace, name, rule).
_LOCAL_TABLES: dict[tuple[str, str, RateRule], RateTable] = {}


def make_rule(rate: str | tuple[int, float], *, algorithm: str = "gcra", burst: int | None = None) -> RateRule:
    """A rule from ``"100/minute"``-style text or ``(limit, period_seconds)``; ConfigError if bad."""
    if isinstance(rate, str):
        return RateRule.parse(rate, algorithm, burst)
    if isinstance(rate, tuple) and len(rate) == 2:
        limit, seconds = rate
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds) and seconds > 0:
            return RateRule(algorithm, limit, round(seconds * 1_000_000), burst)
    raise ConfigError(f"a rate is text like '100/minute' or a (limit, period_seconds) pair, got {rate!r}")


def _seconds(value: object, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    raise InvalidInputError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def _down_error(exc: Exception, message: str) -> Exception:
    for kind in (OutcomeUnknown, Timeout):
        if isinstance(exc, kind):
            return kind(message)
    return BackendUnavailable(message)


class RateLimiter:
    """One named limit, shared through the coordinator's backend. See the module docstring."""

    def __init__(
        self,
        coord: Coordinator,
        name: str,
        rate: str | tuple[int, float] = "100/minute",
        *,
        burst: int | None = None,
        algorithm: Algorithm = "gcra",
        on_backend_error: FailMode = "fail_closed",
        lease: int | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self.name = validate_name(name, what="rate limit")
        self.rule = make_rule(rate, algorithm=algorithm, burst=burst)
        if on_backend_error not in FAIL_MODES:
            raise ConfigError(f"on_backend_error must be one of {', '.join(FAIL_MODES)}, got {on_backend_error!r}")
        self.on_backend_error: FailMode = on_backend_error
        self._coord = coord
        self._store = coord.driver.rate_store(coord.keys, self.name, self.rule)
        self._down_since: float | None = None
        self._warned_at = -WARN_EVERY
        self._leases: LeasedUnits | None = None
        if lease is not None:
            self._leases = self._make_leases(lease, lease_ttl)
            self.try_acquire_nowait = self._leases.pool.spend  # type: ignore[method-assign]
            self.hit_nowait = self._leases.pool.hit  # type: ignore[method-assign]
        elif self._store.local:
            self.try_acquire_nowait = self._store.acquire_nowait  # type: ignore[method-assign,assignment]
            self.hit_nowait = self._store.hit_nowait  # type: ignore[method-assign,assignment]

    def _make_leases(self, lease: object, lease_ttl: float | None) -> LeasedUnits:
        if not isinstance(lease, int) or isinstance(lease, bool) or lease < 1:
            raise ConfigError(f"lease must be a positive number of units per block, got {lease!r}")
        if self.rule.algorithm == "gcra" and self.rule.burst != 1:
            raise ConfigError(
                f"lease= on a GCRA limit needs burst 1 (this one is {self.rule.describe()}); "
                "use algorithm='sliding_window' for bursty leased limits"
            )
        ttl = min(DEFAULT_LEASE_TTL, self.rule.period / 10) if lease_ttl is None else lease_ttl
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and 0 < ttl <= 366 * 86400):
            raise ConfigError(f"lease_ttl must be a positive number of seconds, got {lease_ttl!r}")
        return LeasedUnits(self._store, self.rule, block=lease, lease_us=max(1, round(ttl * 1_000_000)))

    def __repr__(self) -> str:
        lease = f" lease={self._leases.block}" if self._leases else ""
        return (
            f"<RateLimiter {self.name!r} {self.rule.describe()} on {self._coord.driver.name} "
            f"{self.on_backend_error}{lease}>"
        )

    # -- deciding ------------------------------------------------------------------------
    def try_acquire_nowait(self, key: str = "default", cost: int = 1) -> Decision | None:
        """Decide without a round trip, or None when only the store can decide.

        Decides on the memory driver (the Rust counters) and, with ``lease=``, while this
        process holds leased units for ``key``; otherwise returns None: use :meth:`acquire`.
        Bypasses ``on_backend_error`` (nothing here talks to the backend).
        """
        return None

    def hit_nowait(self, key: str = "default", cost: int = 1) -> bool | None:
        """``try_acquire_nowait(key, cost)`` as a bool: True admitted, False refused, None
        when only the store can decide (use :meth:`acquire`; never treat None as refused).

        The same decision and the same units spent, without building a :class:`Decision`:
        the fast path for callers that need only yes or no (what ``limits``' ``hit()`` and
        pyrate-limiter's ``try_acquire()`` answer). On the memory driver, and with
        ``lease=``, it is the Rust call itself: no Python frame in between.
        """
        return None

    async def acquire(
        self, key: str = "default", cost: int = 1, wait: float = 0.0, *, timeout: float | None = None
    ) -> Decision:
        """Spend ``cost`` units of ``key``, or be refused with ``retry_after``.

        With ``wait > 0``, a refusal whose ``retry_after`` fits in what is left of
        ``wait`` is slept off and the request tried again; a refusal that would need
        longer is returned at once, so the call never outlasts ``wait`` (plus one
        round trip). ``timeout`` bounds each round trip (default: the coordinator's).
        """
        validate_name(key, what=KEY_WHAT)
        self.rule.check_cost(cost)
        deadline = self._coord._deadline(timeout)
        patience = _seconds(wait, "wait")
        if not patience:  # the common call: one decision, no clock read for waiting
            return await self._decide(key, cost, deadline)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + patience
        while True:
            decision = await self._decide(key, cost, deadline)
            if decision.allowed or decision.retry_after > give_up - loop.time():
                return decision
            await asyncio.sleep(decision.retry_after)

    async def _decide(self, key: str, cost: int, timeout: float) -> Decision:
        try:
            if self._leases is not None:
                decision = await self._leases.acquire(key, cost, timeout=timeout)
            else:
                decision = await self._store.acquire(key, cost, timeout=timeout)
        except STORE_DOWN as exc:
            return self._store_down(exc, "acquire", key, cost)
        if self._down_since is not None:
            self._recovered()
        return decision

    async def peek(self, key: str = "default", *, timeout: float | None = None) -> Decision:
        """What a cost-1 ``acquire`` would get now, spending nothing (the store's view)."""
        validate_name(key, what=KEY_WHAT)
        try:
            return await self._store.peek(key, timeout=self._coord._deadline(timeout))
        except STORE_DOWN as exc:
            return self._store_down(exc, "peek", key, None)

    async def reset(self, key: str = "default", *, timeout: float | None = None) -> bool:
        """Forget ``key``'s state everywhere: its limit is whole again. True if it held any."""
        validate_name(key, what=KEY_WHAT)
        found = await self._store.reset(key, timeout=self._coord._deadline(timeout))
        table = _LOCAL_TABLES.get(self._local_key())
        if table is not None:
            table.reset(key)
        return found

    # -- the store is down ---------------------------------------------------------------
    def _local_key(self) -> tuple[str, str, RateRule]:
        return (self._coord.namespace, self.name, self.rule)

    def _store_down(self, exc: Exception, op: str, key: str, cost: int | None) -> Decision:
        """Apply ``on_backend_error`` to a store failure (``cost`` None: a peek)."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._warned_at >= WARN_EVERY:  # a flapping store logs once in a while, not per call
            self._warned_at = now
            log.warning(
                "rate limit %r: the store failed (%s); %s", self.name, exc, self.on_backend_error.replace("_", " ")
            )
        if self.on_backend_error == "fail_closed":
            spent = "; those units count as spent" if isinstance(exc, OutcomeUnknown) else ""
            raise _down_error(exc, f"rate limit {self.name!r}: {op} failed closed{spent}: {exc}") from exc
        if self.on_backend_error == "fail_open":
            return Decision(True, 0.0, 0, 0.0, time.time(), "open")
        table = _LOCAL_TABLES.get(self._local_key())
        if table is None:
            table = _LOCAL_TABLES.setdefault(self._local_key(), RateTable(self.rule, "local"))
        return table.peek(key) if cost is None else table.acquire(key, cost)

    def _recovered(self) -> None:
        assert self._down_since is not None
        log.info("rate limit %r: the store answers again after %.1f s", self.name, time.monotonic() - self._down_since)
        self._down_since = None

    # -- closing ---------------------------------------------------------------------------
    async def close(self, *, timeout: float | None = None) -> None:
        """Hand back leased units not spent (with ``lease=``); the limiter can still be used."""
        if self._leases is not None:
            await self._leases.close(timeout=self._coord._deadline(timeout))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class RateLimits:
    """A coordinator's limiters: at close, leased units go back and shared connections close."""

    def __init__(self, coord: Coordinator) -> None:
        self._coord = coord
        self._limiters: weakref.WeakSet[RateLimiter] = weakref.WeakSet()
        self._store_types: set[type[RateStore]] = set()

    def limiter(self, name: str, rate: str | tuple[int, float], **options: Any) -> RateLimiter:
        limiter = RateLimiter(self._coord, name, rate, **options)
        self._limiters.add(limiter)
        self._store_types.add(type(limiter._store))
        return limiter

    async def close(self) -> None:
        for limiter in list(self._limiters):
            with contextlib.suppress(LockstepError):
                await limiter.close()
        for store_type in self._store_types:
            await store_type.close_shared(self._coord.driver)
