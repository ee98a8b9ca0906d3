"""Consumer groups: at-least-once delivery with acks, redelivery and dead letters.

    async with coord.consume("tasks", "workers", idle=30, max_deliveries=5) as q:
        async for d in q:
            if isinstance(d, Gap):           # pending entries deleted or trimmed before
                log.warning(d.detail)        # their ack, or the group had to be recreated
                continue
            await handle(d.message)          # raises the EnvelopeError of a bad payload
            await d.ack()

Each entry of the channel's log goes to one consumer of the group. An entry not acked
within ``idle`` seconds (its consumer crashed, hung, or is just slow) is handed again to
a consumer that asks, with ``delivery_count`` one higher; after ``max_deliveries`` it
moves to the dead-letter channel (``"<channel>:dead"`` unless named) instead, and is
logged. Acks from one loop iteration go out together (one round trip).

Deliveries read ahead (``batch``) are pending for this consumer from the moment they are
read, so process a batch well within ``idle`` or they are redelivered elsewhere too.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self, TypeAlias

import msgspec

from .drivers.message_store import Gap, GroupReader, GroupSpec
from .envelope import Message
from .errors import (
    BackendError,
    BackendUnavailable,
    EnvelopeError,
    MessagesLost,
    Timeout,
)

__all__ = ["Consumer", "Delivery", "Received"]

log = logging.getLogger("lockstep.messaging")

#: longest single wait for new entries; reclaiming idle ones happens between waits
POLL = 1.0


class Delivery(msgspec.Struct, gc=False, eq=False):
    """One entry handed to this consumer. ``message`` raises the EnvelopeError of a bad
    payload (``error`` holds it); ack it or let it go to the dead letters.

    A ``gc=False`` struct, like ``Message``: a busy consumer holds thousands of these
    between read and ack, and as ordinary objects they made the cyclic GC walk the whole
    heap every few batches (a third of a streams consumer's CPU). The one cycle through
    them (consumer -> queue -> delivery -> consumer) is broken by ``Consumer.close``."""

    _consumer: Consumer
    _item: Any
    id: str  #: the entry's position in the log
    delivery_count: int  #: 1 the first time, +1 per redelivery

    @property
    def channel(self) -> str:
        return self._consumer.spec.channel

    @property
    def group(self) -> str:
        return self._consumer.spec.group

    @property
    def message(self) -> Message:
        if isinstance(self._item, EnvelopeError):
            raise self._item
        message: Message = self._item
        return message

    @property
    def error(self) -> EnvelopeError | None:
        return self._item if isinstance(self._item, EnvelopeError) else None

    async def ack(self, *, timeout: float | None = None) -> bool:
        """Acknowledge. False when it was no longer pending: acked already (by a consumer
        it was redelivered to) or dead-lettered."""
        return await self._consumer._ack(self.id, timeout)

    def __repr__(self) -> str:
        return f"<Delivery {self.channel}/{self.group} id={self.id} count={self.delivery_count} {self._item!r}>"


Received: TypeAlias = Delivery | Gap


class Consumer:
    """See the module docs. Made by ``Coordinator.consume``; use ``async with``."""

    def __init__(self, reader: GroupReader, spec: GroupSpec, *, timeout: float, strict: bool = False) -> None:
        self.spec = spec
        self.strict = strict
        self._reader = reader
        self._timeout = timeout
        self._queue: collections.deque[Received] = collections.deque()
        self._opened = False
        self._closed = False
        self._acks: list[tuple[str, asyncio.Future[bool]]] = []
        self._ack_scheduled = False
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self.stats = {"delivered": 0, "acked": 0, "redelivered": 0, "dead_lettered": 0, "gaps": 0}

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> Self:
        """Join the group (creating it at ``start`` if missing)."""
        if not self._opened:
            gaps = await self._reader.open(timeout=self._timeout)
            self._queue.extend(gaps)
            self.stats["gaps"] += len(gaps)
            self._opened = True
        return self

    async def close(self) -> None:
        """Leave: acks in flight are sent first; unacked deliveries stay pending (and are
        redelivered to another consumer after ``idle``)."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()  # unread deliveries stay pending; and see Delivery on the GC
        if self._acks:
            self._flush_acks()
        if self._ack_tasks:
            await asyncio.gather(*self._ack_tasks, return_exceptions=True)
        await self._reader.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- reading -------------------------------------------------------------------------
    async def _fill(self, deadline: float | None) -> bool:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            if not self._opened:
                raise BackendUnavailable("the consumer is not open: use `async with` or await open()")
            wait = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if wait <= 0:
                return False
            batch = await self._reader.read(wait=wait, timeout=self._timeout + wait)
            self._queue.extend(batch.gaps)
            self.stats["gaps"] += len(batch.gaps)
            if len(batch.ids) != len(batch.items) or len(batch.counts) != len(batch.items):
                raise BackendError(f"{self.spec.channel!r}: a read returned mismatched items, ids and counts")
            self._queue.extend(map(Delivery, itertools.repeat(self), batch.items, batch.ids, batch.counts))
            self.stats["redelivered"] += len(batch.counts) - batch.counts.count(1)
            self.stats["delivered"] += len(batch.items)
            if batch.dead_lettered:
                self.stats["dead_lettered"] += len(batch.dead_lettered)
                where = self.spec.dead_letter or "nowhere (dead_letter=False)"
                log.warning(
                    "%s/%s: %d entries reached max_deliveries=%d and moved to %s: %s",
                    self.spec.channel, self.spec.group, len(batch.dead_lettered),
                    self.spec.max_deliveries, where, ", ".join(batch.dead_lettered[:10]),
                )
        return True

    def _check(self, item: Received) -> Received:
        if self.strict and isinstance(item, Gap):
            raise MessagesLost(item)
        return item

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Received:
        await self._fill(None)
        return self._check(self._queue.popleft())

    async def get(self, *, timeout: float | None = None) -> Received:
        """The next delivery (or Gap); Timeout if none within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if not await self._fill(deadline):
                raise Timeout(f"nothing to consume on {self.spec.channel!r} within {timeout:g} s")
        except StopAsyncIteration:
            raise BackendUnavailable("the consumer is closed") from None
        return self._check(self._queue.popleft())

    async def get_batch(self, max_items: int = 1000, *, timeout: float | None = None) -> list[Received]:
        """What is ready, up to ``max_items`` (waiting for at least one until ``timeout``; []
        then). With :meth:`ack_many` (or :meth:`ack_all`), the fast way through a busy channel."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if not await self._fill(deadline):
                return []
        except StopAsyncIteration:
            return []
        queue: collections.deque[Received] = self._queue
        out: list[Received] = []
        if not self.strict and len(queue) <= max_items:
            out = list(queue)
            queue.clear()
            return out
        while queue and len(out) < max_items:
            if self.strict and isinstance(queue[0], Gap):
                if not out:
                    self._check(queue.popleft())
                break
            out.append(queue.popleft())
        return out

    async def ack_many(self, deliveries: Iterable[Delivery], *, timeout: float | None = None) -> list[bool]:
        """Acknowledge many in one round trip; per delivery, whether it was still pending."""
        ids = [d.id for d in deliveries]
        results = await self._reader.ack(ids, timeout=self._timeout if timeout is None else timeout)
        self.stats["acked"] += sum(results)
        return results

    async def ack_all(self, deliveries: Iterable[Delivery], *, timeout: float | None = None) -> int:
        """Acknowledge many in one round trip and one command; how many were still pending
        (not which: use :meth:`ack_many` for that). On redis+streams one ``XACK`` with every
        id costs the server about a third of one ``XACK`` per id."""
        ids = [d.id for d in deliveries]
        acked = await self._reader.ack_count(ids, timeout=self._timeout if timeout is None else timeout)
        self.stats["acked"] += acked
        return acked

    # -- acks, coalesced per loop iteration --------------------------------------------------
    async def _ack(self, id: str, timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._acks.append((id, future))
        if not self._ack_scheduled:
            self._ack_scheduled = True
            loop.call_soon(self._flush_acks)
        wait = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(wait + 0.5):
                return await asyncio.shield(future)
        except TimeoutError:
            raise Timeout(f"ack of {id} on {self.spec.channel!r} not confirmed within {wait:g} s") from None

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        self._ack_scheduled = False
        if acks:
            task = asyncio.ensure_future(self._send_acks(acks))
            self._ack_tasks.add(task)
            task.add_done_callback(self._ack_tasks.discard)

    async def _send_acks(self, acks: list[tuple[str, asyncio.Future[bool]]]) -> None:
        # Acking twice is harmless (the second says False), so a lost reply is a Timeout
        # the caller may retry, never an OutcomeUnknown.
        try:
            results = await self._reader.ack([id for id, _ in acks], timeout=self._timeout)
        except Exception as e:  # noqa: BLE001 -- every failure goes to the acks waiting on it
            for _, future in acks:
                if not future.done():
                    future.set_exception(e)
            return
        self.stats["acked"] += sum(results)
        for (_, future), result in zip(acks, results, strict=True):
            if not future.done():
                future.set_result(result)
