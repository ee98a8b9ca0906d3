"""Auto-pipelining: concurrent ``publish`` calls become one write per loop iteration.

Like ioredis's ``enableAutoPipelining``: each call encodes its data (one msgspec call,
as JSON lines: one line per item, as the items are at the call) and
queues it with a future; the first call of a loop iteration schedules a flush with
``loop.call_soon``, so every call made before the loop next runs callbacks (10,000 calls
started by ``asyncio.gather``, or calls from many tasks) goes out together. The flush
envelopes each channel's data with one Rust call (per-sender sequence numbers, ids,
timestamps), hands all channels to the store in one :meth:`~lockstep.drivers.message_store.MessageStore.send` (one round trip
on Redis), and resolves the futures with the message ids.

Sequence numbers are per sender AND channel, so a subscriber of one channel sees
1, 2, 3... and a hole means a lost message. Every (publisher, channel) pair gets its own
random id prefix (``"3f9a0c1e.4-"``): ids are unique everywhere and a restarted sender
starts a new sequence instead of looking like a gap.

Deadlines: each call keeps its own. If it passes before the flush's bytes left this
process the call raises Timeout (nothing was sent); after, OutcomeUnknown: a PUBLISH or
XADD whose reply was lost is never resent blindly.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, overload

import msgspec

from . import _core
from .drivers.message_store import (
    DEFAULT_RETENTION,
    FlushState,
    MessageStore,
    OutgoingBatch,
    Retention,
)
from .envelope import DEFAULT_MAX_SIZE
from .errors import EnvelopeError, LockstepError, OutcomeUnknown, Timeout

__all__ = ["Publisher"]

_GRACE = 0.5  # s
_ENVELOPE_ROOM = 1024  # bytes an envelope adds to its data, with room to spare
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)


class _Request:
    """One publish/publish_many call waiting for its flush, its data already encoded (as
    it was at the call): ``lines`` holds its ``count`` items as JSON lines."""

    __slots__ = ("channel", "count", "future", "ids", "lines", "single")

    def __init__(self, channel: str, lines: bytes, count: int, future: asyncio.Future[Any], single: bool) -> None:
        self.channel = channel
        self.lines = lines
        self.count = count
        self.future = future
        self.single = single  # one publish(): the future gets the id, not a list
        self.ids: Sequence[str] = ()


class MessageIds(Sequence[str]):
    """The ids of one ``publish_many``: ``f"{prefix}{seq}"`` for consecutive seqs, made on
    demand (a list of 10,000 strings nobody reads is not free)."""

    __slots__ = ("first", "prefix", "size")

    def __init__(self, prefix: str, first: int, size: int) -> None:
        self.prefix, self.first, self.size = prefix, first, size

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError("message id index out of range")
        return f"{self.prefix}{self.first + index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.prefix, self.first, self.size))

    def __repr__(self) -> str:
        return repr(list(self)) if self.size <= 5 else f"<{self.size} message ids {self[0]}..{self[-1]}>"


class _Channel:
    """A channel's sequence counter and id prefix, for this publisher."""

    __slots__ = ("next_seq", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.next_seq = 1


class Publisher:
    """Coalesces the publishes of one coordinator; see the module docs."""

    def __init__(
        self,
        store: MessageStore,
        sender: str,
        *,
        retention: Callable[[str], Retention] = lambda channel: DEFAULT_RETENTION,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self.store = store
        self.sender = sender
        self.max_size = max_size
        self._retention = retention
        self._token = secrets.token_hex(4)
        self._channels: dict[str, _Channel] = {}
        self._queue: list[_Request] = []
        self._scheduled = False
        self._deadline = math.inf  # the earliest deadline of the queued calls (monotonic)
        self._encoder = msgspec.json.Encoder()
        self._inflight: set[asyncio.Task[None]] = set()

    def submit(self, channel: str, datas: Sequence[Any], timeout: float, *, single: bool = False) -> asyncio.Future[Any]:
        """Queue ``datas`` for ``channel``; the future gets their message ids once the backend
        has them, or the error, always by the earliest deadline of the flush (+ a grace).
        The data is encoded here, by ONE msgspec call: what is published is the data as it
        was at the call (changing a dict afterwards changes nothing), and data that cannot
        be encoded fails this call alone, at once. No timer and no task per call: the flush
        keeps one deadline for all of its calls, and ``asyncio.gather`` of these futures
        creates no tasks."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not datas:
            future.set_result([])
            return future
        try:
            # One line per item: JSON holds no raw newline inside a string, so the Rust core
            # finds the items with memchr instead of scanning their JSON.
            if single:  # the seed's shape, 10,000 at once: the cheapest form and check
                item = self._encoder.encode(datas[0])
                lines = item + b"\n"
                careful = b"\n" in item
            else:
                lines = self._encoder.encode_lines(datas)
                careful = _core.count_lines(lines) != len(datas)
            if careful:  # only a msgspec.Raw holds newlines of its own
                lines = _core.json_lines(self._encoder.encode(list(datas)))
                values = _core.count_lines(lines)
                if values != len(datas):  # a msgspec.Raw that is not one JSON value
                    raise EnvelopeError(f"{len(datas)} item(s) encode as {values} JSON values (a msgspec.Raw?)")
        except _ENCODE_ERRORS as e:
            future.set_exception(EnvelopeError(f"cannot encode data for {channel!r} as JSON: {e}"))
            return future
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        self._queue.append(_Request(channel, lines, len(datas), future, single))
        deadline = time.monotonic() + timeout
        self._deadline = min(self._deadline, deadline)
        return future

    def _channel(self, name: str) -> _Channel:
        state = self._channels.get(name)
        if state is None:
            state = self._channels[name] = _Channel(f"{self._token}.{len(self._channels)}-")
        return state

    def _flush(self) -> None:
        requests, self._queue = self._queue, []
        flush_state, timeout = FlushState(), max(self._deadline - time.monotonic(), 0.001)
        self._scheduled, self._deadline = False, math.inf
        by_channel: dict[str, list[_Request]] = {}
        for request in requests:
            by_channel.setdefault(request.channel, []).append(request)
        batches = []
        now = time.time()
        for channel, group in by_channel.items():
            batch = self._batch(channel, group, now)
            if batch is not None:
                batches.append(batch)
        waiting = [r for group in by_channel.values() for r in group if not r.future.done()]
        if not batches:
            return
        task = asyncio.ensure_future(self._send(batches, waiting, flush_state, timeout))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _batch(self, channel: str, group: list[_Request], now: float) -> OutgoingBatch | None:
        """One channel's requests as one batch: their lines joined into one, enveloped
        later by the Rust core. A request whose data would make an envelope over the size
        limit fails alone; the others keep a gap-free sequence."""
        state = self._channel(channel)
        # Only a call whose own array passes the limit can hold an item that does: a big
        # flush of small calls (10,000 publishes at once) is never scanned for one.
        suspects = [r for r in group if self._may_be_too_large(r)]
        if suspects:
            failed = self._too_large(suspects, state, now)
            group = [r for r in group if r not in failed]
        if not group:
            return None
        lines = group[0].lines if len(group) == 1 else b"".join([r.lines for r in group])
        seq = state.next_seq
        for request in group:
            request.ids = MessageIds(state.prefix, seq, request.count)
            seq += request.count
        count = seq - state.next_seq
        batch = OutgoingBatch(
            channel, lines, count, self.sender, state.next_seq, now, state.prefix, self._retention(channel), self.max_size
        )
        state.next_seq = seq
        return batch

    def _too_large(self, suspects: list[_Request], state: _Channel, now: float) -> list[_Request]:
        """The careful path: each suspect's real envelopes; a call with an item over the
        size limit fails (MessageTooLargeError names the item and its size). Returns those."""
        failed = []
        for request in suspects:
            try:
                _core.encode_lines(
                    request.lines, request.count, self.sender, state.next_seq, now, state.prefix, self.max_size
                )
            except LockstepError as e:
                request.future.set_exception(e)
                failed.append(request)
        return failed

    def _may_be_too_large(self, request: _Request) -> bool:
        """Whether an item of ``request`` comes near the size limit (only then is it scanned)."""
        room = self.max_size - _ENVELOPE_ROOM
        return len(request.lines) > room and _core.longest_line(request.lines) > room

    async def _send(
        self, batches: list[OutgoingBatch], requests: list[_Request], flush_state: FlushState, timeout: float
    ) -> None:
        try:
            try:
                async with asyncio.timeout(timeout + _GRACE):
                    await self.store.send(batches, flush=flush_state, timeout=timeout)
            except TimeoutError:
                channels = ", ".join(repr(b.channel) for b in batches)
                if flush_state.sent:
                    raise OutcomeUnknown(
                        f"publish to {channels} was sent but not confirmed within {timeout:g} s; "
                        "it may or may not have been delivered"
                    ) from None
                raise Timeout(
                    f"publish to {channels} was not sent within {timeout:g} s; nothing was published"
                ) from None
        except BaseException as e:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for request in requests:
            if not request.future.done():
                request.future.set_result(request.ids[0] if request.single else request.ids)

    async def close(self) -> None:
        """Let flushes in flight finish (each within its own deadline)."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)


def items_list(items: Iterable[Any]) -> list[Any] | tuple[Any, ...]:
    """``publish_many``'s items as a sequence (a str or bytes is one item, not many). A list
    or tuple is used as it is: the call encodes it before it returns (see ``submit``)."""
    if isinstance(items, str | bytes | bytearray | dict):
        raise EnvelopeError(
            f"publish_many takes an iterable of items, got a single {type(items).__name__}; use publish()"
        )
    return items if isinstance(items, list | tuple) else list(items)
