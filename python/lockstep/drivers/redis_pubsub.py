"""Messaging of the redis driver: PUBLISH / SUBSCRIBE, at-most-once, every gap reported.

Publishing: every flush of the coalescing publisher becomes ONE buffer of ``PUBLISH``
commands packed by the Rust core (``pack_publish``) and one write on a raw pipelined
connection (:mod:`.redis_connection`); the replies (receiver counts) are read in bulk.
Nothing is retried: when the connection drops after the write, the publish raises
OutcomeUnknown (PUBLISH is at-most-once, and a blind resend could deliver twice).
A publish never waits for subscribers: Redis buffers per subscriber and drops a slow
one (its subscription then reports the gap), so the publisher is never blocked.

Subscribing: :mod:`.redis_subscriber`. Channel ``NAME`` of namespace ``NS`` is the Redis
channel ``ls:NS:{chan:NAME}``, so a foreign client publishes with
``redis-cli PUBLISH 'ls:NS:{chan:NAME}' '{"id": 1}'``.

Pub/sub keeps no log: no replay, no consumer groups. Those need ``redis+streams://``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._core import MessageDecoder
from ..errors import BackendError
from ..keys import Keyspace
from .message_store import Feed, FlushState, Inbox, MessageStore, OutgoingBatch
from .redis_connection import RespConnection, SkipReplies, send_or_unknown
from .redis_subscriber import RedisSubscriberFeed

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["RedisPubSubStore", "SharedConnection"]


class SharedConnection:
    """The store's one pipelined command connection, reopened on demand after a loss.

    Flushes reach :meth:`get` in publish order and, when it is open, get it without
    suspending, so their writes keep that order; while reopening they queue on a lock."""

    def __init__(self, driver: RedisDriver, purpose: str) -> None:
        self.driver = driver
        self.purpose = purpose
        self.conn: RespConnection | None = None
        self._lock = asyncio.Lock()

    async def get(self, timeout: float) -> RespConnection:
        conn = self.conn
        if conn is not None and not conn.pending and conn.peer_closed():
            conn.close()  # the server went away while it was idle: open a fresh one, nothing lost
        if conn is not None and not conn.closed:
            return conn
        async with self._lock:
            if self.conn is None or self.conn.closed:
                self.conn = await RespConnection.open(self.driver, timeout=timeout, purpose=self.purpose)
            return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


class RedisPubSubStore(MessageStore):
    """See the module docs."""

    durable = False
    durable_hint = (
        "redis:// messaging is pub/sub: at-most-once, with no log to replay or consume from; "
        "use redis+streams:// (the same server) for consumer groups, acks and replay"
    )

    def __init__(self, driver: RedisDriver, keys: Keyspace) -> None:
        self.driver = driver
        self.keys = keys
        self.publisher = SharedConnection(driver, "publisher")

    def wire(self, channel: str) -> str:
        return self.keys.key("chan", channel)

    async def send(self, batches: Sequence[OutgoingBatch], *, flush: FlushState, timeout: float) -> None:
        conn = await self.publisher.get(timeout)
        buffer = b"".join(b.pack(("PUBLISH", self.wire(b.channel))) for b in batches)
        count = sum(b.count for b in batches)
        what = f"{self.driver.name}: PUBLISH of {count} message(s)"

        def sent() -> None:
            flush.sent = True

        error = await send_or_unknown(conn, buffer, SkipReplies(count), what=what, on_sent=sent)
        if error is not None:
            raise BackendError(f"{what} failed: {error}")
        await conn.drain()

    def open_feed(
        self, channels: Sequence[str], inbox: Inbox, decoder: MessageDecoder, *, from_id: str | None
    ) -> Feed:
        return RedisSubscriberFeed(self.driver, {self.wire(c): c for c in channels}, inbox, decoder)

    async def close(self) -> None:
        self.publisher.close()
