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
"""

from __future__ import annotations

import asyncio
import hashlib
import select
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
from .redis_connection import ConnectionLost, Replies, RespConnection
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


_POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer shut down its side


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _peer_gone(conn: RespConnection) -> bool:
    """Whether the server closed or reset the connection, though the loop has not seen it yet."""
    transport = conn.transport
    if conn.closed or transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return sock is not None
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | _POLLRDHUP)
    return any(events & (select.POLLHUP | select.POLLERR | _POLLRDHUP) for _, events in poller.poll(0))


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
        what = f"{self.driver.name}: rate-limit {op}"
        if getattr(self.driver, "_pool", None) is None:
            raise BackendUnavailable(f"{what} was not sent: the driver is closed; it did not run")
        shared = _CONNECTIONS.get(self.driver)
        if shared is None:
            shared = _CONNECTIONS.setdefault(self.driver, SharedConnection(self.driver, "rate limits"))
        conn = shared.conn
        if conn is None or conn.closed:
            conn = await shared.get(max(0.001, give_up - loop.time()))  # BackendUnavailable: nothing sent
        elif _peer_gone(conn):
            conn.close()  # e.g. Redis restarted: reconnect rather than send into a dead socket
            conn = await shared.get(max(0.001, give_up - loop.time()))
        try:
            future = conn.request(packed, Replies(1))
        except ConnectionLost as exc:
            raise BackendUnavailable(f"{what} was not sent: {exc}; it did not run") from None
        # A bare timer is cheaper than asyncio.timeout() on this path; it fails only this future.
        timer = loop.call_at(give_up, _expire, future)
        try:
            return (await future)[0]
        except TimeoutError:
            conn.close(TimeoutError(f"{what} got no reply in time"))  # never match a late reply
            if idempotent:
                raise Timeout(f"{what} did not finish by its deadline") from None
            raise OutcomeUnknown(
                f"{what} was sent but no reply came by its deadline; it may or may not have taken effect"
            ) from None
        except ConnectionLost as exc:
            if idempotent:
                raise BackendUnavailable(f"{what} failed: {exc}") from None
            raise OutcomeUnknown(f"{what} was sent but the connection was lost ({exc}); it may or may not have "
                                 "taken effect") from None  # fmt: skip
        finally:
            timer.cancel()

    async def _eval(self, op: str, key: str, *args: int, timeout: float, read_only: bool = False) -> Any:
        keys = self._keys(key)
        give_up = asyncio.get_running_loop().time() + timeout
        command = "EVALSHA_RO" if read_only else "EVALSHA"
        packed = pack_command(command, self._sha, len(keys), *keys, op, *self._params, *args)
        reply = await self._send(op, packed, give_up=give_up, idempotent=read_only)
        if isinstance(reply, RespError) and reply.code == "NOSCRIPT":  # nothing ran: load it, once more
            loaded = await self._send("script load", pack_command("SCRIPT", "LOAD", self._text), give_up=give_up, idempotent=True)
            if isinstance(loaded, RespError):
                raise BackendError(f"{self.driver.name}: loading the rate-limit script failed: {loaded}")
            reply = await self._send(op, packed, give_up=give_up, idempotent=read_only)
        if isinstance(reply, RespError):
            if reply.code == "LOCKSTEP_CONFIG":
                theirs = _describe_fingerprint(reply.message.removeprefix("LOCKSTEP_CONFIG ").strip())
                raise ConfigError(
                    f"rate limit {self.name!r} is in use as {theirs}, but this limiter says "
                    f"{self.rule.describe()}; every user of a name must give it the same rate, burst and "
                    "algorithm (or reset it first)"
                )
            raise BackendError(f"{self.driver.name}: rate-limit {op} failed at {self.driver.address.where}: {reply}")
        return reply

    async def acquire(self, key: str, cost: int, *, timeout: float) -> Decision:
        cost = self.rule.check_cost(cost)
        return decision_from_row(await self._eval("acquire", key, cost, timeout=timeout))

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
