"""Messaging of the memory driver: the same semantics as the other drivers, in one process.

Each memory space (``memory://NAME``) keeps, per channel, a log of envelopes with
increasing ids, retained per the channel's :class:`~.message_store.Retention` (never
dropping an entry still pending in a consumer group, or unread by one). Subscribers get
what is published after they subscribe (pushed to their event loop; coordinators in other
threads work too), or replay from a log position; consumer groups work as on Streams:
pending entries, ack, redelivery after ``idle``, dead letters after ``max_deliveries``.

Gaps here come from a subscriber falling ``max_buffer`` behind (dropped, reported
exactly) and from replays that start before what retention kept.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Sequence
from typing import Any

from .._core import MessageDecoder
from ..errors import InvalidInputError
from ..keys import Keyspace
from .message_store import (
    Feed,
    FlushState,
    Gap,
    GroupBatch,
    GroupInfo,
    GroupReader,
    GroupSpec,
    Inbox,
    MessageStore,
    OutgoingBatch,
    Retention,
)

__all__ = ["MemoryMessageStore", "parse_position"]

Post = tuple["_MemoryFeed", str, list[bytes], list[int]]


def parse_position(text: str, *, driver: str) -> int:
    """A log position given as ``from_id``: "0" (everything retained) or an id read earlier."""
    if text == "$":
        return -1
    if text.isascii() and text.isdigit():
        return int(text)
    raise InvalidInputError(f"{driver}: from_id must be '0', '$' or a message position (digits), got {text!r}")


class _Group:
    __slots__ = ("last_id", "pending")

    def __init__(self, last_id: int) -> None:
        self.last_id = last_id
        #: id -> [consumer, delivered_at (monotonic), delivery count]; in id order
        self.pending: dict[int, list[Any]] = {}


class _Log:
    """One channel's log. Every access holds the space's lock."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, bytes, float]] = []  # (id, envelope, unix ts); live from head
        self.head = 0
        self.next_id = 1
        self.trimmed_through = 0
        self.feeds: set[_MemoryFeed] = set()
        self.groups: dict[str, _Group] = {}
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def append(self, envelopes: list[bytes], now: float) -> list[int]:
        first = self.next_id
        ids = list(range(first, first + len(envelopes)))
        self.entries.extend(zip(ids, envelopes, [now] * len(envelopes), strict=True))
        self.next_id += len(envelopes)
        return ids

    def after(self, position: int, limit: int | None = None) -> list[tuple[int, bytes, float]]:
        start = bisect.bisect_right(self.entries, position, lo=self.head, key=lambda e: e[0])
        end = len(self.entries) if limit is None else min(len(self.entries), start + limit)
        return self.entries[start:end]

    def get(self, id: int) -> bytes | None:
        index = bisect.bisect_left(self.entries, id, lo=self.head, key=lambda e: e[0])
        if index < len(self.entries) and self.entries[index][0] == id:
            return self.entries[index][1]
        return None

    def trim(self, retention: Retention, now: float) -> None:
        """Drop the oldest entries past the limits, never one a group still needs."""
        keep_from = min(
            (next(iter(g.pending)) if g.pending else g.last_id + 1 for g in self.groups.values()),
            default=self.next_id,
        )
        too_old = None if retention.max_age is None else now - retention.max_age
        while self.head < len(self.entries):
            id, _, ts = self.entries[self.head]
            over = retention.max_len is not None and len(self.entries) - self.head > retention.max_len
            if id >= keep_from or not (over or (too_old is not None and ts < too_old)):
                break
            self.trimmed_through = id
            self.head += 1
        if self.head > 1024 and self.head * 2 > len(self.entries):
            del self.entries[: self.head]
            self.head = 0

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Space:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: dict[str, _Log] = {}

    def log(self, channel: str) -> _Log:
        found = self.logs.get(channel)
        if found is None:
            found = self.logs[channel] = _Log()
        return found


_SPACES: dict[str, _Space] = {}
_SPACES_LOCK = threading.Lock()


def _space(name: str) -> _Space:
    with _SPACES_LOCK:
        return _SPACES.setdefault(name, _Space())


def _post(posts: list[Post]) -> None:
    for feed, channel, envelopes, ids in posts:
        feed.post(channel, envelopes, ids)


