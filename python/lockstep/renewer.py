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

__all__ = ["Renewer"]

log = logging.getLogger("lockstep.leases")


class Renewer:
    """Started lazily with a coordinator's first lease, stopped when it closes."""

    def __init__(self, manager: LeaseManager) -> None:
        self._manager = manager
        self._task: asyncio.Task[None] | None = None
        self._poke: asyncio.Event | None = None
        self._errors: dict[str, str] = {}  # token -> last renewal error, for the lost reason
        self._asleep_until: float | None = None  # while it sleeps: when it wakes up

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Make sure the task runs and wakes in time for the schedule (a lease was added)."""
        if self._poke is None:
            self._poke = asyncio.Event()
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lockstep-renewer")
            return
        wake_at = self._manager.held.next_wakeup()
        if self._asleep_until is not None and wake_at is not None and wake_at < self._asleep_until:
            self._poke.set()

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
        assert self._poke is not None
        while True:
            self._poke.clear()
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
            self._asleep_until = math.inf if wake_at is None else wake_at
            try:
                async with asyncio.timeout(None if wake_at is None else max(0.0, wake_at - time.monotonic())):
                    await self._poke.wait()
            except TimeoutError:
                pass
            finally:
                self._asleep_until = None

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
