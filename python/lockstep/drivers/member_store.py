"""The per-driver contract for membership: agents, heartbeats, ownership, reaping.

:mod:`lockstep.membership` is written once over this contract; each driver returns a
:class:`MemberStore` from ``driver.member_store(keys)``. Every operation that decides
something is *atomic on the backend and judged on the backend's clock* (a Lua script
calling ``TIME`` on Redis, one ``BEGIN IMMEDIATE`` transaction on the host clock for
SQLite, the space lock on ``time.monotonic()`` in memory):

* ``register`` gives the agent a fresh **incarnation** (a namespace-wide counter, so
  it strictly increases each time the same agent id registers, and is never reused,
  even after a reset) unless a record for that id exists, which it returns instead.
* ``heartbeat`` refreshes many agents in one round trip; an agent whose record is gone
  or carries another incarnation gets ``False``: it was reaped (or replaced).
* ``put`` writes one of the agent's scratch keys and records it in the agent's
  **ownership index**, only if the agent's record still carries its incarnation, so a
  reaped agent that wakes up makes no accepted write.
* ``reap_*`` claim corpses: each checks staleness (or, for a dead local process, the
  recorded pid and start time) *in the same atomic step* that removes the record,
  deletes exactly the keys the ownership index names, drops the agent from every index
  and appends a ``reaped`` entry to the namespace's capped lifecycle log. Two reapers
  at once therefore split the dead between them, each corpse claimed exactly once, and
  an agent that heartbeated in between is left alone. The agent's leases are returned
  (the store cannot free them: :mod:`lockstep.membership` does, by token).

Per agent the store keeps: the record (incarnation, ttl, interval, meta, host, host id,
pid, process start, session, registration time, last heartbeat), the ownership index
of keys (with each key's expiry, so entries of expired keys are pruned as it goes) and
the index of leases (token -> kind and names). Per namespace: the incarnation counter,
the heartbeat order (for reaping in time proportional to the dead), the local process
index (host id -> processes -> agents) and the lifecycle log (the last
:data:`LOG_CAP` entries).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "LOG_CAP",
    "Claimed",
    "MemberRecord",
    "MemberStore",
    "MemoryUsage",
    "OwnedLease",
    "Reason",
    "Registration",
    "lease_entry",
    "log_entry",
    "parse_lease",
]

LOG_CAP = 1000  #: lifecycle log entries kept per namespace
#: why an agent was claimed ("left": it deregistered itself)
Reason = Literal["stale", "process gone", "reset", "left"]


@dataclass(frozen=True)
class Registration:
    agent: str
    ttl: float
    interval: float
    meta: bytes  #: JSON
    host: str  #: hostname, for people
    hostid: str  #: boot id + pid namespace (lockstep.procinfo.host_id); "" if unknown
    pid: int
    start: str  #: process start, clock ticks since boot; "" if unknown
    session: str  #: the registering coordinator's id


@dataclass(frozen=True)
class MemberRecord:
    agent: str
    incarnation: int
    last_beat: float  #: Unix seconds, on the backend's clock
    age: float  #: seconds since the last heartbeat, on the backend's clock
    ttl: float
    interval: float
    meta: bytes
    host: str
    hostid: str
    pid: int
    start: str
    session: str
    registered_at: float  #: Unix seconds, backend clock
    owned_keys: int = 0
    owned_leases: int = 0


@dataclass(frozen=True)
class OwnedLease:
    token: str
    kind: str
    names: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.kind}:{','.join(self.names)}"


@dataclass(frozen=True)
class Claimed:
    """One agent removed by a reap (or a deregistration): what went with it."""

    agent: str
    incarnation: int
    reason: str
    age: float | None  #: seconds since its last heartbeat when claimed (None if unknown)
    keys_deleted: int
    leases: tuple[OwnedLease, ...] = ()


@dataclass
class MemoryUsage:
    """What the backend holds, in bytes."""

    backend_bytes: int  #: all of it (Redis used_memory; SQLite pages in use; memory: an estimate)
    namespace_bytes: int  #: this namespace's membership state and owned keys
    keys: int  #: keys counted in namespace_bytes
    detail: dict[str, float | int | str] = field(default_factory=dict)


def log_entry(claimed: Claimed, reaper: str, at: float) -> bytes:
    """A lifecycle log entry, as JSON (the Redis scripts write the same fields with cjson)."""
    return json.dumps(
        {
            "event": "reaped",
            "agent": claimed.agent,
            "incarnation": claimed.incarnation,
            "reason": claimed.reason,
            "reaper": reaper,
            "at": round(at, 3),
            "keys_deleted": claimed.keys_deleted,
            "leases": len(claimed.leases),
        },
        separators=(",", ":"),
    ).encode()


def parse_lease(token: str, raw: bytes | str) -> OwnedLease:
    """An ownership index entry (JSON ``[kind, [names...]]``) back to an OwnedLease."""
    kind, names = json.loads(raw)
    return OwnedLease(token, str(kind), tuple(str(n) for n in names))


def lease_entry(lease: OwnedLease) -> bytes:
    return json.dumps([lease.kind, list(lease.names)], separators=(",", ":")).encode()


class MemberStore(abc.ABC):
    """One coordinator's access to the membership state of one namespace."""

    #: How the backend clock is read, for `lockstep status` ("server", "host", "monotonic").
    clock: str = "host"

    @abc.abstractmethod
    async def register(self, reg: Registration, *, timeout: float) -> int | MemberRecord:
        """The new incarnation, or the record already registered under that agent id."""

    @abc.abstractmethod
    async def heartbeat(self, beats: Sequence[tuple[str, int]], *, timeout: float) -> list[bool]:
        """Refresh each (agent, incarnation); False where the record is gone or another incarnation."""

    @abc.abstractmethod
    async def deregister(self, agent: str, incarnation: int, *, timeout: float) -> Claimed | None:
        """Remove the agent and what it owns; None if that incarnation is no longer registered."""

    @abc.abstractmethod
    async def put(
        self, agent: str, incarnation: int, key: str, value: bytes, ttl: float | None, *, timeout: float
    ) -> bool:
        """Write an owned key; False (nothing written) if the incarnation is no longer registered."""

    @abc.abstractmethod
    async def delete_owned(self, agent: str, incarnation: int, key: str, *, timeout: float) -> bool | None:
        """Delete an owned key: whether it existed, or None if the incarnation is gone."""

    @abc.abstractmethod
    async def own_lease(self, agent: str, incarnation: int, lease: OwnedLease, *, timeout: float) -> bool:
        """Record a lease as the agent's; False if the incarnation is no longer registered."""

    @abc.abstractmethod
    async def disown_lease(self, agent: str, token: str, *, timeout: float) -> None:
        """Forget a lease of the agent (idempotent)."""

    @abc.abstractmethod
    async def members(self, *, timeout: float) -> list[MemberRecord]: ...

    @abc.abstractmethod
    async def leases(self, agent: str, *, timeout: float) -> list[OwnedLease]:
        """The leases recorded as the agent's."""

    @abc.abstractmethod
    async def reap_stale(
        self, threshold: float | None, limit: int, reaper: str, *, timeout: float
    ) -> list[Claimed]:
        """Claim up to ``limit`` agents silent for longer than ``threshold`` s (None: each one's ttl)."""

    @abc.abstractmethod
    async def local_processes(self, hostid: str, *, timeout: float) -> list[tuple[int, str]]:
        """(pid, start) of every process with agents registered from host ``hostid``."""

    @abc.abstractmethod
    async def reap_process(self, hostid: str, pid: int, start: str, reaper: str, *, timeout: float) -> list[Claimed]:
        """Claim every agent registered by that process (the caller saw it is gone)."""

    @abc.abstractmethod
    async def reap_agent(
        self, agent: str, incarnation: int, reason: Reason, reaper: str, *, timeout: float
    ) -> Claimed | None:
        """Claim that incarnation if it is stale by its own ttl (reason "stale") or regardless
        (any other reason: the caller proved it dead, or is resetting)."""

    @abc.abstractmethod
    async def lifecycle(self, limit: int, *, timeout: float) -> list[bytes]:
        """The newest ``limit`` lifecycle log entries (JSON), newest first."""

    @abc.abstractmethod
    async def memory(self, *, timeout: float) -> MemoryUsage: ...

    @abc.abstractmethod
    async def drop_indexes(self, *, timeout: float, keep_counter: bool = True) -> int:
        """After every agent is gone (a reset): delete the namespace's indexes and lifecycle
        log, and the incarnation counter too unless ``keep_counter`` (only a namespace that
        is never used again may forget its incarnations). Returns how many keys (or rows) went."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Free local resources. Idempotent."""