class _MemoryFeed(Feed):
    def __init__(
        self, space: _Space, wires: dict[str, str], inbox: Inbox, decoder: MessageDecoder, from_id: str | None
    ) -> None:
        super().__init__(wires, inbox, decoder)
        self.space = space
        self.channels = tuple(wires)  # the log names
        self.start_at = None if from_id is None else parse_position(from_id, driver="memory")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.replaying: list[tuple[str, list[bytes], list[int]]] | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, *, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        backlog: list[tuple[int, str, bytes]] = []
        gaps = []
        with self.space.lock:
            for channel in self.channels:
                log = self.space.log(channel)
                log.feeds.add(self)
                if self.start_at is not None and self.start_at >= 0:
                    if log.trimmed_through > self.start_at:
                        gaps.append((channel, log.trimmed_through - self.start_at))
                    backlog += [(id, channel, env) for id, env, _ in log.after(self.start_at)]
            if backlog:
                self.replaying = []
        for wire, count in gaps:
            channel = self.wires[wire]
            self.inbox.lost(
                Gap(
                    reason="trimmed",
                    detail=f"retention removed up to {count} entries of {channel!r} before this replay read them",
                    channels=(channel,),
                )
            )
        if backlog:
            backlog.sort()
            self.task = asyncio.ensure_future(self._replay(backlog))

    async def _replay(self, backlog: list[tuple[int, str, bytes]]) -> None:
        """Hand the backlog over at the subscriber's pace, then what arrived meanwhile."""
        start = 0
        while start < len(backlog):
            await self.inbox.room()
            part = backlog[start : start + min(1000, self.inbox.space())]
            start += len(part)
            items, jumps = self.decoder.decode([c for _, c, _ in part], [e for _, _, e in part], [str(i) for i, _, _ in part])
            self.inbox.put(items, jumps)
        held, self.replaying = self.replaying or [], None
        for channel, envelopes, ids in held:
            self._deliver(channel, envelopes, ids)

    def post(self, channel: str, envelopes: list[bytes], ids: list[int]) -> None:
        """Called by a publisher, maybe from another thread, outside the space's lock."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(self._deliver, channel, envelopes, ids)
        else:
            loop.call_soon_threadsafe(self._deliver, channel, envelopes, ids)

    def _deliver(self, channel: str, envelopes: list[bytes], ids: list[int]) -> None:
        if self.replaying is not None:
            self.replaying.append((channel, envelopes, ids))
            return
        items, jumps = self.decoder.decode(channel, envelopes, list(map(str, ids)))
        self.inbox.put(items, jumps)

    async def close(self) -> None:
        with self.space.lock:
            for channel in self.channels:
                self.space.log(channel).feeds.discard(self)
        self.loop = None
        if self.task is not None:
            self.task.cancel()


class _MemoryGroup(GroupReader):
    def __init__(self, space: _Space, spec: GroupSpec, wire: str, dead: str | None, decoder: MessageDecoder) -> None:
        self.space = space
        self.spec = spec
        self.wire = wire
        self.dead = dead
        self.decoder = decoder
        decoder.add_channel(wire, spec.channel)

    async def open(self, *, timeout: float) -> list[Gap]:
        with self.space.lock:
            log = self.space.log(self.wire)
            if self.spec.group not in log.groups:
                start = 0 if self.spec.start == "0" else log.next_id - 1
                log.groups[self.spec.group] = _Group(start)
        return []

    def _take(self, now: float) -> tuple[GroupBatch, list[Post], float | None]:
        """Under the lock: reclaim idle entries (or dead-letter them), then read new ones."""
        spec = self.spec
        log = self.space.log(self.wire)
        group = log.groups.get(spec.group)
        if group is None:  # deleted by someone: recreate, and say so
            group = log.groups[spec.group] = _Group(0)
            gaps = [Gap(reason="group-lost", detail=f"group {spec.group!r} had vanished; recreated at 0", channels=(spec.channel,))]
        else:
            gaps = []
        batch = GroupBatch([], [], [], gaps, [])
        rows: list[tuple[int, bytes, int]] = []
        posts: list[Post] = []
        deleted: list[int] = []
        next_idle: float | None = None
        for id, state in list(group.pending.items()):
            if len(rows) >= spec.batch:
                break
            due = state[1] + spec.idle
            if due > now:
                next_idle = due if next_idle is None else min(next_idle, due)
                continue
            payload = log.get(id)
            if payload is None:
                deleted.append(id)
                del group.pending[id]
            elif state[2] >= spec.max_deliveries:
                del group.pending[id]
                batch.dead_lettered.append(str(id))
                if self.dead is not None:
                    dead = self.space.log(self.dead)
                    dead_ids = dead.append([payload], time.time())
                    posts += [(feed, self.dead, [payload], dead_ids) for feed in dead.feeds]
                    dead.wake()
            else:
                state[0], state[1], state[2] = spec.consumer, now, state[2] + 1
                rows.append((id, payload, state[2]))
        if deleted:
            batch.gaps.append(_deleted_gap(spec, deleted))
        if len(rows) < spec.batch:
            for id, payload, _ in log.after(group.last_id, spec.batch - len(rows)):
                group.pending[id] = [spec.consumer, now, 1]
                group.last_id = id
                rows.append((id, payload, 1))
        if rows:
            items, _ = self.decoder.decode(self.wire, [p for _, p, _ in rows], [str(i) for i, _, _ in rows])
            batch.items, batch.ids, batch.counts = items, [str(i) for i, _, _ in rows], [c for _, _, c in rows]
        return batch, posts, next_idle

    async def read(self, *, wait: float, timeout: float) -> GroupBatch:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            future: asyncio.Future[None] = loop.create_future()
            with self.space.lock:
                batch, posts, next_idle = self._take(now)
                if not (batch.items or batch.gaps or batch.dead_lettered):
                    self.space.log(self.wire).waiters.append((loop, future))
            _post(posts)
            if batch.items or batch.gaps or batch.dead_lettered or now >= deadline:
                return batch
            until = deadline if next_idle is None else min(deadline, next_idle)
            try:
                async with asyncio.timeout(max(until - now, 0.0)):
                    await future
            except TimeoutError:
                pass

    async def ack(self, ids: Sequence[str], *, timeout: float) -> list[bool]:
        with self.space.lock:
            group = self.space.log(self.wire).groups.get(self.spec.group)
            if group is None:
                return [False] * len(ids)
            return [group.pending.pop(int(id), None) is not None for id in ids]

    async def close(self) -> None:
        pass


def _deleted_gap(spec: GroupSpec, ids: list[int]) -> Gap:
    return Gap(
        reason="deleted",
        detail=f"{len(ids)} pending entries of {spec.channel!r} in group {spec.group!r} were deleted before their ack",
        channels=(spec.channel,),
        count=len(ids),
        ids=tuple(map(str, ids)),
    )


class MemoryMessageStore(MessageStore):
    """See the module docs."""

    durable = True

    def __init__(self, space_name: str, keys: Keyspace) -> None:
        self.space = _space(space_name)
        self.keys = keys

    def wire(self, channel: str) -> str:
        return self.keys.key("stream", channel)

    async def send(self, batches: Sequence[OutgoingBatch], *, flush: FlushState, timeout: float) -> None:
        flush.sent = True
        now = time.time()
        posts: list[Post] = []
        with self.space.lock:
            for batch in batches:
                wire = self.wire(batch.channel)
                log = self.space.log(wire)
                envelopes = batch.envelopes()
                ids = log.append(envelopes, now)
                posts += [(feed, wire, envelopes, ids) for feed in log.feeds]
                log.trim(batch.retention, now)
                if log.waiters:
                    log.wake()
        _post(posts)

    def check_position(self, text: str) -> str:
        parse_position(text, driver="memory")
        return text

    def open_feed(self, channels: Sequence[str], inbox: Inbox, decoder: MessageDecoder, *, from_id: str | None) -> Feed:
        return _MemoryFeed(self.space, {self.wire(c): c for c in channels}, inbox, decoder, from_id)

    def open_group(self, spec: GroupSpec, decoder: MessageDecoder) -> GroupReader:
        dead = None if spec.dead_letter is None else self.wire(spec.dead_letter)
        return _MemoryGroup(self.space, spec, self.wire(spec.channel), dead, decoder)

    async def purge(self, channels: Sequence[str], *, timeout: float) -> None:
        with self.space.lock:
            for channel in channels:
                log = self.space.logs.pop(self.wire(channel), None)
                if log is not None and log.feeds:  # subscribers keep listening on a fresh log
                    self.space.log(self.wire(channel)).feeds.update(log.feeds)

    async def groups(self, *, timeout: float) -> list[GroupInfo]:
        prefix = self.wire("x").removesuffix("x}")  # "ls:NS:{stream:"
        found = []
        with self.space.lock:
            for wire, log in self.space.logs.items():
                if not wire.startswith(prefix):
                    continue
                for name, group in log.groups.items():
                    consumers = len({entry[0] for entry in group.pending.values()})
                    lag = len(log.after(group.last_id))
                    found.append(GroupInfo(wire[len(prefix) : -1], name, consumers, len(group.pending), lag))
        return sorted(found, key=lambda g: (g.channel, g.group))

    async def close(self) -> None:
        pass
