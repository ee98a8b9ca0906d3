"""Rate limits on Redis: one Lua script per decision, on the server's clock.

``lua/rate_gcra.lua`` and ``lua/rate_window.lua`` run the same integer arithmetic
as the Rust core, with ``TIME`` read inside the script, so every host shares one
clock and one atomic decision. Keys: ``ls:NS:{rate:NAME}:KEY`` (the state hash)
and, for the sliding window, ``ls:NS:{rate:NAME}:KEY|log`` (its sorted set of
expiries); the ``{rate:NAME}`` hash tag keeps a limit's keys in one cluster slot,
and every key carries a TTL, so idle limits vanish.

Decisions are a hot path, so scripts go over one pipelined connection per driver
(:class:`~.redis_pubsub.SharedConnection`: the driver's address, TLS and login), packed
and parsed by the Rust core, several callers in flight at once; redis-py's pool costs
about as much as the round trip itself. Nothing is retried: a call that was sent and
got no reply raises :class:`~lockstep.errors.OutcomeUnknown`, and the limiter counts
its units as spent. A call whose deadline passes closes the connection, so a late
reply can never be matched to another call (the calls in flight with it get
OutcomeUnknown too); the next call reconnects. ``NOSCRIPT`` (the script cache was
flushed, or the server restarted) provably ran nothing, so the script is loaded and
the call made once more. ``peek`` runs under ``EVALSHA_RO`` and is idempotent.

Per call the Python side is kept to one write and one future: the acquire command is
packed once per (key, cost), the deadlines of a store's calls share one timer
(:class:`Deadlines`), and the connection is polled for a server-side close only after
a quiet spell (``QUIET``): between back-to-back calls the loop has just read from it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import weakref
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._core import Decision, RateRule, RespError, pack_command
from ..errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    LockstepError,
    OutcomeUnknown,
    Timeout,
)
from .rate_store import Grant, RateStore, decision_from_row
from .redis_connection import ConnectionLost, Replies
from .redis_pubsub import SharedConnection

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .redis import RedisDriver

__all__ = ["RedisRateStore"]


def _script(name: str) -> tuple[str, str]:
    text = resources.files("lockstep.drivers").joinpath("lua", name).read_text(encoding="utf-8")
    return text, hashlib.sha1(text.encode()).hexdigest()


_SCRIPTS = {"gcra": _script("rate_gcra.lua"), "sliding_window": _script("rate_window.lua")}
#: one script connection per driver, shared by its limiters; closed with the coordinator
_CONNECTIONS: weakref.WeakKeyDictionary[RedisDriver, SharedConnection] = weakref.WeakKeyDictionary()


#: a connection this long without a call of ours is polled for a close before a send
QUIET = 0.001


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Deadlines:
    """The deadlines of one store's calls in flight, enforced by one timer.

    A timer per call (``call_at`` and ``cancel``) costs more CPU than the rest of a call's
    Python work: the loop's heap of handles compares them in Python. Here calls are queued
    in send order; their replies arrive in that order too, so finished calls are dropped
    from the front as new ones come, and the one timer is re-armed only for a deadline
    earlier than the one it waits for. When it fires it fails (``TimeoutError``) every call
    past its deadline, exactly as a timer of its own would have.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.calls: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for = math.inf

    def watch(self, give_up: float, future: asyncio.Future[Any]) -> None:
        calls = self.calls
        while calls and calls[0][1].done():
            calls.popleft()
        calls.append((give_up, future))
        if give_up < self.armed_for:
            self._arm(give_up)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)
        self.armed_for = when

    def _fire(self) -> None:
        self.timer, self.armed_for = None, math.inf
        now = self.loop.time()
        live: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        for give_up, future in self.calls:
            if future.done():
                continue
            if give_up <= now:
                _expire(future)
            else:
                live.append((give_up, future))
        self.calls = live
        if live:
            self._arm(min(give_up for give_up, _ in live))


def _describe_fingerprint(fingerprint: str) -> str:
    try:
        algorithm, limit, period_us, burst = fingerprint.split(":")
        return RateRule(algorithm, int(limit), int(period_us), int(burst) if algorithm == "gcra" else None).describe()
    except (ValueError, LockstepError):  # a foreign or damaged value: show it as it is
        return repr(fingerprint[:80])


