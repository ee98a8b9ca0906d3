"""A subscription: an async iterator of messages, with every loss shown where it happened.

    async with coord.subscribe("sprint:coordination") as sub:
        async for item in sub:
            match item:
                case Message(): ...            # item.data, item.sender, item.seq ...
                case Gap(): ...                # what was lost, why, and which seqs
                case EnvelopeError(): ...      # one bad payload; the others still arrive

Gaps are items of the stream, not a counter to poll: a loop written against
``Message`` alone fails type checking (and at run time on ``item.data``) the first
time one arrives. ``strict=True`` raises :class:`~lockstep.errors.MessagesLost` (and
the EnvelopeError) instead of yielding them; iterating again continues after it.

How gaps are found (RELIABILITY.md promise 4):

* an interruption (disconnect, eviction, server restart) is reported by the feed when
  it resubscribes; its Gap is held until the first read after that (at most
  ``GAP_SETTLE`` seconds), so it sits exactly where the hole is and carries, for each
  sender heard from in that read, the exact sequence numbers that were missed;
* any later jump in a sender's sequence numbers is a Gap of reason ``"sequence"``;
* a subscriber that falls ``max_buffer`` items behind has the newest messages dropped
  here (never blocking the publisher): one ``"overflow"`` Gap lists exactly what;
* durable feeds report entries trimmed or deleted before they were read.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeAlias

from .drivers.message_store import Feed, Gap, GapReason, Inbox
from .envelope import Message
from .errors import (
    BackendUnavailable,
    EnvelopeError,
    InvalidInputError,
    MessagesLost,
    Timeout,
)

__all__ = ["GAP_SETTLE", "Item", "Subscription", "ranges"]

#: seconds an interruption's Gap waits for the first read after resubscribing
GAP_SETTLE = 0.25

Item: TypeAlias = Message | Gap | EnvelopeError


def ranges(seqs: list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted seqs as inclusive ranges: [1, 2, 3, 7] -> ((1, 3), (7, 7))."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return tuple(out)


class _Interruption:
    """An interruption reported by the feed, waiting to become one Gap."""

    __slots__ = ("detail", "reason", "since", "timer", "until")

    def __init__(self, reason: GapReason, detail: str, since: float) -> None:
        self.reason = reason
        self.detail = detail
        self.since = since
        self.until: float | None = None
        self.timer: asyncio.TimerHandle | None = None


class Subscription(Inbox):
    """See the module docs. Made by ``Coordinator.subscribe``; use ``async with``."""

    def __init__(
        self,
        open_feed: Callable[[Inbox], Feed],
        channels: tuple[str, ...],
        *,
        strict: bool,
        max_buffer: int,
        timeout: float,
    ) -> None:
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise InvalidInputError(f"max_buffer must be a positive int, got {max_buffer!r}")
        self.channels = channels
        self.strict = strict
        self.max_buffer = max_buffer
        self._open_feed = open_feed
        self._timeout = timeout
        self._feed: Feed | None = None
        self._queue: collections.deque[Item] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._room_waiter: asyncio.Future[None] | None = None
        self._interruption: _Interruption | None = None
        self._error: BaseException | None = None
        self._closed = False
        #: counters for dashboards; gaps are reported as items, these only sum them up
        self.stats = {"delivered": 0, "gaps": 0, "dropped": 0}

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> Self:
        """Subscribe; returns once established (what is published afterwards arrives)."""
        if self._feed is None:
            feed = self._open_feed(self)
            try:
                await feed.start(timeout=self._timeout)
            except BaseException:
                await feed.close()
                raise
            self._feed = feed
        return self

    async def close(self) -> None:
        """Unsubscribe. Iteration then ends once the queued items are taken. Idempotent."""
        self._closed = True
        if self._interruption is not None and self._interruption.timer is not None:
            self._interruption.timer.cancel()
        feed, self._feed = self._feed, None
        self._wake()
        if feed is not None:
            await feed.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """False while the feed is interrupted (a Gap will follow when it resumes)."""
        return self._interruption is None or self._interruption.until is not None

    # -- the Inbox side: called by the feed, on this loop -------------------------------
    def put(self, items: list[Any], jumps: list[tuple[int, str, int, int]]) -> None:
        if self._closed:
            return
        pending = self._interruption
        if pending is not None and pending.until is not None:
            self._emit(self._interruption_gap(pending, jumps))
            jumps = []
        room = self.max_buffer - len(self._queue)
        if len(items) > room:
            dropped = items[max(room, 0) :]
            items = items[: max(room, 0)]
            jumps = [j for j in jumps if j[0] < len(items)]
            self._overflow(dropped)
        queue = self._queue
        if jumps:
            start = 0
            for index, sender, first, last in jumps:
                queue.extend(items[start:index])
                self._append_gap(
                    Gap(
                        reason="sequence",
                        detail=f"{last - first + 1} message(s) from {sender} never arrived "
                        f"(seq {first}..{last})",
                        channels=self.channels,
                        missed={sender: ((first, last),)},
                        count=last - first + 1,
                    )
                )
                start = index
            queue.extend(items[start:])
        else:
            queue.extend(items)
        self.stats["delivered"] += len(items)
        self._wake()

    def interrupted(self, reason: GapReason, detail: str) -> None:
        if self._closed:
            return
        if self._interruption is None:
            self._interruption = _Interruption(reason, detail, time.time())
        else:  # still down, or down again before the last Gap went out: one gap, latest cause
            self._interruption.reason, self._interruption.detail = reason, detail
            self._interruption.until = None

    def resumed(self, reason: GapReason, detail: str) -> None:
        pending = self._interruption
        if self._closed or pending is None:
            return
        pending.reason, pending.detail, pending.until = reason, detail, time.time()
        if pending.timer is None:
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(GAP_SETTLE, self._settle, pending)

    def _settle(self, pending: _Interruption) -> None:
        if self._interruption is pending and not self._closed:
            self._emit(self._interruption_gap(pending, []))

    def lost(self, gap: Gap) -> None:
        if not self._closed:
            self._emit(gap)

    def failed(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def has_room(self) -> bool:
        return len(self._queue) < self.max_buffer

    def space(self) -> int:
        return max(self.max_buffer - len(self._queue), 0)

    async def room(self) -> None:
        while not self.has_room() and not self._closed:
            self._room_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._room_waiter
            finally:
                self._room_waiter = None

    # -- gaps --------------------------------------------------------------------------
    def _interruption_gap(self, pending: _Interruption, jumps: list[tuple[int, str, int, int]]) -> Gap:
        if pending.timer is not None:
            pending.timer.cancel()
        self._interruption = None
        missed: dict[str, list[tuple[int, int]]] = {}
        for _, sender, first, last in jumps:
            missed.setdefault(sender, []).append((first, last))
        known = sum(last - first + 1 for _, _, first, last in jumps)
        heard = f"; from the senders heard since, {known} message(s) are known missing" if jumps else ""
        return Gap(
            reason=pending.reason,
            detail=f"{pending.detail}; messages published meanwhile may be lost{heard}",
            channels=self.channels,
            missed={s: tuple(r) for s, r in missed.items()},
            count=None,
            since=pending.since,
            until=pending.until,
        )

    def _overflow(self, dropped: list[Any]) -> None:
        seqs: dict[str, list[int]] = {}
        for item in dropped:
            if isinstance(item, Message) and item.sender is not None and item.seq is not None:
                seqs.setdefault(item.sender, []).append(item.seq)
        missed = {sender: ranges(s) for sender, s in seqs.items()}
        count = len(dropped)
        last = self._queue[-1] if self._queue else None
        if isinstance(last, Gap) and last.reason == "overflow":  # one gap per run of drops
            for sender, r in last.missed.items():
                missed[sender] = ranges([*(n for a, b in r for n in range(a, b + 1)), *seqs.get(sender, [])])
            count += last.count or 0
            self._queue.pop()
            self.stats["gaps"] -= 1
        self.stats["dropped"] += len(dropped)
        self._append_gap(
            Gap(
                reason="overflow",
                detail=f"this subscription fell {self.max_buffer} items behind (max_buffer): "
                f"{count} newest message(s) dropped here; the publisher was not slowed",
                channels=self.channels,
                missed=missed,
                count=count,
                since=time.time(),
            )
        )

    def _append_gap(self, gap: Gap) -> None:
        self._queue.append(gap)
        self.stats["gaps"] += 1

    def _emit(self, gap: Gap) -> None:
        self._append_gap(gap)
        self._wake()

    # -- the consumer side --------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check(self, item: Item) -> Item:
        if self.strict:
            if isinstance(item, Gap):
                raise MessagesLost(item)
            if isinstance(item, EnvelopeError):
                raise item
        return item

    def _took(self) -> None:
        waiter = self._room_waiter
        if waiter is not None and not waiter.done() and len(self._queue) <= self.max_buffer // 2:
            waiter.set_result(None)

    async def _wait(self, deadline: float | None) -> bool:
        """Wait for items; False at the deadline. Raises the feed's error, or ends iteration."""
        while not self._queue:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            if self._feed is None:
                raise BackendUnavailable("the subscription is not open: use `async with` or await open()")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if deadline is None:
                    await self._waiter
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    try:
                        async with asyncio.timeout(left):
                            await self._waiter
                    except TimeoutError:
                        return bool(self._queue)
            finally:
                self._waiter = None
        return True

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        if not self._queue:
            await self._wait(None)
        item = self._queue.popleft()
        self._took()
        return self._check(item)

    async def get(self, *, timeout: float | None = None) -> Item:
        """The next item; Timeout if none arrives within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            ready = await self._wait(deadline)
        except StopAsyncIteration:
            raise BackendUnavailable("the subscription is closed") from None
        if not ready:
            raise Timeout(f"no message on {', '.join(self.channels)} within {timeout:g} s")
        item = self._queue.popleft()
        self._took()
        return self._check(item)

    async def get_batch(self, max_items: int = 1000, *, timeout: float | None = None) -> list[Item]:
        """Every queued item up to ``max_items`` (waiting for at least one until ``timeout``;
        [] then). The fast way to drain a busy subscription. In strict mode the batch stops
        before a Gap or bad message; the next call raises it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if not await self._wait(deadline):
                return []
        except StopAsyncIteration:
            return []
        queue = self._queue
        if not self.strict and len(queue) <= max_items:
            out = list(queue)
            queue.clear()
        else:
            out = []
            while queue and len(out) < max_items:
                if self.strict and isinstance(queue[0], Gap | EnvelopeError):
                    if not out:
                        self._check(queue.popleft())
                    break
                out.append(queue.popleft())
        self._took()
        return out
