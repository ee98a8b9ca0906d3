"""Leases of the Redis drivers: token-checked, idempotent Lua scripts on the server clock.

Every operation is one script (``lua/lease_*.lua`` after the shared prelude
``lua/lease_common.lua``, which documents the keys), run with EVALSHA and, when the
server answers NOSCRIPT (it never ran), with EVAL. Scripts are idempotent by token,
so one whose reply was lost is resolved by running it again.

**Wake-ups and hand-over.** The release script serves the waiters that can now take a
slot: a waiter for that one resource is granted it in the script itself and told its
fence in the message (a hand-over: no second round trip, so the gap between holders is
one release plus one message); a waiter for several resources is told to try. Messages
are PUBLISHed on the waiting coordinator's channel (``ls:NS:{meta}:wake:<session>``),
and each coordinator keeps ONE subscriber connection for its channel, whatever the
number of its waiters. A handed-over lease first expires with the waiter's queue entry
(at most QUEUE_TTL after the waiter's last attempt, which is where its local deadline
counts from) and is renewed to its full ttl right away, so a waiter that died in line
holds the lock for seconds, not a ttl; if the message is lost, the waiter's next
attempt (same token) returns the same grant. Why PUBLISH rather than a list per waiter and BLPOP (python-redis-lock's way):
BLPOP ties up a connection per blocked waiter (50 waiting tasks: 50 connections) and a
push to a list nobody pops lingers; a publish reaches the one subscriber at once and
costs nothing when nobody listens. It is at-most-once, so it is never the only way to learn: the
queue and the grant on the server stay the truth, every waiter is woken once the subscriber
is subscribed (the first time, after a waiter's first attempt joined the queue, and after each
reconnect), and waiters still poll
(at most every second, which also refreshes their queue entry) and wake up when the
server said a holder or a waiter ahead expires.

**Restarts.** The renew script returns the server's ``run_id``; when it differs from the
one the leases were granted under, the leases are reported lost (the server may have
come back with older state). Each acquire also passes the highest fence the client has
seen per resource: a counter found below it (``appendonly no`` and a crash) is raised
above it before granting, and the client reports the data loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import RespError
from ..errors import BackendError, ProtocolError
from .lease_store import (
    AcquireRequest,
    Blocked,
    Busy,
    Grant,
    HolderInfo,
    LeaseStore,
    RenewItem,
    RenewReply,
    ResourceLeases,
)
from .redis_lease_conn import PipelinedConnection, WakeSubscriber

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .redis import RedisDriver

__all__ = ["RedisLeaseStore"]

LUA = Path(__file__).with_name("lua")
PARTS = ("fence", "holders", "queue", "qexp", "state")
KEY_CACHE_SIZE = 4096  # resources whose key lists are kept


class _Script:
    """One lease script: the shared prelude plus its body; EVALSHA, EVAL on NOSCRIPT.

    A script's fast path (``<name>_fast.lua``, if any) goes inside the prelude, at its
    ``@fast-paths`` mark: after the few helpers it needs, before the others are made."""

    def __init__(self, name: str) -> None:
        self.name = name
        head, mark, helpers = (LUA / "lease_common.lua").read_text().partition("-- @fast-paths")
        fast = LUA / f"{name}_fast.lua"
        fast_path = fast.read_text() + "\n" if fast.exists() else ""
        self.source = head + fast_path + mark + helpers + "\n" + (LUA / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, conn: PipelinedConnection, keys: Sequence[str], args: Sequence[Any], *, timeout: float) -> Any:
        give_up = time.monotonic() + timeout
        reply = await conn.call(self.name, "EVALSHA", self.sha, len(keys), *keys, *args, timeout=timeout)
        if isinstance(reply, RespError) and reply.code == "NOSCRIPT":  # it did not run: send it whole
            left = max(0.001, give_up - time.monotonic())
            reply = await conn.call(self.name, "EVAL", self.source, len(keys), *keys, *args, timeout=left)
        if isinstance(reply, RespError):
            raise BackendError(f"redis: {self.name} failed: {reply.message}")
        return reply


_SCRIPTS: dict[str, _Script] = {}


def script(name: str) -> _Script:
    found = _SCRIPTS.get(name)
    if found is None:
        found = _SCRIPTS[name] = _Script(name)
    return found


_ACQUIRE, _RELEASE = script("lease_acquire"), script("lease_release")  # the hot path's two


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisLeaseStore(LeaseStore):
    def __init__(self, driver: RedisDriver, keys: Keyspace, *, session: str, owner: str) -> None:
        super().__init__(session=session, owner=owner)
        self.driver = driver
        self.keys = keys
        self.epoch = driver.run_id
        self.channel_prefix = keys.meta("wake", "")
        self.index_key = keys.meta("leases")  #: the namespace's busy resources (lua/lease_common.lua)
        self._conn = PipelinedConnection(driver)
        self._subscriber = WakeSubscriber(driver, self.channel_prefix + session, self._on_message, self.wake_all)
        self._key_cache: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._indexed_cache: dict[tuple[str, ...], list[str]] = {}

    def _keys(self, kind: str, names: Sequence[str]) -> list[str]:
        cache_key = (kind, tuple(names))
        found = self._key_cache.get(cache_key)
        if found is None:
            if len(self._key_cache) >= KEY_CACHE_SIZE:
                self._key_cache.clear()
            found = self._key_cache[cache_key] = [self.keys.key(kind, n, part) for n in names for part in PARTS]
        return found

    def _indexed_keys(self, kind: str, names: Sequence[str]) -> list[str]:
        """:meth:`_keys` and the index last, as the scripts that change holders take them."""
        cache_key = (kind, *names)
        found = self._indexed_cache.get(cache_key)
        if found is None:
            if len(self._indexed_cache) >= KEY_CACHE_SIZE:
                self._indexed_cache.clear()
            found = self._indexed_cache[cache_key] = [*self._keys(kind, names), self.index_key]
        return found

    # -- operations --------------------------------------------------------------------
    async def acquire(self, req: AcquireRequest, *, timeout: float) -> Grant | Busy:
        floors = req.floors or (0,) * len(req.names)
        args = [req.token, req.owner, req.slots, _millis(req.ttl), _millis(req.queue_ttl or 0), *floors]
        keys = self._indexed_keys(req.kind, req.names)
        reply = await _ACQUIRE.run(self._conn, keys, args, timeout=timeout)
        try:
            if reply[0] == 1:
                fences = tuple(int(f) for f in reply[1])
                return Grant(fences, tuple(req.names[int(i)] for i in reply[2]) if reply[2] else ())
            blockers = tuple(
                Blocked(req.names[int(i)], tuple(map(_text, holders)), tuple(map(_text, waiting)))
                for i, holders, waiting in reply[1]
            )
            retry_in = None if int(reply[2]) < 0 else int(reply[2]) / 1000
            return Busy(blockers, retry_in, bool(reply[3]))
        except (TypeError, ValueError, IndexError) as exc:
            raise ProtocolError(f"{self.driver.name}: unexpected reply to lease_acquire: {reply!r:.200}") from exc

    async def renew(self, items: Sequence[RenewItem], *, timeout: float) -> RenewReply:
        keys: list[str] = []
        args: list[Any] = [len(items)]
        for item in items:
            keys += self._keys(item.kind, item.names)
            args += [item.token, _millis(item.ttl), len(item.names)]
        keys.append(self.index_key)
        reply = await script("lease_renew").run(self._conn, keys, args, timeout=timeout)
        held = [int(ok) == 1 for ok in reply[0]]
        return RenewReply(held, _text(reply[1]) if reply[1] else None)

    async def release(self, token: str, kind: str, names: Sequence[str], *, timeout: float) -> bool:
        keys = self._indexed_keys(kind, names)
        reply = await _RELEASE.run(self._conn, keys, (token, self.channel_prefix), timeout=timeout)
        return int(reply) == 1

    async def fenced_set(
        self, token: str, kind: str, name: str, fence: int, key: str, value: bytes, *, timeout: float
    ) -> bool:
        keys = [*self._keys(kind, [name]), self.keys.key(kind, name, "value", key), self.keys.key(kind, name, "values")]
        reply = await script("lease_fenced_set").run(self._conn, keys, [token, fence, value], timeout=timeout)
        return int(reply) == 1

    async def fenced_get(self, kind: str, name: str, key: str, *, timeout: float) -> bytes | None:
        return await self.driver.get(self.keys.key(kind, name, "value", key), timeout=timeout)

    async def holders(self, kind: str, name: str, *, timeout: float) -> list[HolderInfo]:
        reply = await script("lease_holders").run(self._conn, self._keys(kind, [name]), [], timeout=timeout)
        return [HolderInfo(_text(owner), int(fence), int(ms) / 1000) for owner, fence, ms in reply]

    # -- inspection and retirement (see .redis_lease_listing) ----------------------------
    async def list_resources(self, *, timeout: float) -> list[ResourceLeases]:
        from .redis_lease_listing import list_resources

        return await list_resources(self, timeout=timeout)

    async def purge(self, kind: str, name: str, *, timeout: float) -> bool:
        keys = [*self._keys(kind, [name]), self.keys.key(kind, name, "values"), self.index_key]
        return int(await script("lease_purge").run(self._conn, keys, [], timeout=timeout)) == 1

    # -- wake-ups: one subscriber connection per coordinator ---------------------------
    async def prepare_wait(self, *, timeout: float) -> None:
        """Start the subscriber and wait (up to ``timeout``) until it is subscribed.

        If it cannot subscribe in time, waiting goes on by polling alone.
        """
        self._subscriber.start()
        if not self._subscriber.subscribed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._subscriber.subscribed.wait()

    def _on_message(self, data: bytes) -> None:
        ticket, _, fence = _text(data).partition(" ")
        self.deliver(ticket, int(fence) if fence.isdigit() else None)

    async def close(self) -> None:
        await self._subscriber.close()
        await self._conn.close()
        await super().close()


def _millis(seconds: float) -> int:
    """Whole milliseconds, rounded up (a positive TTL never becomes 0)."""
    return max(0, -int(-seconds * 1000 // 1))
