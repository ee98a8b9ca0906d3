"""The per-driver contract for fenced leases (locks, semaphores, multi-resource claims).

:mod:`lockstep.leases` is written once over this contract; each driver that has
:attr:`~lockstep.drivers.base.Capability.LOCKS` returns a :class:`LeaseStore` from
``driver.lease_store(keys=..., session=..., owner=...)``, one per coordinator.

A resource is ``(kind, name)``: ``kind`` is lockstep's own (``"lock"``, ``"sem"``,
``"port"``, ``"claim"``), ``name`` a validated name. Every operation is identified
by the lease's random ``token`` and is idempotent by it, so an operation whose reply
was lost is resolved by running it again, never by guessing:

* ``acquire`` grants every resource of the request or none (a token that already
  holds them gets the same grant back, its expiry refreshed). When the request is
  busy and ``queue_ttl`` is set, the token joins (or stays in) the FIFO queue of each
  resource; a queue entry lives ``queue_ttl`` seconds unless refreshed by the next
  attempt, so a waiter that dies or gives up never blocks the queue for long.
* ``renew`` extends held leases (in one round trip where the backend allows) and says
  which are still held, plus the backend's incarnation (Redis ``run_id``), so a restart
  is noticed.
* ``release`` drops the token's hold and queue entries and wakes the waiters that can
  now go.
* ``fenced_set`` writes only if the token still holds the resource with that fence
  (and, for one slot, the fence is still the latest): checked on the backend itself.

The rules for who is granted what are those of :class:`lockstep._core.LeaseTable`;
the Redis Lua scripts follow the same ones (and hand a freed lock straight to a waiter
for that one resource, see :mod:`.redis_leases`). Wake-ups: a waiter registers its token
with :meth:`LeaseStore.register` after its first attempt found the resources busy (most
acquires are granted at once and never register); a wake-up that came for it before
that is kept by the store and handed over at registration, so a release between its
attempt and its wait is not missed. It then sleeps in :meth:`LeaseStore.wait` until
woken or until its timeout, whichever is first; each driver delivers wake-ups its own
way and says how often a waiter must poll when no wake-up comes.
"""

from __future__ import annotations

import abc
from typing import Any
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "QUEUE_TTL",
    "AcquireRequest",
    "Blocked",
    "Busy",
    "Grant",
    "HolderInfo",
    "LeaseStore",
    "LeaseWaiter",
    "RenewItem",
    "RenewReply",
    "ResourceLeases",
]

#: Seconds a waiter's queue entry lives unless refreshed; waiters refresh it at least
#: every QUEUE_TTL / 3 (their poll fallback), so only a dead one lets it expire. A lease
#: handed over to a waiter by a release (Redis) first lives at most this long too.
QUEUE_TTL = 3.0
EARLY_WAKEUPS = 256  # wake-ups kept for tickets that register later (see LeaseStore.register)


@dataclass(slots=True)  # not frozen: made once per acquire, and frozen __init__ is slow
class AcquireRequest:
    token: str
    owner: str  #: the member asking, named in conflicts
    kind: str
    names: tuple[str, ...]
    slots: int
    ttl: float
    queue_ttl: float | None = None  #: None: try once, do not join the queue
    floors: tuple[int, ...] = ()  #: per name, the highest fence seen (0: none); raised to if above


@dataclass(frozen=True)
class Grant:
    fences: tuple[int, ...]  #: one per name, in order
    raised: tuple[str, ...] = ()  #: names whose counter was below its floor: the backend went backwards


@dataclass(frozen=True)
class Blocked:
    name: str
    holders: tuple[str, ...]  #: owners holding it
    waiting_ahead: tuple[str, ...]  #: owners queued ahead of the request


@dataclass(frozen=True)
class Busy:
    blockers: tuple[Blocked, ...]
    retry_in: float | None  #: seconds until a holder or a waiter ahead expires
    queued: bool

    def conflicts(self) -> dict[str, str]:
        """Each blocked name -> the member in the way (a holder, else the first in line)."""
        out = {}
        for b in self.blockers:
            who = b.holders[0] if b.holders else (b.waiting_ahead[0] if b.waiting_ahead else "")
            out[b.name] = who or "(unknown)"
        return out


@dataclass(frozen=True)
class RenewItem:
    token: str
    kind: str
    names: tuple[str, ...]
    ttl: float


@dataclass(frozen=True)
class RenewReply:
    held: list[bool]  #: per item, in order
    epoch: str | None = None  #: the backend's incarnation (Redis run_id); None if unknown


