"""Fenced, auto-renewed leases: locks, semaphores and all-or-nothing multi-resource claims.

    async with coord.lock("test", ttl=30, wait=600) as lease:
        lease.fence                     # strictly increasing per resource
        await lease.fenced_set("result", b"...")   # refused once a newer holder exists
        ...                             # leaving raises LeaseLost if the lease was lost

``coord.lock()``, ``coord.semaphore()`` and ``coord.acquire_many()`` return a
:class:`LeaseRequest`: ``await`` it for a held :class:`Lease` (release it yourself),
or use it with ``async with`` (released on exit). ``wait`` bounds the whole wait
(``0`` tries once); when it runs out, :class:`~lockstep.errors.LockTimeout` names the
holders (``ClaimConflict`` for ``acquire_many``, naming each conflicting resource's holder).

Guarantees (RELIABILITY.md promise 1): at most ``slots`` live holders per resource;
each grant's fence is above every earlier one; one renewer per coordinator renews every
lease at most every ttl/3 (jittered, batched in one round trip) and fires
``lease.lost`` no later than the lease's local deadline (counted from when the request
granting or renewing it was *sent*) when renewal keeps failing; release never forgets
the token before the backend confirms it (it keeps retrying in the background until the
lease's TTL has passed) and survives cancellation; a backend restart (Redis ``run_id``)
or a fence going backwards reports leases lost instead of trusting a duplicate fence.

The machinery is split: this module (the public objects and argument checks),
:mod:`lockstep.lease_manager` (a coordinator's store, held leases and releases),
:mod:`lockstep.waiting` (the FIFO wait with wake-ups) and :mod:`lockstep.renewer` (the
one renewer task). Drivers implement :class:`lockstep.drivers.lease_store.LeaseStore`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import ownership
from .drivers.lease_store import HolderInfo, LeaseWaiter, ResourceLeases
from .errors import BackendError, InvalidInputError, LeaseLost, LockstepError
from .names import validate_name
from .tripwire import Tripwire
from .waiting import acquire_lease

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .lease_manager import LeaseManager

__all__ = ["HolderInfo", "Lease", "LeaseRequest", "LeaseWaiter", "LostSignal", "ResourceLeases", "release_on_exit"]

log = logging.getLogger("lockstep.leases")

KINDS_PATTERN = "lowercase letters, 1-16 of them"
BUILTIN_KINDS = frozenset({"lock", "sem", "port", "claim"})  # valid by KINDS_PATTERN


class LostSignal(Tripwire):
    """``lease.lost``: awaitable (returns once the lease is lost), ``is_set()``, ``reason``.

    ``is_set()`` also answers True once the lease's local deadline has passed, even if
    the renewer (say, in a process that was paused) has not run since.
    """

    __slots__ = ("_lease",)
    tripped_word = "lost"
    armed_word = "not lost"

    def __init__(self, lease: Lease) -> None:
        super().__init__()
        # A weak reference: no lease <-> signal cycle for the garbage collector to find.
        self._lease = weakref.ref(lease)

    def is_set(self) -> bool:
        if not self._fired:
            lease = self._lease()
            if lease is not None and not lease.released and time.monotonic() >= lease.deadline:
                self.fire("its deadline passed without a confirmed renewal")
        return self._fired


class Lease:
    """A held lease on one or more resources. See the module docstring."""

    def __init__(
        self,
        manager: LeaseManager,
        token: str,
        kind: str,
        names: tuple[str, ...],
        fences: Sequence[int],
        ttl: float,
        deadline: float,
        expires_by: float,
        epoch: str | None,
    ) -> None:
        self._manager = manager
        self.token = token  #: random; identifies this grant to the backend (keep it private)
        self.kind = kind
        self.resources = names
        self.fences: dict[str, int] = {names[0]: fences[0]} if len(names) == 1 else dict(zip(names, fences, strict=True))
        self.holder: str = manager.coord.member
        self.ttl = ttl
        self.deadline = deadline  #: local monotonic time by which it is lost unless renewed
        self.expires_by = expires_by  #: latest monotonic time the backend may still hold it
        self.epoch = epoch  #: the backend incarnation it was granted under
        self.released = False
        self.lost = LostSignal(self)
        self._result: bool | None = None  # the release's outcome, once known
        self._outcome: asyncio.Future[bool] | None = None  # for callers waiting on a release in flight

    @property
    def name(self) -> str:
        """The resource (the first one, for a lease on several)."""
        return self.resources[0]

    @property
    def fence(self) -> int:
        """The fence of :attr:`name`; :attr:`fences` has one per resource."""
        return self.fences[self.resources[0]]

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else ("released" if self.released else "held")
        return f"<Lease {self.kind}:{','.join(self.resources)} fence={self.fence} {state}>"

    def check(self) -> None:
        """Raise LeaseLost unless the lease is held: lost, past its deadline, or released."""
        if self.lost.is_set():
            raise LeaseLost(f"lease on {self.kind} {self.name!r} (fence {self.fence}) was lost: {self.lost.reason}")
        if self.released:
            raise LeaseLost(f"lease on {self.kind} {self.name!r} (fence {self.fence}) was released")

    async def release(self, *, timeout: float | None = None) -> bool:
        """Release; True if this released it on the backend, False if it was no longer held
        (an earlier try whose reply was lost may have released it).

        Idempotent: calling again returns the same outcome. Safe under cancellation and
        lost replies: the token is kept and the release retried by it (idempotent on
        the backend) in a background task until the backend confirms or the lease's
        TTL has passed. If no confirmation comes within ``timeout`` (default: the
        coordinator's), OutcomeUnknown is raised while that task carries on.
        """
        coord = self._manager.coord
        released = await self._manager.release(self, coord.timeout if timeout is None else coord._deadline(timeout))
        if coord._membership is None:  # no agent can own it: skip the index (the hot path)
            return released
        try:
            await ownership.lease_released(coord, self.token)
        except LockstepError as exc:
            # The lease is released; a stale ownership record is harmless (a sweep
            # releases by token, idempotently), so its failure must not fail release().
            log.warning("lease %s released, but its owner's index was not updated: %s", self.name, exc)
        return released

    async def extend(self, ttl: float | None = None, *, timeout: float | None = None) -> None:
        """Renew now, optionally with a new ttl for this and later renewals; LeaseLost if gone."""
        new_ttl = self.ttl if ttl is None else check_ttl(ttl)
        self.check()
        await self._manager.extend(self, new_ttl, timeout=self._manager.coord._deadline(timeout))

    async def fenced_set(
        self, key: str, value: bytes, *, resource: str | None = None, timeout: float | None = None
    ) -> None:
        """Write ``value`` under the resource's ``key`` only if this lease's fence is still the
        resource's current one and the lease is held, checked on the backend; LeaseLost if not.

        Read it back with ``coord.fenced_get(name, key, kind=...)``.
        """
        name = self.name if resource is None else resource
        if name not in self.fences:
            raise InvalidInputError(f"{name!r} is not one of this lease's resources {list(self.resources)}")
        validate_name(key, what="key")
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidInputError(f"a fenced value must be bytes, got {type(value).__name__}")
        await self._manager.fenced_set(self, name, key, bytes(value), timeout=self._manager.coord._deadline(timeout))


class LeaseRequest:
    """``await`` it for a held Lease, or ``async with`` it (acquired on enter, released on exit).

    Leaving ``async with`` after the lease was lost raises LeaseLost (unless the body
    already raised), so the guarded code can tell its work was not protected to the end.
    """

    def __init__(
        self,
        coord: Coordinator,
        kind: str,
        names: tuple[str, ...],
        slots: int,
        ttl: float,
        wait: float,
        owner: str | None = None,
        claim_errors: bool = False,
    ) -> None:
        self._coord = coord
        self.kind, self.names, self.slots, self.ttl, self.wait = kind, names, slots, ttl, wait
        self.owner = owner  #: the holder named to others (None: the coordinator's member)
        self.claim_errors = claim_errors  #: ClaimConflict, not LockTimeout, even for one resource
        self._lease: Lease | None = None

    def __repr__(self) -> str:
        return f"<LeaseRequest {self.kind}:{','.join(self.names)} slots={self.slots} ttl={self.ttl:g} wait={self.wait:g}>"

    async def _acquire(self) -> Lease:
        manager = self._coord._leases or self._coord._lease_manager()
        lease = await acquire_lease(manager, self)
        if self.owner is not None:
            lease.holder = self.owner
        if ownership.owner_of_current_task() is None:  # no agent to record it for (the hot path)
            return lease
        try:
            # Inside `async with coord.agent(...)`, the agent owns the lease: a sweep that
            # reaps the agent frees it by token. A reaped agent gets no lease at all.
            await ownership.lease_granted(self._coord, self.kind, self.names, lease.token)
        except BaseException:
            await asyncio.shield(lease.release())
            raise
        return lease

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._acquire().__await__()

    async def __aenter__(self) -> Lease:
        if self._lease is not None:
            raise InvalidInputError(f"{self!r} is already held by an `async with`; make a new request")
        self._lease = await self._acquire()
        return self._lease

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await release_on_exit(lease, exc_type)


async def release_on_exit(lease: Lease, exc_type: type[BaseException] | None) -> None:
    """Leaving an ``async with`` that held ``lease``: release it; LeaseLost if it was lost
    before the block ended without an error of its own."""
    was_lost = lease.lost.is_set()
    try:
        await lease.release()
    except BackendError as error:
        # The release task keeps retrying by token until the TTL passes; the body's
        # outcome stands.
        log.warning("release of %s not confirmed yet: %s", lease, error)
    if was_lost and exc_type is None:
        raise LeaseLost(
            f"lease on {lease.kind} {lease.name!r} (fence {lease.fence}) was lost before the "
            f"`async with` block ended: {lease.lost.reason}"
        )


# -- argument checks (synchronous, at the call) -------------------------------------------
def check_ttl(ttl: object) -> float:
    if (type(ttl) is float or type(ttl) is int) and 0 < ttl < math.inf:  # the common case, cheaply
        return ttl
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (math.isfinite(ttl) and ttl > 0):
        raise InvalidInputError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


def check_wait(wait: object) -> float:
    if (type(wait) is float or type(wait) is int) and 0 <= wait < math.inf:  # the common case, cheaply
        return wait
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not (math.isfinite(wait) and wait >= 0):
        raise InvalidInputError(f"wait must be 0 (try once) or a positive number of seconds, got {wait!r}")
    return float(wait)


def check_kind(kind: object) -> str:
    if kind in BUILTIN_KINDS:
        return kind
    if not (isinstance(kind, str) and 1 <= len(kind) <= 16 and kind.isascii() and kind.isalpha() and kind.islower()):
        raise InvalidInputError(f"kind must be {KINDS_PATTERN} (e.g. 'lock', 'port', 'claim'), got {kind!r}")
    return kind


def request(
    coord: Coordinator,
    kind: str,
    names: object,
    *,
    slots: object = 1,
    ttl: object,
    wait: object,
    owner: str | None = None,
    claim_errors: bool = False,
) -> LeaseRequest:
    """Check every argument now and build the request (nothing is sent until awaited).

    ``owner``: the holder others see in conflicts and ``lease_holders`` (default: the
    coordinator's member), e.g. a sprint id. ``claim_errors``: raise ClaimConflict
    (resource -> holder) instead of LockTimeout when a single resource stays busy."""
    kind = check_kind(kind)
    if owner is not None:
        validate_name(owner, what="holder")
    if type(names) is list and len(names) == 1:  # coord.lock() and coord.semaphore(): one name
        checked: tuple[str, ...] = (validate_name(names[0], what=kind),)
    else:
        if isinstance(names, str) or not isinstance(names, Sequence | set | frozenset | tuple | list):
            raise InvalidInputError(f"resources must be a list of names, got {type(names).__name__}")
        checked = tuple(validate_name(n, what=kind) for n in names)
        if not checked:
            raise InvalidInputError("resources must name at least one resource")
        dupes = sorted({n for n in checked if checked.count(n) > 1})
        if dupes:
            raise InvalidInputError(f"resources are listed twice: {dupes}")
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 2**31 - 1:
        raise InvalidInputError(f"slots must be a whole number from 1 to 2**31-1, got {slots!r}")
    # Positional: keyword arguments cost more, and this is the hot path.
    return LeaseRequest(coord, kind, checked, slots, check_ttl(ttl), check_wait(wait), owner, claim_errors)
