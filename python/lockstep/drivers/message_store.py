"""The messaging contract: what a driver offers the messaging primitives.

A driver with :attr:`~lockstep.drivers.base.Capability.PUBSUB` returns a
:class:`MessageStore` from ``driver.message_store(keys)``. The primitives
(:mod:`lockstep.messaging`) own everything that is the same on every backend: the
envelope, per-sender sequence numbers, typed decoding, coalescing of concurrent
publishes, the subscriber's queue and how gaps are shown. A store owns only moving
bytes:

* :meth:`MessageStore.send` writes envelopes, many channels in one round trip;
* :meth:`MessageStore.open_feed` delivers what is published on some channels into an
  :class:`Inbox`, decoded by the Rust ``MessageDecoder`` it is handed, and tells the
  inbox about every interruption (:meth:`Inbox.interrupted` / :meth:`Inbox.resumed`)
  or loss it knows of (:meth:`Inbox.lost`);
* :meth:`MessageStore.open_group` (durable stores only) reads a channel as a member of
  a consumer group: pending entries, acks, redelivery after ``idle`` seconds,
  ``delivery_count``, dead-lettering after ``max_deliveries``; deleted or trimmed
  pending entries come back as :class:`Gap` items, never skipped in silence.

Channel names become backend names through the coordinator's
:class:`~lockstep.keys.Keyspace`: ``ls:{NS}:{chan:NAME}`` for pub/sub channels,
``ls:{NS}:{stream:NAME}`` for logs.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import msgspec

from .. import _core
from .._core import MessageDecoder
from ..errors import InvalidInputError

__all__ = [
    "DEFAULT_RETENTION",
    "Feed",
    "FlushState",
    "Gap",
    "GapReason",
    "GroupBatch",
    "GroupInfo",
    "GroupReader",
    "GroupSpec",
    "Inbox",
    "MessageStore",
    "OutgoingBatch",
    "Retention",
]

GapReason = Literal[
    "disconnected",  # the connection dropped (CLIENT KILL, network, timeout)
    "evicted",  # the server dropped a subscriber that fell behind (output buffer limit)
    "restarted",  # the server restarted (its run_id changed): what it held may be gone
    "overflow",  # this subscription's own buffer was full: newest messages dropped
    "sequence",  # a sender's sequence numbers jumped: those messages never arrived
    "trimmed",  # retention removed log entries before this reader got them
    "deleted",  # pending entries of a consumer group were deleted before their ack
    "group-lost",  # a consumer group vanished (server restarted without persistence)
]


class Gap(msgspec.Struct, frozen=True, kw_only=True):
    """Messages that were (or may have been) lost, yielded in-line where they are missing.

    ``missed`` maps a sender to the inclusive ranges of its sequence numbers known to be
    missing (per channel: every sender numbers each channel from 1). ``count`` is how many
    messages are known lost, or None when nobody can know (e.g. during a disconnect, what
    foreign clients published). ``since``/``until`` bound the interruption (Unix seconds);
    ``ids`` are the log positions lost (durable drivers).
    """

    reason: GapReason
    detail: str
    channels: tuple[str, ...]
    missed: dict[str, tuple[tuple[int, int], ...]] = msgspec.field(default_factory=dict)
    count: int | None = None
    since: float | None = None
    until: float | None = None
    ids: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when ``missed``/``ids`` name everything that was lost."""
        return self.count is not None


@dataclass(frozen=True)
class Retention:
    """How much of a channel's log a durable driver keeps. Entries still pending in a
    consumer group, or not yet read by one, are never removed by retention: the log
    grows past ``max_len`` instead (see ``docs/runbook.md``). Retention runs on publish,
    every so many messages (the file driver: every max(500, max_len // 10), at most max_len), so a
    log may run that far over ``max_len`` between runs."""

    max_len: int | None = 100_000  #: keep at most this many entries per channel
    max_age: float | None = None  #: drop entries older than this many seconds

    def __post_init__(self) -> None:
        if self.max_len is not None and (
            isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 1
        ):
            raise InvalidInputError(f"max_len must be a positive int or None, got {self.max_len!r}")
        if self.max_age is not None and (
            isinstance(self.max_age, bool)
            or not isinstance(self.max_age, int | float)
            or not (self.max_age > 0 and math.isfinite(self.max_age))
        ):
            raise InvalidInputError(f"max_age must be a positive number of seconds or None, got {self.max_age!r}")