@dataclass(frozen=True)
class HolderInfo:
    owner: str
    fence: int
    expires_in: float  #: seconds, on the backend's clock
    token: str = ""  #: the lease's token (filled in by list_resources; holders() leaves it out)


@dataclass(frozen=True)
class LeaseWaiter:
    """One entry of a resource's FIFO queue."""

    owner: str  #: the member waiting
    ticket: str  #: the waiting lease's token
    expires_in: float  #: seconds until the entry lapses unless the waiter asks again


@dataclass(frozen=True)
class ResourceLeases:
    """One resource that is held or waited for: ``coord.leases()`` lists these."""

    kind: str  #: "lock", "sem" (semaphore), "port", "claim", ...
    name: str
    slots: int  #: 1 for a lock, N for a semaphore
    fence: int  #: the last fence granted on it
    holders: tuple[HolderInfo, ...]  #: live holders, oldest grant (lowest fence) first
    waiters: tuple[LeaseWaiter, ...]  #: live queue entries, first in line first


@dataclass
class _WakeSlot:
    loop: asyncio.AbstractEventLoop
    woken: bool = False  #: a wake-up came and was not yet seen by wait()
    waiter: asyncio.Future[bool] | None = None  #: wait() sleeping on it
    handed_fence: int | None = None  #: set when the backend handed the lease over with the wake-up

    def wake(self) -> None:
        self.woken = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class LeaseStore(abc.ABC):
    """One coordinator's access to the lease state of its backend."""

    #: How often a waiter looks again when no wake-up comes, at most (seconds).
    poll_max: float = QUEUE_TTL / 3
    #: The backend's incarnation when the store was made (Redis run_id); None if not known.
    epoch: str | None = None

    def __init__(self, *, session: str, owner: str, keys: Any = None) -> None:
        self.session = session  #: this coordinator's instance id; tokens start with it
        self.owner = owner
        #: the coordinator's Keyspace: local drivers key resources by it, so namespaces
        #: sharing one memory space or one SQLite file never share a lock
        self.keys = keys
        self._slots: dict[str, _WakeSlot] = {}
        #: wake-ups for tickets not registered (yet): ticket -> handed-over fence or None
        self._early: dict[str, int | None] = {}

    def rid(self, kind: str, name: str) -> str:
        """The namespaced id of one resource, for drivers that keep leases in one table."""
        return str(self.keys.key(kind, name))

    @staticmethod
    def name_of(rid: str) -> str:
        """The resource name inside an id made by :meth:`rid` (``ls:NS:{kind:name}``).

        Namespaces cannot contain ``{``, so the first ``:{`` ends the prefix."""
        return rid.partition(":{")[2].removesuffix("}").partition(":")[2]

    def rid_prefix(self) -> str:
        """What every id made by :meth:`rid` in this namespace starts with."""
        return f"{self.keys.prefix}{{"

    @staticmethod
    def split_rid(rid: str) -> tuple[str, str]:
        """``(kind, name)`` of an id made by :meth:`rid`."""
        kind, _, name = rid.partition(":{")[2].removesuffix("}").partition(":")
        return kind, name

    # -- the operations ------------------------------------------------------------------
    @abc.abstractmethod
    async def acquire(self, req: AcquireRequest, *, timeout: float) -> Grant | Busy: ...

    @abc.abstractmethod
    async def renew(self, items: Sequence[RenewItem], *, timeout: float) -> RenewReply: ...

    @abc.abstractmethod
    async def release(self, token: str, kind: str, names: Sequence[str], *, timeout: float) -> bool:
        """Drop the token's hold and queue entries; True if it held any (unexpired)."""

    @abc.abstractmethod
    async def fenced_set(
        self, token: str, kind: str, name: str, fence: int, key: str, value: bytes, *, timeout: float
    ) -> bool:
        """Store ``value`` under the resource's ``key`` only if the lease holds it with ``fence``."""

    @abc.abstractmethod
    async def fenced_get(self, kind: str, name: str, key: str, *, timeout: float) -> bytes | None: ...

    @abc.abstractmethod
    async def holders(self, kind: str, name: str, *, timeout: float) -> list[HolderInfo]: ...

    # -- inspection and retirement (lockstep status, epic clean-up) ----------------------
    @abc.abstractmethod
    async def list_resources(self, *, timeout: float) -> list[ResourceLeases]:
        """Every resource of the namespace with a live holder or waiter, sorted by (kind, name).

        Never a scan of the backend's keyspace: Redis keeps an index of the namespace's
        busy resources (see ``lua/lease_common.lua``), the local drivers their tables."""

    @abc.abstractmethod
    async def purge(self, kind: str, name: str, *, timeout: float) -> bool:
        """Forget an idle resource entirely: its fence counter, fenced values and index entry.

        Refused (False, nothing changed) while anyone holds or waits for it; checked in the
        same atomic step as the delete. Fences are otherwise permanent, so this is only for a
        namespace being retired: a coordinator that saw the old fences and takes the resource
        again finds the counter below them and reports the backend as gone backwards."""

    async def close(self) -> None:
        """Free what the store holds locally (subscriptions, lock files). Idempotent."""
        self.wake_all()

    # -- wake-ups ------------------------------------------------------------------------
    async def prepare_wait(self, *, timeout: float) -> None:
        """Make sure wake-ups can be delivered before a waiter first joins a queue."""

    def poll_interval(self, attempt: int) -> float:
        """Seconds to sleep before attempt ``attempt + 1`` when no wake-up comes."""
        return self.poll_max

    def register(self, token: str) -> None:
        """Start catching wake-ups for ``token``; one that came before is not lost."""
        slot = self._slots[token] = _WakeSlot(asyncio.get_running_loop())
        if token in self._early:
            slot.handed_fence = self._early.pop(token)
            slot.woken = True

    def _keep_early(self, ticket: str, fence: int | None) -> None:
        """A wake-up for a ticket not registered: a waiter registers after its first attempt."""
        if len(self._early) >= EARLY_WAKEUPS:
            self._early.pop(next(iter(self._early)), None)  # the oldest: long given up
        self._early[ticket] = fence

    def unregister(self, token: str) -> None:
        self._slots.pop(token, None)

    async def wait(self, token: str, timeout: float) -> bool:
        """Sleep until woken or ``timeout``; True if woken (a wake-up is seen once)."""
        slot = self._slots.get(token)
        if slot is None:
            await asyncio.sleep(max(0.0, timeout))
            return False
        if not slot.woken:
            waiter = slot.waiter = slot.loop.create_future()
            timer = slot.loop.call_later(max(0.0, timeout), _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                slot.waiter = None
        woken, slot.woken = slot.woken, False
        return woken

    def deliver(self, ticket: str, fence: int | None = None) -> None:
        """Wake the waiter holding ``ticket`` (from this loop's thread).

        ``fence``: the backend already granted the lease to the ticket (a hand-over).
        """
        slot = self._slots.get(ticket)
        if slot is None:
            self._keep_early(ticket, fence)
            return
        if fence is not None:
            slot.handed_fence = fence
        slot.wake()

    def handed_over(self, token: str) -> int | None:
        """The fence of a lease handed over to ``token`` with a wake-up, once; else None."""
        slot = self._slots.get(token)
        if slot is None:
            return None
        fence, slot.handed_fence = slot.handed_fence, None
        return fence

    def deliver_threadsafe(self, ticket: str) -> None:
        """Wake the waiter holding ``ticket`` from any thread."""
        slot = self._slots.get(ticket)
        if slot is None:
            self._keep_early(ticket, None)
        elif not slot.loop.is_closed():
            slot.loop.call_soon_threadsafe(self.deliver, ticket)

    def wake_all(self) -> None:
        """Wake every waiter of this store (after a gap in wake-up delivery)."""
        for slot in list(self._slots.values()):
            slot.wake()


def resource_leases(
    kind: str,
    name: str,
    slots: int,
    fence: int,
    holders: Sequence[tuple[str, str, int, float]],
    waiters: Sequence[tuple[str, str, float]],
    now: float,
) -> ResourceLeases | None:
    """A listing record from a local driver's rows, or None when nobody holds or waits.

    ``holders``: (token, owner, fence, expires_at); ``waiters``: (ticket, owner, expires_at),
    in queue order; times on the driver's clock, like ``now``. Expired rows are left out."""
    live = sorted((h for h in holders if h[3] > now), key=lambda h: h[2])
    line = [w for w in waiters if w[2] > now]
    if not live and not line:
        return None
    return ResourceLeases(
        kind,
        name,
        slots,
        fence,
        tuple(HolderInfo(owner, f, expires_at - now, token) for token, owner, f, expires_at in live),
        tuple(LeaseWaiter(owner, ticket, expires_at - now) for ticket, owner, expires_at in line),
    )


def resource_id(kind: str, name: str) -> str:
    """One string per resource for the local drivers (kinds never contain ':')."""
    return f"{kind}:{name}"
