"""Messaging: publish, subscribe and consume, the same on every driver.

The public surface (``Coordinator.publish``, ``publish_many``, ``subscribe``,
``consume``, ``bind_channel``) delegates here. What each driver promises:

============================  ==========  ==========  ==============  ===============
                              memory://   file://     redis://        redis+streams://
============================  ==========  ==========  ==============  ===============
publish / subscribe           in-process  processes   at-most-once    at-least-once
gaps reported                 overflow    trim        every           trim, restart
                                                      interruption
replay (``from_id``)          yes         yes         no              yes
consume: groups, ack,         yes         yes         no: use         yes
redelivery, dead letters                              redis+streams
============================  ==========  ==========  ==============  ===============

Messages travel as JSON envelopes (see :mod:`lockstep.envelope`): a foreign client
may publish plain JSON or text (``redis-cli PUBLISH 'ls:NS:{chan:NAME}' hello``) and
it is delivered with ``sender`` None. A channel bound to a ``msgspec.Struct`` (or any
type msgspec decodes) delivers instances of it; a payload that does not fit arrives
as an ``EnvelopeError`` in its place, and the others are unaffected.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ._core import MessageDecoder
from .consumer import Consumer, Delivery, Received
from .drivers.base import Capability
from .drivers.message_store import (
    DEFAULT_RETENTION,
    Gap,
    GroupSpec,
    MessageStore,
    Retention,
)
from .envelope import _DECODE_ERRORS, DEFAULT_MAX_SIZE, Message, _data_error
from .errors import CapabilityError, InvalidInputError
from .names import validate_name
from .publisher import Publisher, items_list
from .subscription import Item, Subscription

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = [
    "Binding",
    "Consumer",
    "Delivery",
    "Gap",
    "Item",
    "Message",
    "Messaging",
    "Received",
    "Retention",
    "Subscription",
    "make_decoder",
]

_ANY_MSGPACK_ARRAY = msgspec.msgpack.Decoder(list[Any])


def make_decoder(type: Any = None, *, track_seqs: bool = True, max_size: int = DEFAULT_MAX_SIZE) -> MessageDecoder:
    """A Rust MessageDecoder delivering ``Message``s whose data is decoded as ``type``."""
    try:
        msgpack_array = _ANY_MSGPACK_ARRAY if type is None else msgspec.msgpack.Decoder(list[type])
        json_one = msgspec.json.Decoder(Any if type is None else type)
        msgpack_one = msgspec.msgpack.Decoder(Any if type is None else type)
    except TypeError as e:
        raise InvalidInputError(f"cannot decode messages as {type!r}: {e}") from e

    def decode_item(channel: str, data: bytes, kind: str) -> Any:
        try:
            if kind == "json":
                return json_one.decode(data)
            if kind == "msgpack":
                return msgpack_one.decode(data)
            value: str | bytes = data.decode() if kind == "text" else data
            return value if type is None else msgspec.convert(value, type)
        except _DECODE_ERRORS as e:
            raise _data_error(channel, kind, type, e) from e

    return MessageDecoder(
        Message,
        json_one.decode_lines,
        decode_item,
        decode_msgpack_array=msgpack_array.decode,
        typed=type is not None,
        track_seqs=track_seqs,
        max_size=max_size,
    )


@dataclass(frozen=True)
class Binding:
    """What ``bind_channel`` said about a channel."""

    type: Any = None
    retention: Retention = DEFAULT_RETENTION


def _check_positive(name: str, value: Any, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind | int) or not value > 0:  # type: ignore[operator]
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")


class Messaging:
    """The messaging primitives of one coordinator (created on first use)."""

    def __init__(self, coord: Coordinator) -> None:
        self._coord = coord
        self._store: MessageStore | None = None
        self._publisher: Publisher | None = None
        self._bindings: dict[str, Binding] = {}
        self._open: weakref.WeakSet[Subscription | Consumer] = weakref.WeakSet()
        self._checked: set[str] = set()

    @property
    def store(self) -> MessageStore:
        if self._store is None:
            self._store = self._coord.driver.message_store(self._coord.keys)
        return self._store

    def _binding(self, channel: str) -> Binding:
        return self._bindings.get(channel, Binding())

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(
                self.store, self._coord.member, retention=lambda c: self._binding(c).retention
            )
        return self._publisher

    # -- the API -------------------------------------------------------------------------
    def bind_channel(
        self, channel: str, type: Any = None, *, max_len: int | None = 100_000, max_age: float | None = None
    ) -> None:
        validate_name(channel, what="channel")
        if type is not None:
            make_decoder(type)  # refuse a type msgspec cannot decode, now
        self._bindings[channel] = Binding(type, Retention(max_len, max_age))

    def check_channel(self, channel: str) -> str:
        if channel not in self._checked:
            validate_name(channel, what="channel")
            self._checked.add(channel)
        return channel

    def publish(self, channel: str, data: Any, *, timeout: float) -> asyncio.Future[str]:
        """The future of one publish (see Publisher.submit): cheap enough for 10,000 at once."""
        future: asyncio.Future[str] = self.publisher.submit(self.check_channel(channel), (data,), timeout, single=True)
        return future

    def publish_many(self, channel: str, items: Iterable[Any], *, timeout: float) -> asyncio.Future[Sequence[str]]:
        datas = items_list(items)
        return self.publisher.submit(self.check_channel(channel), datas, timeout)

    def _type_for(self, channels: Sequence[str], type: Any) -> Any:
        if type is not None:
            return type
        bound = {self._binding(c).type for c in channels}
        if len(bound) > 1:
            raise InvalidInputError(
                f"channels {', '.join(channels)} are bound to different types; subscribe to them separately"
            )
        return bound.pop()

    def _durable(self, what: str) -> MessageStore:
        store = self.store
        if not store.durable or Capability.DURABLE_MESSAGES not in self._coord.capabilities:
            raise CapabilityError(
                self._coord.driver.name, [Capability.DURABLE_MESSAGES.value], hint=f"{what}: {store.durable_hint}"
            )
        return store

    def subscribe(
        self,
        channels: Sequence[str],
        *,
        from_id: str | None,
        type: Any,
        strict: bool,
        max_buffer: int,
        timeout: float,
    ) -> Subscription:
        if not channels:
            raise InvalidInputError("subscribe needs at least one channel")
        names = tuple(dict.fromkeys(validate_name(c, what="channel") for c in channels))
        if from_id is not None:
            if not isinstance(from_id, str) or not from_id:
                raise InvalidInputError(f"from_id must be a position string such as '0', got {from_id!r}")
            store = self._durable("replay (from_id)")
            store.check_position(from_id)
        else:
            store = self.store
        decoder = make_decoder(self._type_for(names, type))
        sub = Subscription(
            lambda inbox: store.open_feed(names, inbox, decoder, from_id=from_id),
            names,
            strict=strict,
            max_buffer=max_buffer,
            timeout=timeout,
        )
        self._open.add(sub)
        return sub

    def consume(
        self,
        channel: str,
        group: str,
        *,
        consumer: str | None,
        start: Literal["0", "$"],
        batch: int,
        idle: float,
        max_deliveries: int,
        dead_letter: bool | str,
        type: Any,
        strict: bool,
        timeout: float,
    ) -> Consumer:
        validate_name(channel, what="channel")
        validate_name(group, what="group")
        store = self._durable("consume")
        if start not in ("0", "$"):
            raise InvalidInputError(f"start must be '0' (the whole backlog) or '$' (only new), got {start!r}")
        _check_positive("batch", batch)
        _check_positive("idle", idle, float)
        _check_positive("max_deliveries", max_deliveries)
        if dead_letter is True:
            dead: str | None = f"{channel}:dead"
        elif dead_letter is False:
            dead = None
        else:
            dead = validate_name(dead_letter, what="dead-letter channel")
        name = validate_name(consumer or self._coord.member, what="consumer")
        spec = GroupSpec(channel, group, name, start, batch, float(idle), max_deliveries, dead)
        decoder = make_decoder(self._type_for([channel], type), track_seqs=False)
        reader = Consumer(store.open_group(spec, decoder), spec, timeout=timeout, strict=strict)
        self._open.add(reader)
        return reader

    async def purge(self, channels: Sequence[str], *, timeout: float | None = None) -> None:
        """Delete what durable drivers keep of ``channels``: their logs, consumer groups and
        pending entries (dead letters live on their own channel). For tests and cleanup."""
        names = [validate_name(c, what="channel") for c in channels]
        await self.store.purge(names, timeout=self._coord.timeout if timeout is None else timeout)

    async def close(self) -> None:
        """Close open subscriptions and consumers, then let publishes in flight finish."""
        for item in list(self._open):
            await item.close()
        if self._publisher is not None:
            await self._publisher.close()
        if self._store is not None:
            await self._store.close()
        self._store = self._publisher = None