class RedisRateStore(RateStore):
    """One limit's keys on a Redis server (see the module docstring)."""

    def __init__(self, driver: RedisDriver, keys: Keyspace, name: str, rule: RateRule) -> None:
        super().__init__(keys, name, rule)
        self.driver = driver
        self._text, self._sha = _SCRIPTS[rule.algorithm]
        if rule.algorithm == "gcra":
            self._params: tuple[Any, ...] = (rule.fingerprint, rule.emission_us, rule.burst)
        else:
            self._params = (rule.fingerprint, rule.limit, rule.period_us, rule.granularity_us)
        #: (key, cost) -> its packed EVALSHA acquire: the hot path packs each command once
        self._acquires: dict[tuple[str, int], bytes] = {}
        self._deadlines: Deadlines | None = None
        self._sent_at = -math.inf  # loop time of this store's last send

    @staticmethod
    async def close_shared(driver: RedisDriver) -> None:
        """Close the driver's script connection (the coordinator is closing)."""
        shared = _CONNECTIONS.pop(driver, None)
        if shared is not None:
            shared.close()

    def _keys(self, key: str) -> list[str]:
        state = self.state_key(key)
        return [state] if self.rule.algorithm == "gcra" else [state, f"{state}|log"]

    async def _send(self, op: str, packed: bytes, *, give_up: float, idempotent: bool) -> Any:
        """One command on the script connection; its reply (a RespError for an error reply)."""
        loop = asyncio.get_running_loop()
        if getattr(self.driver, "_pool", None) is None:
            raise BackendUnavailable(f"{self.driver.name}: rate-limit {op} was not sent: the driver is closed; it did not run")
        shared = _CONNECTIONS.get(self.driver)
        if shared is None:
            shared = _CONNECTIONS.setdefault(self.driver, SharedConnection(self.driver, "rate limits"))
        conn = shared.conn
        now = loop.time()
        if conn is None or conn.closed:
            conn = await shared.get(max(0.001, give_up - now))  # BackendUnavailable: nothing sent
        elif now - self._sent_at > QUIET and conn.peer_closed():
            # e.g. Redis restarted while we were quiet: reconnect rather than send into a dead
            # socket. Skipped between back-to-back calls (the loop saw the last reply < QUIET ago).
            conn.close()
            conn = await shared.get(max(0.001, give_up - now))
        try:
            future = conn.request(packed, Replies(1))
        except ConnectionLost as exc:
            raise BackendUnavailable(f"{self.driver.name}: rate-limit {op} was not sent: {exc}; it did not run") from None
        self._sent_at = now
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(loop)
        deadlines.watch(give_up, future)
        try:
            return (await future)[0]
        except TimeoutError:
            what = f"{self.driver.name}: rate-limit {op}"
            conn.close(TimeoutError(f"{what} got no reply in time"))  # never match a late reply
            if idempotent:
                raise Timeout(f"{what} did not finish by its deadline") from None
            raise OutcomeUnknown(
                f"{what} was sent but no reply came by its deadline; it may or may not have taken effect"
            ) from None
        except ConnectionLost as exc:
            what = f"{self.driver.name}: rate-limit {op}"
            if idempotent:
                raise BackendUnavailable(f"{what} failed: {exc}") from None
            raise OutcomeUnknown(f"{what} was sent but the connection was lost ({exc}); it may or may not have "
                                 "taken effect") from None  # fmt: skip

    def _pack(self, op: str, key: str, *args: int, read_only: bool = False) -> bytes:
        keys = self._keys(key)
        return pack_command("EVALSHA_RO" if read_only else "EVALSHA", self._sha, len(keys), *keys, op, *self._params, *args)

    async def _eval(self, op: str, key: str, *args: int, timeout: float, read_only: bool = False) -> Any:
        return await self._call(op, self._pack(op, key, *args, read_only=read_only), timeout=timeout, read_only=read_only)

    async def _call(self, op: str, packed: bytes, *, timeout: float, read_only: bool = False) -> Any:
        """Run one packed EVALSHA; a flushed script cache (NOSCRIPT: nothing ran) is refilled once."""
        give_up = asyncio.get_running_loop().time() + timeout
        reply = await self._send(op, packed, give_up=give_up, idempotent=read_only)
        if reply.__class__ is RespError:
            if reply.code == "NOSCRIPT":  # nothing ran: load it, once more
                load = pack_command("SCRIPT", "LOAD", self._text)
                loaded = await self._send("script load", load, give_up=give_up, idempotent=True)
                if isinstance(loaded, RespError):
                    raise BackendError(f"{self.driver.name}: loading the rate-limit script failed: {loaded}")
                reply = await self._send(op, packed, give_up=give_up, idempotent=read_only)
            if isinstance(reply, RespError):
                self._raise_for(op, reply)
        return reply

    def _raise_for(self, op: str, reply: RespError) -> None:
        if reply.code == "LOCKSTEP_CONFIG":
            theirs = _describe_fingerprint(reply.message.removeprefix("LOCKSTEP_CONFIG ").strip())
            raise ConfigError(
                f"rate limit {self.name!r} is in use as {theirs}, but this limiter says "
                f"{self.rule.describe()}; every user of a name must give it the same rate, burst and "
                "algorithm (or reset it first)"
            )
        raise BackendError(f"{self.driver.name}: rate-limit {op} failed at {self.driver.address.where}: {reply}")

    async def acquire(self, key: str, cost: int, *, timeout: float) -> Decision:
        packed = self._acquires.get((key, cost)) if cost.__class__ is int else None
        if packed is None:
            packed = self._pack("acquire", key, self.rule.check_cost(cost))
            if len(self._acquires) >= 1024:  # bounded: many one-off keys only cost a repack
                self._acquires.clear()
            self._acquires[key, cost] = packed
        return decision_from_row(await self._call("acquire", packed, timeout=timeout))

    async def peek(self, key: str, *, timeout: float) -> Decision:
        return decision_from_row(await self._eval("peek", key, 1, timeout=timeout, read_only=True))

    async def reset(self, key: str, *, timeout: float) -> bool:
        return await self.driver.delete(self._keys(key), timeout=timeout) > 0

    async def lease(self, key: str, min_units: int, max_units: int, lease_us: int, *, timeout: float) -> Grant:
        self.rule.check_cost(min_units)
        row = await self._eval("lease", key, min_units, max_units, lease_us, timeout=timeout)
        return Grant.from_row(row)

    async def refund(self, key: str, token: int, units: int, *, timeout: float) -> int:
        row = await self._eval("refund", key, token, units, timeout=timeout)
        return int(row[0])
