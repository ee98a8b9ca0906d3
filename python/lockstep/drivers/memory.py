"""The in-process driver: ``memory://NAME``.

Coordinators of one process that name the same space share its state, as
clients of one Redis server would; different names are isolated. ``memory://``
with no name is the space ``default``. A space lives as long as the process
(closing every coordinator does not clear it, just as closing clients does not
flush a server), so a coordinator reopened later sees what was written before.

The semantics are Redis's, exactly, for every method: a key holds either a
string value or a hash; using it as the other kind is refused with a
WRONGTYPE error; ``SET`` replaces a key of either kind and clears its TTL;
``INCR`` keeps the TTL; a hash whose last field is deleted disappears; TTLs
apply to whole keys. The rules shared with the SQLite driver (which emulates
Redis too) live in :mod:`lockstep.drivers.local_rules`.

TTLs run on ``time.monotonic()``, so a wall-clock jump never expires or revives
a key. Expired keys vanish when touched, and every write purges a bounded batch
of expired keys from a heap of deadlines: no timer or task per key.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from .._core import VERSION
from ..errors import BackendUnavailable
from .base import Capability, Driver, Option, ServerInfo
from .memory_leases import MemoryLeaseStore
from .local_rules import (
    add_to_counter,
    check_amount,
    check_field,
    check_fields,
    check_key,
    check_keys,
    check_ttl,
    check_value,
    wrong_type,
)

__all__ = ["MemoryDriver", "MemorySpace", "space"]

T = TypeVar("T")

# -- the shared spaces ----------------------------------------------------------------
class _Entry:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: bytes | dict[str, bytes], expires_at: float | None = None) -> None:
        self.value = value
        self.expires_at = expires_at  # time.monotonic() deadline


class MemorySpace:
    """One named keyspace. Its lock makes each operation atomic across threads."""

    PURGE_BATCH = 256

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        # (deadline, key); stale pairs (key rewritten or renewed) are skipped when popped.
        self.deadlines: list[tuple[float, str]] = []

    def live(self, key: str, now: float) -> _Entry | None:
        """The key's entry, dropping it first if it has expired."""
        entry = self.entries.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self.entries[key]
            return None
        return entry

    def put(self, key: str, entry: _Entry) -> None:
        self.entries[key] = entry
        self.track(key, entry)

    def track(self, key: str, entry: _Entry) -> None:
        if entry.expires_at is not None:
            heapq.heappush(self.deadlines, (entry.expires_at, key))

    def purge(self, now: float) -> None:
        """Drop a bounded batch of expired keys; called on every write."""
        heap = self.deadlines
        for _ in range(self.PURGE_BATCH):
            if not heap or heap[0][0] > now:
                break
            deadline, key = heapq.heappop(heap)
            entry = self.entries.get(key)
            if entry is not None and entry.expires_at == deadline:
                del self.entries[key]
        # Renewals leave stale deadlines behind; rebuild once they dominate the heap.
        if len(heap) > 64 + 2 * len(self.entries):
            self.deadlines = [(e.expires_at, k) for k, e in self.entries.items() if e.expires_at is not None]
            heapq.heapify(self.deadlines)


_SPACES: dict[str, MemorySpace] = {}
_SPACES_LOCK = threading.Lock()


def space(name: str) -> MemorySpace:
    """The process-wide space called ``name`` (created on first use)."""
    with _SPACES_LOCK:
        found = _SPACES.get(name)
        if found is None:
            found = _SPACES[name] = MemorySpace(name)
        return found


