"""Wake-ups for waits: one subscription per coordinator, dispatched to local waiters by topic.

Signals, ACKs and barrier arrivals are written to the backend first; then a short
message naming what changed (a *topic*, e.g. ``"sig sprint-1 interface_ready"``) is
published on the namespace's channel :data:`WAKE_CHANNEL` through lockstep's own
messaging (:mod:`lockstep.messaging`), on every driver. Each coordinator holds ONE
subscription to that channel, whatever the number of its waiters, and sets the event
of each waiter watching that topic.

A wake-up is only a hint (pub/sub is at-most-once): the state on the backend is the
truth. So a waiter (RELIABILITY.md promise 3):

1. registers its :class:`Watch` (synchronously),
2. makes sure the subscription is established (:meth:`WakeHub.ready`),
3. only then checks the backend, and
4. waits on its watch for at most one poll interval before checking again.

A change that lands after step 2 sets the watch even if it lands between the check
and the wait, so it is never missed; a wake-up lost in transit (a disconnect, a gap)
costs at most one poll interval. A gap or a foreign message on the channel wakes
every waiter, which then re-checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from .envelope import Message
from .errors import LockstepError

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .subscription import Subscription

__all__ = ["WAKE_CHANNEL", "WakeHub", "Watch"]

log = logging.getLogger("lockstep.wakeups")

WAKE_CHANNEL = "lockstep:wake"
WAKE_RETENTION = 1000  # messages kept on durable drivers: wake-ups are worthless once read
REOPEN_PAUSE = 1.0  # s between attempts to get the subscription back after a failure


class Watch:
    """One waiter's interest in one topic; use as a context manager."""

    __slots__ = ("_hub", "event", "topic")

    def __init__(self, hub: WakeHub, topic: str) -> None:
        self._hub = hub
        self.topic = topic
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Until woken (True) or ``timeout`` seconds (False); the wake-up is consumed."""
        if not self.event.is_set():
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self.event.wait()
            except TimeoutError:
                return False
        self.event.clear()
        return True

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._hub._forget(self)


class WakeHub:
    """The wake-up subscription of one coordinator (see the module docstring)."""

    def __init__(self, coord: Coordinator) -> None:
        self._coord = coord
        self._watches: dict[str, set[Watch]] = {}
        self._sub: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[Subscription] | None = None
        self._retry_at = 0.0
        self._closed = False
        coord.bind_channel(WAKE_CHANNEL, max_len=WAKE_RETENTION)
        self.stats = {"wakeups": 0, "broadcasts": 0, "published": 0, "publish_failures": 0}

    # -- waiters -------------------------------------------------------------------------
    def watch(self, topic: str) -> Watch:
        """Register interest in ``topic`` now (before the caller's first check)."""
        watch = Watch(self, topic)
        self._watches.setdefault(topic, set()).add(watch)
        return watch

    def _forget(self, watch: Watch) -> None:
        group = self._watches.get(watch.topic)
        if group is not None:
            group.discard(watch)
            if not group:
                del self._watches[watch.topic]

    def _fire(self, topic: str) -> None:
        for watch in self._watches.get(topic, ()):
            watch.event.set()
            self.stats["wakeups"] += 1

    def _fire_all(self) -> None:
        self.stats["broadcasts"] += 1
        for group in self._watches.values():
            for watch in group:
                watch.event.set()

    # -- the subscription ------------------------------------------------------------------
    @property
    def subscribed(self) -> bool:
        return self._sub is not None

    async def ready(self, timeout: float) -> bool:
        """Make sure the subscription is established; False if it cannot be within ``timeout``
        (the caller then relies on polling alone)."""
        if self._sub is not None or self._closed:
            return self._sub is not None
        if self._opening is None:
            if time.monotonic() < self._retry_at:
                return False
            self._opening = asyncio.ensure_future(self._open())
        opening = self._opening
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await asyncio.shield(opening)
        except TimeoutError:
            return False
        except Exception as exc:  # polling alone still finds every change
            log.warning("wake-up subscription unavailable, polling only: %s", exc)
            return False
        return self._sub is not None

    async def _open(self) -> Subscription:
        try:
            sub = self._coord.subscribe(WAKE_CHANNEL, timeout=self._coord.timeout)
            await sub.open()
        except BaseException as exc:
            self._retry_at = time.monotonic() + REOPEN_PAUSE
            log.debug("wake-up subscription failed: %s", exc)
            raise
        finally:
            self._opening = None
        if self._closed:
            await sub.close()
            return sub
        self._sub = sub
        self._reader = asyncio.ensure_future(self._read(sub))
        return sub

    async def _read(self, sub: Subscription) -> None:
        try:
            while True:
                batch = await sub.get_batch(1000)
                for item in batch:
                    if isinstance(item, Message) and isinstance(item.data, str):
                        self._fire(item.data)
                    else:  # a gap, a bad or foreign message: anything may have changed
                        self._fire_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the subscription failed: waiters poll until it is back
            log.debug("wake-up subscription ended: %s", exc)
        finally:
            if self._sub is sub:
                self._sub = None
                self._retry_at = time.monotonic() + REOPEN_PAUSE
            self._fire_all()
            with contextlib.suppress(Exception):
                await sub.close()

    # -- the publishing side -----------------------------------------------------------------
    async def notify(self, topic: str, *, timeout: float) -> None:
        """Tell every coordinator of the namespace that ``topic`` changed. Failures are only
        counted: the change is already on the backend and waiters poll."""
        self._fire(topic)  # this coordinator's own waiters need no round trip
        try:
            await self._coord.publish(WAKE_CHANNEL, topic, timeout=max(0.001, timeout))
            self.stats["published"] += 1
        except LockstepError as exc:
            self.stats["publish_failures"] += 1
            log.debug("wake-up for %s not published: %s", topic, exc)

    async def close(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.close()
        self._fire_all()