DEFAULT_RETENTION = Retention()


@dataclass(frozen=True)
class OutgoingBatch:
    """One channel's messages of a flush, in publish order, not yet enveloped: ``lines`` is
    their data as JSON lines (one line per message), and the Rust core
    wraps each item in its envelope (seqs from ``seq_start``, ids ``id_prefix + seq``) only
    where the store writes it, straight into the command buffer for Redis. ``raw`` payloads
    are sent as they are (what a foreign publisher would send; tests use it)."""

    channel: str
    lines: bytes
    count: int
    sender: str = ""
    seq_start: int = 1
    ts: float = 0.0
    id_prefix: str = ""
    retention: Retention = DEFAULT_RETENTION
    max_size: int = _core.DEFAULT_MAX_SIZE
    raw: tuple[bytes, ...] | None = None

    @classmethod
    def foreign(cls, channel: str, payloads: Sequence[bytes]) -> OutgoingBatch:
        return cls(channel, b"", len(payloads), raw=tuple(payloads))

    def envelopes(self) -> list[bytes]:
        """One envelope per message (for stores that keep them one by one)."""
        if self.raw is not None:
            return list(self.raw)
        return _core.encode_lines(
            self.lines, self.count, self.sender, self.seq_start, self.ts, self.id_prefix, self.max_size
        )

    def pack(self, prefix: Sequence[str]) -> bytes:
        """One command ``*prefix, envelope`` per message, in one buffer."""
        if self.raw is not None:
            return _core.pack_each(prefix, self.raw)
        buffer, _ = _core.pack_envelopes(
            prefix, self.lines, self.count, self.sender, self.seq_start, self.ts, self.id_prefix, self.max_size
        )
        return buffer


class FlushState:
    """Set by the store the moment a write leaves this process: after that, a missing reply
    is OutcomeUnknown, never a safe retry."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


class Inbox(Protocol):
    """Where a feed delivers: a subscription's queue (see :mod:`lockstep.subscription`)."""

    def put(self, items: list[Any], jumps: list[tuple[int, str, int, int]]) -> None:
        """Items decoded by the feed's MessageDecoder, with the sequence jumps it found."""

    def interrupted(self, reason: GapReason, detail: str) -> None:
        """Delivery stopped (connection lost): messages may be lost until resumed()."""

    def resumed(self, reason: GapReason, detail: str) -> None:
        """Delivery is back (resubscribed); the gap is reported, with what it can tell."""

    def lost(self, gap: Gap) -> None:
        """A loss the feed knows of completely by itself (trim, deleted entries)."""

    def failed(self, error: BaseException) -> None:
        """The feed cannot go on; iteration raises ``error``."""

    def has_room(self) -> bool:
        """False while the subscriber's buffer is full: pull-based feeds wait."""

    def space(self) -> int:
        """How many more items the buffer takes: pull-based feeds read no more than this."""

    async def room(self) -> None:
        """Wait until has_room()."""


class Feed(abc.ABC):
    """Delivery of some channels into one inbox, until closed. ``wires`` maps each wire
    name (a pub/sub channel, stream key or log name) to the channel it is delivered as."""

    def __init__(self, wires: Mapping[str, str], inbox: Inbox, decoder: MessageDecoder) -> None:
        self.wires = dict(wires)
        self.inbox = inbox
        self.decoder = decoder
        for wire, channel in self.wires.items():
            decoder.add_channel(wire, channel)

    @abc.abstractmethod
    async def start(self, *, timeout: float) -> None:
        """Return once established: everything published afterwards is delivered."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop delivering and release the connection. Idempotent."""