# -- the driver -----------------------------------------------------------------------
class MemoryDriver(Driver):
    """State in this process only; see the module docstring."""

    schemes: ClassVar[tuple[str, ...]] = ("memory",)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.KV, Capability.LOCKS, Capability.PUBSUB, Capability.DURABLE_MESSAGES, Capability.RATE_LIMIT}
    )
    options: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.space_name = settings.location.strip("/") or "default"
        self._space: MemorySpace | None = None

    async def connect(self, *, timeout: float) -> None:
        self._space = space(self.space_name)

    async def close(self) -> None:
        self._space = None

    def lease_store(self, *, keys: Any, session: str, owner: str) -> MemoryLeaseStore:
        return MemoryLeaseStore(self.space_name, session=session, owner=owner, keys=keys)

    def member_store(self, keys: Any) -> Any:
        from .memory_members import MemoryMemberStore

        return MemoryMemberStore(self, keys)

    def message_store(self, keys: Any) -> Any:
        from .memory_messages import MemoryMessageStore

        return MemoryMessageStore(self.space_name, keys)

    def rate_store(self, keys: Any, name: str, rule: Any) -> Any:
        from .memory_rates import MemoryRateStore

        return MemoryRateStore(self, keys, name, rule)

    def signal_store(self) -> Any:
        from .memory_signals import MemorySignalStore

        return MemorySignalStore(self)

    def _attached(self) -> MemorySpace:
        if self._space is None:
            raise BackendUnavailable(f"memory://{self.space_name}: the driver is not connected")
        return self._space

    async def _apply(
        self,
        op: str,
        fn: Callable[[MemorySpace, float], T],
        *,
        timeout: float,
        write: bool,
    ) -> T:
        """Run ``fn(space, now)`` atomically under the space's lock, within ``timeout``.

        A write is never called idempotent: should it overrun its deadline, the caller
        gets OutcomeUnknown, as from the other drivers.
        """
        target = self._attached()

        async def run() -> T:
            with target.lock:
                now = time.monotonic()
                if write:
                    target.purge(now)
                return fn(target, now)

        return await self.guard(op, run, timeout=timeout, idempotent=not write)

    # -- lifecycle and facts ------------------------------------------------------------
    async def ping(self, *, timeout: float) -> float:
        start = time.monotonic()
        await self._apply("ping", lambda s, now: None, timeout=timeout, write=False)
        return time.monotonic() - start

    async def server_info(self, *, timeout: float) -> ServerInfo:
        def live_keys(s: MemorySpace, now: float) -> int:
            return sum(1 for e in s.entries.values() if e.expires_at is None or e.expires_at > now)

        keys = await self._apply("server_info", live_keys, timeout=timeout, write=False)
        return ServerInfo(
            driver="memory",
            version=VERSION,
            persistence="none (in-process)",
            durable=False,
            details={"space": self.space_name, "keys": keys, "clock": "monotonic"},
        )

    async def time(self, *, timeout: float) -> float:
        return await self._apply("time", lambda s, now: time.time(), timeout=timeout, write=False)

    # -- strings --------------------------------------------------------------------------
    def _string(self, s: MemorySpace, op: str, key: str, now: float) -> bytes | None:
        entry = s.live(key, now)
        if entry is None:
            return None
        if not isinstance(entry.value, bytes):
            raise wrong_type("memory", op, key, "hash")
        return entry.value

    async def get(self, key: str, *, timeout: float) -> bytes | None:
        check_key(key)
        return await self._apply(
            "get", lambda s, now: self._string(s, "get", key, now), timeout=timeout, write=False
        )

    async def mget(self, keys: list[str], *, timeout: float) -> list[bytes | None]:
        if not check_keys(keys):
            return []

        def run(s: MemorySpace, now: float) -> list[bytes | None]:
            found = (s.live(k, now) for k in keys)
            # MGET answers nil for a key of another type, as Redis does.
            return [e.value if e is not None and isinstance(e.value, bytes) else None for e in found]

        return await self._apply("mget", run, timeout=timeout, write=False)

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
        timeout: float,
    ) -> bool:
        data = check_value(check_key(key), value)
        seconds = None if ttl is None else check_ttl(key, ttl)

        def run(s: MemorySpace, now: float) -> bool:
            if only_if_absent and s.live(key, now) is not None:
                return False
            s.put(key, _Entry(data, None if seconds is None else now + seconds))
            return True

        return await self._apply("set", run, timeout=timeout, write=True)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        if not check_keys(keys):
            return 0

        def run(s: MemorySpace, now: float) -> int:
            gone = 0
            for key in keys:
                if s.live(key, now) is not None:
                    del s.entries[key]
                    gone += 1
            return gone

        return await self._apply("delete", run, timeout=timeout, write=True)

    async def incr(self, key: str, amount: int = 1, *, timeout: float) -> int:
        step = check_amount(check_key(key), amount)

        def run(s: MemorySpace, now: float) -> int:
            entry = s.live(key, now)
            total = add_to_counter("memory", key, self._string(s, "incr", key, now), step)
            if entry is None:
                s.put(key, _Entry(str(total).encode()))
            else:
                entry.value = str(total).encode()  # INCR keeps the TTL
            return total

        return await self._apply("incr", run, timeout=timeout, write=True)

    async def expire(self, key: str, ttl: float, *, timeout: float) -> bool:
        seconds = check_ttl(check_key(key), ttl)

        def run(s: MemorySpace, now: float) -> bool:
            entry = s.live(key, now)
            if entry is None:
                return False
            entry.expires_at = now + seconds
            s.track(key, entry)
            return True

        return await self._apply("expire", run, timeout=timeout, write=True)

    async def ttl(self, key: str, *, timeout: float) -> float | None:
        check_key(key)

        def run(s: MemorySpace, now: float) -> float | None:
            entry = s.live(key, now)
            if entry is None or entry.expires_at is None:
                return None
            return entry.expires_at - now

        return await self._apply("ttl", run, timeout=timeout, write=False)

    # -- hashes ---------------------------------------------------------------------------
    def _hash(self, s: MemorySpace, op: str, key: str, now: float) -> dict[str, bytes] | None:
        entry = s.live(key, now)
        if entry is None:
            return None
        if not isinstance(entry.value, dict):
            raise wrong_type("memory", op, key, "string value")
        return entry.value

    async def hset(self, key: str, mapping: Mapping[str, bytes], *, timeout: float) -> int:
        fields = check_fields(check_key(key), mapping)
        if not fields:
            return 0

        def run(s: MemorySpace, now: float) -> int:
            current = self._hash(s, "hset", key, now)
            if current is None:
                current = {}
                s.put(key, _Entry(current))
            new = sum(1 for name in fields if name not in current)
            current.update(fields)
            return new

        return await self._apply("hset", run, timeout=timeout, write=True)

    async def hget(self, key: str, field: str, *, timeout: float) -> bytes | None:
        check_field(check_key(key), field)

        def run(s: MemorySpace, now: float) -> bytes | None:
            current = self._hash(s, "hget", key, now)
            return None if current is None else current.get(field)

        return await self._apply("hget", run, timeout=timeout, write=False)

    async def hgetall(self, key: str, *, timeout: float) -> dict[str, bytes]:
        check_key(key)

        def run(s: MemorySpace, now: float) -> dict[str, bytes]:
            return dict(self._hash(s, "hgetall", key, now) or {})

        return await self._apply("hgetall", run, timeout=timeout, write=False)

    async def hdel(self, key: str, fields: list[str], *, timeout: float) -> int:
        if not [check_field(check_key(key), name) for name in fields]:
            return 0

        def run(s: MemorySpace, now: float) -> int:
            current = self._hash(s, "hdel", key, now)
            if current is None:
                return 0
            gone = sum(1 for name in set(fields) if current.pop(name, None) is not None)
            if not current:
                del s.entries[key]  # Redis drops a hash with no fields left
            return gone

        return await self._apply("hdel", run, timeout=timeout, write=True)
