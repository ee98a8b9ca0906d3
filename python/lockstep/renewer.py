"""The one renewer of a coordinator: a single asyncio task for every held lease.

Bookkeeping lives in :class:`lockstep._core.HeldLeases`: each lease may be renewed
from ttl/3 after its last renewal was *sent*, and the renewer wakes for it by ttl/3
plus a seeded jitter of up to 20 %. When it wakes it renews every lease that may be
renewed, in one round trip (the drivers batch them), so leases taken together are
renewed together and coordinators do not renew in step.

A renewal that gets no answer is tried again soon (ttl/12, 5 ms to 1 s, jittered),
but never past the lease's deadline, and each try's own deadline ends at the earliest
deadline of its batch, so the renewer is always back in time to fire ``lease.lost``
when a deadline passes. A reply saying the backend no longer has the lease fires it
at once. Should the renewer itself crash (a bug), every lease is reported lost with
the error rather than left to lapse in silence.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

from .drivers.lease_store import RenewItem
from .errors import BackendError

if TYPE_CHECKING:
    from .lease_manager import LeaseManager

__all__ = ["RENEW_WINDOW", "Renewer"]

#: A lease is renewed from ttl/3 after its last renewal was sent, plus a seeded jitter of
#: up to 20 % of that (RENEW_FRACTION and RENEW_JITTER in rust/core/src/leases/held.rs):
#: so by this fraction of its ttl at the latest.
RENEW_WINDOW = (1 / 3) * 1.2

log = logging.getLogger("lockstep.leases")


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


class Renewer:
    """Started lazily with a coordinator's first lease, stopped when it closes."""

    def __init__(self, manager: LeaseManager) -> None:
        self._manager = manager
        self._task: asyncio.Task[None] | None = None
        self._errors: dict[str, str] = {}  # token -> last renewal error, for the lost reason
        self._asleep_until: float | None = None  # while it sleeps: when it wakes up
        self._wake: asyncio.Future[None] | None = None  # while it sleeps: set to wake it
        self._alarm: asyncio.TimerHandle | None = None  # while it sleeps: sets _wake at _asleep_until

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, due_by: float) -> None:
        """A lease was added whose renewal is due by ``due_by`` (monotonic: sent + ttl/3 plus
        the most jitter): make sure the task runs and wakes by then. O(1), and when the task
        already sleeps until no later (the common case) it schedules nothing: acquire is the
        hot path, and poking the task for each lease would wake it for each acquire. (Nor
        is the sleeping task woken to move its alarm earlier: the alarm is moved.)"""
        task = self._task
        if task is None or task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lockstep-renewer")
            return
        if self._asleep_until is not None and due_by < self._asleep_until and self._wake is not None:
            self._set_alarm(self._wake, due_by)

    def _set_alarm(self, wake: asyncio.Future[None], at: float) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
        self._asleep_until = at
        self._alarm = asyncio.get_running_loop().call_later(max(0.0, at - time.monotonic()), _wake_up, wake)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: never let leases lapse in silence
            log.exception("the lease renewer failed")
            self._manager.lose_all(f"the lease renewer failed: {exc!r}")

    async def _loop(self) -> None:
        manager, held = self._manager, self._manager.held
        while True:
            now = time.monotonic()
            for token in held.expired(now):
                error = self._errors.pop(token, None)
                detail = f"the last renewal failed: {error}" if error else "no renewal was confirmed"
                manager.lose(token, f"not renewed by its deadline ({detail})")
            due = held.due(now)
            if due:
                await self._renew(due)
                continue
            wake_at = held.next_wakeup()
            wake = self._wake = asyncio.get_running_loop().create_future()
            self._asleep_until = math.inf
            if wake_at is not None:
                self._set_alarm(wake, wake_at)
            try:
                await wake
            finally:
                self._asleep_until = self._wake = None
                if self._alarm is not None:
                    self._alarm.cancel()
                    self._alarm = None

    async def _renew(self, tokens: list[str]) -> None:
        manager, held = self._manager, self._manager.held
        items, deadlines = [], []
        for token in tokens:
            lease = manager.leases.get(token)
            if lease is None:  # released meanwhile
                held.remove(token)
                continue
            items.append(RenewItem(token, lease.kind, lease.resources, lease.ttl))
            deadlines.append(lease.deadline)
        if not items:
            return
        sent_at = time.monotonic()
        timeout = max(0.001, min(manager.coord.timeout, min(deadlines) - sent_at))
        try:
            reply = await manager.store.renew(items, timeout=timeout)
        except BackendError as exc:
            for item in items:
                self._errors[item.token] = str(exc)
                held.renewal_failed(item.token, time.monotonic())
            log.debug("renewal of %d lease(s) failed: %s", len(items), exc)
            return
        manager.note_epoch(reply.epoch)
        for item, ok in zip(items, reply.held, strict=True):
            lease = manager.leases.get(item.token)
            if lease is None:
                continue
            self._errors.pop(item.token, None)
            if ok:
                manager.renewed(lease, sent_at, item.ttl)
            else:
                manager.lose(item.token, "the backend no longer has it: it expired there or was taken over")
