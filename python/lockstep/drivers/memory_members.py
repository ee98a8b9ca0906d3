"""Membership of the memory driver: records beside the space's keys, under the space's lock.

Every operation runs inside :meth:`MemoryDriver._apply`, holding the memory space's
lock, so a reap, a heartbeat and a ``put`` are each atomic with respect to one
another and to the scratch keys they touch (which are ordinary keys of the space,
readable with ``driver.get``). Time is ``time.monotonic()``: a wall-clock jump never
makes an agent look dead; the Unix times it reports are derived from it.

Finding the stale walks the namespace's agents (the memory driver serves one
process; Redis and SQLite keep a heartbeat order instead).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from .member_store import (
    LOG_CAP,
    Claimed,
    MemberRecord,
    MemberStore,
    MemoryUsage,
    OwnedLease,
    Reason,
    Registration,
    log_entry,
)
from .memory import MemorySpace, _Entry

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .memory import MemoryDriver

__all__ = ["MemoryMemberStore"]

T = TypeVar("T")
RECORD_OVERHEAD = 256  # bytes: a rough per-agent cost of the record and its index entries


@dataclass
class _Agent:
    reg: Registration
    incarnation: int
    beat: float  # monotonic
    registered: float  # monotonic
    owned: dict[str, float | None] = field(default_factory=dict)  # key -> monotonic expiry
    leases: dict[str, OwnedLease] = field(default_factory=dict)


@dataclass
class _Namespace:
    agents: dict[str, _Agent] = field(default_factory=dict)
    seq: int = 0
    log: deque[bytes] = field(default_factory=lambda: deque(maxlen=LOG_CAP))


_STATE: dict[tuple[str, str], _Namespace] = {}
_STATE_LOCK = threading.Lock()


def _namespace(space: str, namespace: str) -> _Namespace:
    with _STATE_LOCK:
        found = _STATE.get((space, namespace))
        if found is None:
            found = _STATE[(space, namespace)] = _Namespace()
        return found


def _wall(mono: float, now: float) -> float:
    return time.time() - (now - mono)


class MemoryMemberStore(MemberStore):
    clock = "monotonic"

    def __init__(self, driver: MemoryDriver, keys: Keyspace) -> None:
        self.driver = driver
        self.keys = keys
        self.ns = _namespace(driver.space_name, keys.namespace)

    async def _run(self, op: str, fn: Callable[[MemorySpace, float], T], *, timeout: float, write: bool) -> T:
        return await self.driver._apply(f"membership {op}", fn, timeout=timeout, write=write)

    # -- helpers (called under the space lock) -------------------------------------------
    def _record(self, a: _Agent, now: float) -> MemberRecord:
        r = a.reg
        return MemberRecord(
            agent=r.agent, incarnation=a.incarnation, last_beat=_wall(a.beat, now), age=now - a.beat,
            ttl=r.ttl, interval=r.interval, meta=r.meta, host=r.host, hostid=r.hostid, pid=r.pid,
            start=r.start, session=r.session, registered_at=_wall(a.registered, now),
            owned_keys=len(a.owned), owned_leases=len(a.leases),
        )  # fmt: skip

    def _current(self, agent: str, incarnation: int) -> _Agent | None:
        a = self.ns.agents.get(agent)
        return a if a is not None and a.incarnation == incarnation else None

    def _remove(self, space: MemorySpace, a: _Agent, now: float, reason: str, reaper: str | None) -> Claimed:
        """Drop the agent, its owned keys and its index entries; log it if reaped."""
        deleted = 0
        for key in a.owned:
            if space.live(key, now) is not None:
                del space.entries[key]
                deleted += 1
        del self.ns.agents[a.reg.agent]
        claimed = Claimed(a.reg.agent, a.incarnation, reason, now - a.beat, deleted, tuple(a.leases.values()))
        if reaper is not None:
            self.ns.log.appendleft(log_entry(claimed, reaper, _wall(now, now)))
        return claimed

    # -- the operations --------------------------------------------------------------
    async def register(self, reg: Registration, *, timeout: float) -> int | MemberRecord:
        def run(space: MemorySpace, now: float) -> int | MemberRecord:
            existing = self.ns.agents.get(reg.agent)
            if existing is not None:
                return self._record(existing, now)
            self.ns.seq += 1
            self.ns.agents[reg.agent] = _Agent(reg, self.ns.seq, beat=now, registered=now)
            return self.ns.seq

        return await self._run("register", run, timeout=timeout, write=True)

    async def heartbeat(self, beats: Sequence[tuple[str, int]], *, timeout: float) -> list[bool]:
        def run(space: MemorySpace, now: float) -> list[bool]:
            out = []
            for agent, incarnation in beats:
                a = self._current(agent, incarnation)
                if a is not None:
                    a.beat = now
                out.append(a is not None)
            return out

        return await self._run("heartbeat", run, timeout=timeout, write=True)

    async def deregister(self, agent: str, incarnation: int, *, timeout: float) -> Claimed | None:
        def run(space: MemorySpace, now: float) -> Claimed | None:
            a = self._current(agent, incarnation)
            return None if a is None else self._remove(space, a, now, "left", None)

        return await self._run("deregister", run, timeout=timeout, write=True)

    async def put(
        self, agent: str, incarnation: int, key: str, value: bytes, ttl: float | None, *, timeout: float
    ) -> bool:
        def run(space: MemorySpace, now: float) -> bool:
            a = self._current(agent, incarnation)
            if a is None:
                return False
            expires = None if ttl is None else now + ttl
            space.put(key, _Entry(bytes(value), expires))
            # Prune index entries of keys that have expired since, so the index stays bounded.
            for name, at in list(a.owned.items()):
                if at is not None and at <= now:
                    del a.owned[name]
            a.owned[key] = expires
            return True

        return await self._run("put", run, timeout=timeout, write=True)

    async def delete_owned(self, agent: str, incarnation: int, key: str, *, timeout: float) -> bool | None:
        def run(space: MemorySpace, now: float) -> bool | None:
            a = self._current(agent, incarnation)
            if a is None:
                return None
            a.owned.pop(key, None)
            if space.live(key, now) is None:
                return False
            del space.entries[key]
            return True

        return await self._run("delete", run, timeout=timeout, write=True)

    async def own_lease(self, agent: str, incarnation: int, lease: OwnedLease, *, timeout: float) -> bool:
        def run(space: MemorySpace, now: float) -> bool:
            a = self._current(agent, incarnation)
            if a is not None:
                a.leases[lease.token] = lease
            return a is not None

        return await self._run("own lease", run, timeout=timeout, write=True)

    async def disown_lease(self, agent: str, token: str, *, timeout: float) -> None:
        def run(space: MemorySpace, now: float) -> None:
            a = self.ns.agents.get(agent)
            if a is not None:
                a.leases.pop(token, None)

        await self._run("disown lease", run, timeout=timeout, write=True)

    async def members(self, *, timeout: float) -> list[MemberRecord]:
        def run(space: MemorySpace, now: float) -> list[MemberRecord]:
            return [self._record(a, now) for a in self.ns.agents.values()]

        return await self._run("members", run, timeout=timeout, write=False)

    async def leases(self, agent: str, *, timeout: float) -> list[OwnedLease]:
        def run(space: MemorySpace, now: float) -> list[OwnedLease]:
            a = self.ns.agents.get(agent)
            return [] if a is None else list(a.leases.values())

        return await self._run("leases", run, timeout=timeout, write=False)

    async def reap_stale(self, threshold: float | None, limit: int, reaper: str, *, timeout: float) -> list[Claimed]:
        def run(space: MemorySpace, now: float) -> list[Claimed]:
            stale = [
                a for a in self.ns.agents.values()
                if now - a.beat > (a.reg.ttl if threshold is None else threshold)
            ][:limit]  # fmt: skip
            return [self._remove(space, a, now, "stale", reaper) for a in stale]

        return await self._run("reap", run, timeout=timeout, write=True)

    async def local_processes(self, hostid: str, *, timeout: float) -> list[tuple[int, str]]:
        def run(space: MemorySpace, now: float) -> list[tuple[int, str]]:
            return sorted({(a.reg.pid, a.reg.start) for a in self.ns.agents.values() if a.reg.hostid == hostid})

        return await self._run("local processes", run, timeout=timeout, write=False)

    async def reap_process(self, hostid: str, pid: int, start: str, reaper: str, *, timeout: float) -> list[Claimed]:
        def run(space: MemorySpace, now: float) -> list[Claimed]:
            gone = [
                a for a in self.ns.agents.values()
                if (a.reg.hostid, a.reg.pid, a.reg.start) == (hostid, pid, start)
            ]  # fmt: skip
            return [self._remove(space, a, now, "process gone", reaper) for a in gone]

        return await self._run("reap process", run, timeout=timeout, write=True)

    async def reap_agent(
        self, agent: str, incarnation: int, reason: Reason, reaper: str, *, timeout: float
    ) -> Claimed | None:
        def run(space: MemorySpace, now: float) -> Claimed | None:
            a = self._current(agent, incarnation)
            if a is None or (reason == "stale" and now - a.beat <= a.reg.ttl):
                return None
            return self._remove(space, a, now, reason, reaper)

        return await self._run("reap agent", run, timeout=timeout, write=True)

    async def lifecycle(self, limit: int, *, timeout: float) -> list[bytes]:
        return await self._run(
            "lifecycle", lambda space, now: list(self.ns.log)[:limit], timeout=timeout, write=False
        )

    async def memory(self, *, timeout: float) -> MemoryUsage:
        def run(space: MemorySpace, now: float) -> MemoryUsage:
            entries = sum(_entry_bytes(k, e) for k, e in space.entries.items())
            records, owned, keys = sum(len(x) for x in self.ns.log), 0, 0
            for a in self.ns.agents.values():
                records += RECORD_OVERHEAD + len(a.reg.meta) + sum(len(t) + 64 for t in a.leases)
                keys += 1
                for key in a.owned:
                    entry = space.live(key, now)
                    if entry is not None:
                        owned += _entry_bytes(key, entry)
                        keys += 1
            return MemoryUsage(
                backend_bytes=entries + records,
                namespace_bytes=records + owned,
                keys=keys,
                detail={"how": "estimate: key and value sizes plus a fixed overhead per entry"},
            )

        return await self._run("memory", run, timeout=timeout, write=False)

    async def drop_indexes(self, *, timeout: float, keep_counter: bool = True) -> int:
        def run(space: MemorySpace, now: float) -> int:
            dropped = len(self.ns.log)
            self.ns.log.clear()
            if not keep_counter:
                self.ns.seq = 0
                dropped += 1
            return dropped

        return await self._run("drop indexes", run, timeout=timeout, write=True)


def _entry_bytes(key: str, entry: _Entry) -> int:
    value = entry.value
    size = len(value) if isinstance(value, bytes) else sum(len(f) + len(v) + 16 for f, v in value.items())
    return len(key) + size + 64 + (sys.getsizeof(value) if isinstance(value, dict) else 0)