@dataclass(frozen=True)
class GroupSpec:
    """One consumer's view of a consumer group (see ``Coordinator.consume``)."""

    channel: str
    group: str
    consumer: str
    start: Literal["0", "$"]
    batch: int
    idle: float
    max_deliveries: int
    dead_letter: str | None  #: channel that receives dead letters; None: they are dropped (logged)


@dataclass
class GroupBatch:
    """What one read returned: items (Messages or EnvelopeErrors) with their log ids and
    delivery counts, and gaps to yield first."""

    items: list[Any]
    ids: list[str]
    counts: list[int]
    gaps: list[Gap]
    dead_lettered: list[str]


@dataclass(frozen=True)
class GroupInfo:
    """One consumer group of a channel, for ``lockstep status``."""

    channel: str
    group: str
    consumers: int  #: consumers that ever read in the group (Redis counts until deleted)
    pending: int  #: delivered to a consumer, not yet acknowledged
    lag: int | None  #: entries in the log the group has not been given yet; None: unknown


class GroupReader(abc.ABC):
    """One consumer in a group. ``read`` returns reclaimed idle entries first, then new ones."""

    @abc.abstractmethod
    async def open(self, *, timeout: float) -> list[Gap]:
        """Create the group if missing (at ``spec.start``); gaps found on the way."""

    @abc.abstractmethod
    async def read(self, *, wait: float, timeout: float) -> GroupBatch:
        """Up to ``spec.batch`` entries, waiting up to ``wait`` seconds for new ones."""

    @abc.abstractmethod
    async def ack(self, ids: Sequence[str], *, timeout: float) -> list[bool]:
        """Acknowledge; per id, whether it was still pending (False: acked already, or
        dead-lettered)."""

    async def ack_count(self, ids: Sequence[str], *, timeout: float) -> int:
        """Acknowledge; how many were still pending, not which (Redis: one XACK for all)."""
        return sum(await self.ack(ids, timeout=timeout))

    @abc.abstractmethod
    async def close(self) -> None: ...


class MessageStore(abc.ABC):
    """A driver's messaging, for one coordinator (see the module docs)."""

    #: consumer groups, replay (``from_id``) and retention are supported
    durable: ClassVar[bool] = False
    #: why a non-durable store refuses consume/from_id, and what to use instead
    durable_hint: ClassVar[str] = ""

    @abc.abstractmethod
    async def send(self, batches: Sequence[OutgoingBatch], *, flush: FlushState, timeout: float) -> None:
        """Write every batch in one round trip where the backend allows; set ``flush.sent``
        when bytes leave. Raise Timeout/BackendUnavailable (nothing sent) or OutcomeUnknown."""

    @abc.abstractmethod
    def open_feed(
        self, channels: Sequence[str], inbox: Inbox, decoder: MessageDecoder, *, from_id: str | None
    ) -> Feed:
        """A feed of ``channels``; ``from_id`` replays after that position (durable only)."""

    def check_position(self, text: str) -> str:
        """A ``from_id`` as the store reads it; InvalidInputError names what is wrong."""
        return text

    def open_group(self, spec: GroupSpec, decoder: MessageDecoder) -> GroupReader:
        """A consumer in a group (durable stores)."""
        raise NotImplementedError

    async def purge(self, channels: Sequence[str], *, timeout: float) -> None:
        """Delete the channels' logs, groups and pending entries (nothing to do for pub/sub)."""

    async def groups(self, *, timeout: float) -> list[GroupInfo]:
        """Every consumer group of the namespace, by (channel, group); [] for pub/sub."""
        return []

    @abc.abstractmethod
    async def close(self) -> None:
        """Close what the store opened (feeds close themselves). Idempotent."""
