"""The lease machinery of one coordinator: its store, its held leases, its releases.

:class:`LeaseManager` is created with a coordinator's first lease (see
:mod:`lockstep.leases` for the public objects). It turns grants into
:class:`~lockstep.leases.Lease` objects (refusing a fence that went backwards), keeps
the :class:`lockstep._core.HeldLeases` bookkeeping the :class:`~lockstep.renewer.Renewer`
works from, reports leases lost (also when the backend restarted), and releases:
in the caller's task when it can (one round trip), in a background task by token when
the caller is cancelled or no answer comes, until the backend confirms or the TTL passed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _core
from .drivers.lease_store import Grant, LeaseStore, RenewItem, resource_id
from .errors import BackendError, DataLossDetected, LeaseLost, OutcomeUnknown
from .leases import Lease
from .renewer import RENEW_WINDOW, Renewer

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ["LeaseManager"]


def _settle(lease: Lease, held: bool) -> None:
    """The release of ``lease`` is over: keep its outcome (the first one) for later callers."""
    if lease._result is None:
        lease._result = held
    if lease._outcome is not None and not lease._outcome.done():
        lease._outcome.set_result(lease._result)

log = logging.getLogger("lockstep.leases")

MIN_CALL = 0.05  # s: the shortest deadline a backend call is given


class LeaseManager:
    """The lease machinery of one coordinator: its store, its held leases, its renewer."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.session = secrets.token_hex(8)  #: this coordinator's instance id; tokens start with it
        self.held = _core.HeldLeases(secrets.randbits(63))
        self.leases: dict[str, Lease] = {}
        self.renewer = Renewer(self)
        self.epoch: str | None = None
        self.closed = False
        self.waiting: set[str] = set()  # tokens of acquires in progress
        self._store: LeaseStore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._random, self._random_at = "", 0  # hex digits for the next tokens, and the next unused

    @property
    def store(self) -> LeaseStore:
        if self._store is None:
            self._store = self.coord.driver.lease_store(
                keys=self.coord.keys, session=self.session, owner=self.coord.member
            )
            self.epoch = self._store.epoch
        return self._store

    def new_token(self) -> str:
        """``<session>.<32 random hex digits>``; the randomness is read 64 tokens at a time."""
        at = self._random_at
        if at >= len(self._random):
            self._random, at = os.urandom(16 * 64).hex(), 0
        self._random_at = at + 32
        return f"{self.session}.{self._random[at : at + 32]}"

    # -- granted leases ----------------------------------------------------------------
    def floors(self, kind: str, names: Sequence[str]) -> tuple[int, ...]:
        """Per resource, the highest fence seen so far (0: none), sent with an acquire."""
        if len(names) == 1:
            return (self.held.highest_fence(f"{kind}:{names[0]}") or 0,)
        return tuple(self.held.highest_fence(resource_id(kind, n)) or 0 for n in names)

    def adopt(
        self,
        token: str,
        kind: str,
        names: tuple[str, ...],
        grant: Grant,
        ttl: float,
        sent_at: float,
        floors: Sequence[int],
        first_ttl: float | None = None,
    ) -> Lease:
        """Turn a grant into a held, renewed Lease; a fence that went backwards is refused.

        ``floors``: the highest fences seen when the request was sent. ``first_ttl``: the
        grant lives this long from ``sent_at`` before its first renewal (a hand-over),
        instead of ``ttl``.
        """
        ids = [f"{kind}:{names[0]}"] if len(names) == 1 else [resource_id(kind, n) for n in names]
        problem = None
        if grant.raised:
            problem = f"the fence counter of {kind} {', '.join(grant.raised)} was below a fence seen before"
        else:
            try:
                if len(ids) == 1:  # the common case, without the loop
                    self.held.observe_fence(ids[0], grant.fences[0], floors[0])
                else:
                    for rid, fence, floor in zip(ids, grant.fences, floors, strict=True):
                        self.held.observe_fence(rid, fence, floor)
            except DataLossDetected as exc:
                problem = str(exc)
        if problem is not None:
            reason = f"the backend went backwards ({problem}): it lost acknowledged writes"
            self.lose_all(reason)
            self.spawn(self._release_by_token(token, kind, names, time.monotonic() + ttl))
            raise DataLossDetected(f"{reason}; this grant was released; acquire again for a fresh fence")
        deadline = self.held.insert(token, ids, list(grant.fences), first_ttl or ttl, sent_at)
        # Positional: keyword arguments cost more, and this is the hot path.
        lease = Lease(self, token, kind, names, grant.fences, ttl, deadline, time.monotonic() + ttl, self.epoch)
        self.leases[token] = lease
        self.renewer.start(sent_at + (first_ttl or ttl) * RENEW_WINDOW)
        return lease

    def renewed(self, lease: Lease, sent_at: float, ttl: float) -> None:
        deadline = self.held.renewed(lease.token, sent_at, ttl)
        if deadline is not None:
            lease.ttl, lease.deadline = ttl, deadline
            lease.expires_by = time.monotonic() + ttl

    def lose(self, token: str, reason: str) -> None:
        """The lease is gone: fire ``lost``, stop renewing it, release it by token anyway."""
        self.held.remove(token)
        lease = self.leases.get(token)
        if lease is not None:
            lease.lost.fire(reason)
            self.begin_release(lease)

    def lose_all(self, reason: str, *, epoch_other_than: str | None = None) -> None:
        for token, lease in list(self.leases.items()):
            if epoch_other_than is None or lease.epoch != epoch_other_than:
                self.lose(token, reason)

    def note_epoch(self, epoch: str | None) -> None:
        """A reply carried the backend's incarnation: if it changed, earlier leases are lost."""
        if epoch is None or epoch == self.epoch:
            return
        previous, self.epoch = self.epoch, epoch
        if previous is not None:
            self.lose_all(
                f"the backend restarted (run_id {previous[:12]}... -> {epoch[:12]}...): its lease "
                "state may be older than what was acknowledged",
                epoch_other_than=epoch,
            )

    # -- operations on a lease ---------------------------------------------------------
    async def extend(self, lease: Lease, ttl: float, *, timeout: float) -> None:
        sent_at = time.monotonic()
        reply = await self.store.renew([RenewItem(lease.token, lease.kind, lease.resources, ttl)], timeout=timeout)
        self.note_epoch(reply.epoch)
        if not reply.held[0]:
            self.lose(lease.token, "the backend no longer has it (expired or taken over)")
            lease.check()
        self.renewed(lease, sent_at, ttl)
        lease.check()

    async def fenced_set(self, lease: Lease, name: str, key: str, value: bytes, *, timeout: float) -> None:
        ok = await self.store.fenced_set(
            lease.token, lease.kind, name, lease.fences[name], key, value, timeout=timeout
        )
        if not ok:
            reason = f"a fenced write was refused: fence {lease.fences[name]} is no longer current"
            self.lose(lease.token, reason)
            raise LeaseLost(f"lease on {lease.kind} {name!r} (fence {lease.fences[name]}): {reason}")

    async def release(self, lease: Lease, timeout: float) -> bool:
        """Release ``lease`` in this task (one round trip, the common case); should that be
        cancelled or get no answer, a background task finishes the job by token.

        No future or task is made on that common path: only a second caller (or the
        background path) needs one to wait on, and makes it then."""
        if lease.released:
            return await self._await_outcome(lease, timeout)
        self._stop_holding(lease)
        started = time.monotonic()
        try:
            held = await self.store.release(
                lease.token, lease.kind, lease.resources, timeout=min(timeout, self.coord.timeout)
            )
        except asyncio.CancelledError:
            self._finish_in_background(lease)
            raise
        except BackendError:
            self._finish_in_background(lease)
            return await self._await_outcome(lease, max(0.0, timeout - (time.monotonic() - started)))
        _settle(lease, held)
        return held

    async def _await_outcome(self, lease: Lease, timeout: float) -> bool:
        """The outcome of the release already started on ``lease``, within ``timeout``."""
        if lease._result is not None:
            return lease._result
        if lease._outcome is None:
            lease._outcome = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(lease._outcome), timeout)
        except TimeoutError:
            raise OutcomeUnknown(
                f"release of {lease.kind} {lease.name!r} not confirmed within {timeout:g} s; it is retried "
                "in the background until the backend confirms or the lease's TTL passes"
            ) from None

    def _stop_holding(self, lease: Lease) -> None:
        lease.released = True
        self.held.remove(lease.token)
        self.leases.pop(lease.token, None)

    def begin_release(self, lease: Lease) -> None:
        """Start (once) releasing ``lease`` in the background."""
        if not lease.released:
            self._stop_holding(lease)
            self._finish_in_background(lease)

    def _finish_in_background(self, lease: Lease) -> None:
        task = self.spawn(self._release_by_token(lease.token, lease.kind, lease.resources, lease.expires_by))

        def settle(done: asyncio.Task[bool]) -> None:
            ok = not done.cancelled() and done.exception() is None
            _settle(lease, done.result() if ok else False)

        task.add_done_callback(settle)

    async def _release_by_token(self, token: str, kind: str, names: Sequence[str], until: float) -> bool:
        """Release by token (idempotent), retrying until confirmed or the TTL passed."""
        attempt = 0
        while True:
            left = until - time.monotonic()
            try:
                return await self.store.release(token, kind, names, timeout=max(MIN_CALL, min(self.coord.timeout, left)))
            except BackendError as exc:
                if time.monotonic() >= until:
                    log.warning("gave up releasing %s %s: its TTL has passed (%s)", kind, list(names), exc)
                    return False
                await asyncio.sleep(min(0.02 * 2**attempt, 1.0, max(0.0, until - time.monotonic())))
                attempt = min(attempt + 1, 10)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Release every held lease (bounded by the coordinator's timeout), stop the renewer."""
        if self.closed:
            return
        self.closed = True
        give_up = time.monotonic() + self.coord.timeout
        if self._store is not None:
            self._store.wake_all()  # waiters see `closed`, leave their queues and raise
        while self.waiting and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        await self.renewer.stop()
        for lease in list(self.leases.values()):
            self.begin_release(lease)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(0.05, give_up - time.monotonic()))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self._store is not None:
            await self._store.close()
