"""A consumer of a Redis Streams consumer group (RELIABILITY.md promise 5).

* The group is created explicitly at ``start`` (``XGROUP CREATE ... 0|$ MKSTREAM``),
  so "0" really delivers the backlog; if it vanishes (``NOGROUP``: Redis restarted
  without persistence, or someone destroyed it) it is recreated at 0 and a Gap of
  reason ``group-lost`` says so.
* Each read first hands this consumer idle pending entries, atomically, with their
  delivery counts (``lua/stream_claim.lua``: XPENDING IDLE + XCLAIM), dead-lettering
  those delivered ``max_deliveries`` times and reporting those whose entry was deleted
  (a Gap of reason ``deleted`` with their ids); then new entries (``XREADGROUP >``).
* Reads block on this reader's own connection; acks go through the store's pipelined
  command connection, one ``XACK`` per id in one write, so each ack says whether it was
  still pending. A lost connection is reopened (backoff) within the call's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import _core
from .._core import MessageDecoder
from ..errors import BackendError, BackendUnavailable, LockstepError, Timeout
from .message_store import Gap, GroupBatch, GroupReader, GroupSpec
from .redis_connection import (
    INCOMPLETE,
    LOADING_PAUSE,
    ConnectionLost,
    Replies,
    RespConnection,
    is_loading,
)

if TYPE_CHECKING:
    from .redis_streams_messages import RedisStreamsStore

__all__ = ["StreamGroupReader"]

BACKOFF, BACKOFF_CAP = 0.05, 0.5  # s


class ServerLoading(Exception):
    """The server answered ``-LOADING`` (see ``is_loading``): the read is tried again
    shortly, as a consumer must come back by itself after a restart."""


def refuse_loading(reply: _core.RespError) -> None:
    if is_loading(reply):
        raise ServerLoading(str(reply))


def deleted_gap(spec: GroupSpec, ids: Sequence[str]) -> Gap:
    return Gap(
        reason="deleted",
        detail=f"{len(ids)} pending entries of {spec.channel!r} in group {spec.group!r} were deleted "
        "(trimmed or XDEL) before their ack",
        channels=(spec.channel,),
        count=len(ids),
        ids=tuple(ids),
    )


class StreamGroupReader(GroupReader):
    """See the module docs."""

    def __init__(
        self, store: RedisStreamsStore, spec: GroupSpec, key: str, dead_key: str, decoder: MessageDecoder, claim: str
    ) -> None:
        self.store = store
        self.spec = spec
        self.key = key
        self.dead_key = dead_key
        self.decoder = decoder
        decoder.add_channel(key, spec.channel)
        self.claim_script = claim
        self.claim_every = min(spec.idle / 2, 1.0)
        self.next_claim = 0.0
        self.conn: RespConnection | None = None
        self.closed = False

    @property
    def _where(self) -> str:
        return f"{self.store.driver.name}: {self.spec.channel!r}/{self.spec.group!r}"

    async def _connection(self, deadline: float) -> RespConnection:
        delay = 0.0
        while True:
            if self.conn is not None and not self.conn.closed:
                return self.conn
            if self.closed:
                raise BackendUnavailable(f"{self._where}: the consumer is closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendUnavailable(f"{self._where}: no connection to {self.store.driver.address.where}")
            if delay:
                await asyncio.sleep(min(delay, left))
            try:
                self.conn = await RespConnection.open(
                    self.store.driver, timeout=max(0.05, min(left, 2.0)), purpose="consumer"
                )
            except (LockstepError, OSError):
                delay = min(BACKOFF_CAP, max(BACKOFF, delay * 2))

    async def _create(self, conn: RespConnection, start: str) -> bool:
        """Create the group; False if it existed. The channel goes in the namespace's index of
        channels with groups, which ``lockstep status`` reads (see RedisStreamsStore.groups)."""
        reply, _ = await conn.call(
            [("XGROUP", "CREATE", self.key, self.spec.group, start, "MKSTREAM"),
             ("SADD", self.store.groups_key, self.spec.channel)]
        )  # fmt: skip
        if isinstance(reply, _core.RespError):
            if reply.code == "BUSYGROUP":
                return False
            refuse_loading(reply)
            raise BackendError(f"{self._where}: XGROUP CREATE failed: {reply}")
        return True

    async def open(self, *, timeout: float) -> list[Gap]:
        conn = await self._connection(time.monotonic() + timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._create(conn, self.spec.start)
        except TimeoutError:
            raise Timeout(f"{self._where}: creating the group did not finish within {timeout:g} s") from None
        except ServerLoading as e:
            raise BackendUnavailable(f"{self._where}: the server is still loading its dataset ({e})") from None
        return []

    async def _heal(self, conn: RespConnection) -> Gap:
        await self._create(conn, "0")
        return Gap(
            reason="group-lost",
            detail=f"consumer group {self.spec.group!r} of {self.spec.channel!r} was missing (NOGROUP: Redis "
            "restarted without persistence, or it was destroyed); recreated at 0: entries it had "
            "pending are unknown, everything still in the stream is delivered again",
            channels=(self.spec.channel,),
        )

    async def _claim(self, conn: RespConnection, batch: GroupBatch) -> None:
        spec = self.spec
        command = _core.pack_command(
            "EVAL", self.claim_script, 2, self.key, self.dead_key, spec.group, spec.consumer,
            int(spec.idle * 1000), spec.batch, spec.max_deliveries, "1" if spec.dead_letter else "0",
        )
        reply = await conn.request(command, self._take_claim)
        if isinstance(reply, _core.RespError):
            refuse_loading(reply)
            if reply.code == "NOGROUP" or "NOGROUP" in reply.message:
                batch.gaps.append(await self._heal(conn))
                return
            raise BackendError(f"{self._where}: reclaiming idle entries failed: {reply}")
        items, counts, deleted, dead = reply
        if deleted:
            batch.gaps.append(deleted_gap(spec, deleted))
        batch.items += items
        batch.ids += [item.position for item in items]
        batch.counts += counts
        batch.dead_lettered += dead

    def _take_claim(self, reader: _core.ReplyReader) -> Any:
        result = reader.take_claim(self.decoder)
        return INCOMPLETE if result is None else result

    def _take_read(self, reader: _core.ReplyReader) -> Any:
        result = reader.take_stream_read(self.decoder)
        return INCOMPLETE if result is None else result

    async def _read_new(self, conn: RespConnection, batch: GroupBatch, count: int, block_ms: int) -> None:
        spec = self.spec
        command: list[str | int] = ["XREADGROUP", "GROUP", spec.group, spec.consumer, "COUNT", count]
        if block_ms > 0:
            command += ["BLOCK", block_ms]
        command += ["STREAMS", self.key, ">"]
        reply = await conn.request(_core.pack_command(*command), self._take_read)
        if isinstance(reply, _core.RespError):
            refuse_loading(reply)
            if reply.code == "NOGROUP":
                batch.gaps.append(await self._heal(conn))
                return
            raise BackendError(f"{self._where}: XREADGROUP failed: {reply}")
        items, _jumps, deleted, _last = reply
        if deleted:
            batch.gaps.append(deleted_gap(spec, deleted))
        batch.items += items
        batch.ids += [item.position for item in items]
        batch.counts += [1] * len(items)

    async def read(self, *, wait: float, timeout: float) -> GroupBatch:
        batch = GroupBatch([], [], [], [], [])
        deadline = time.monotonic() + timeout
        conn = await self._connection(deadline)
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.05) + wait):
                now = time.monotonic()
                if now >= self.next_claim:
                    self.next_claim = now + self.claim_every
                    await self._claim(conn, batch)
                room = self.spec.batch - len(batch.items)
                if room > 0:
                    idle = batch.items or batch.gaps or batch.dead_lettered
                    block = 0.0 if idle else min(wait, self.next_claim - time.monotonic())
                    await self._read_new(conn, batch, room, int(block * 1000))
        except (TimeoutError, ConnectionLost):
            # A read whose reply is lost leaves its entries pending for this consumer: they
            # are reclaimed after `idle`, with a higher delivery count. Nothing is skipped.
            conn.close()
        except ServerLoading:
            # Just restarted: the caller reads again (within its own deadline) after a pause.
            await asyncio.sleep(min(LOADING_PAUSE, max(deadline - time.monotonic(), 0.0)))
        return batch

    async def ack(self, ids: Sequence[str], *, timeout: float) -> list[bool]:
        if not ids:
            return []
        buffer = _core.pack_each(("XACK", self.key, self.spec.group), list(ids))
        replies = await self._acks(buffer, len(ids), timeout)
        return [reply == 1 for reply in replies]

    async def ack_count(self, ids: Sequence[str], *, timeout: float) -> int:
        if not ids:
            return 0
        (reply,) = await self._acks(_core.pack_command("XACK", self.key, self.spec.group, *ids), 1, timeout)
        return int(reply)

    async def _acks(self, buffer: bytes, count: int, timeout: float) -> list[Any]:
        """Send ``count`` XACK commands; their integer replies."""
        conn = await self.store.commands.get(timeout)
        try:
            async with asyncio.timeout(timeout):
                replies: list[Any] = await conn.request(buffer, Replies(count))
        except TimeoutError:
            raise Timeout(f"{self._where}: ack not confirmed within {timeout:g} s; acking again is safe") from None
        except ConnectionLost as e:
            raise BackendUnavailable(f"{self._where}: ack not confirmed ({e}); acking again is safe") from None
        for reply in replies:
            if isinstance(reply, _core.RespError):
                if is_loading(reply):  # just restarted: nothing ran
                    raise BackendUnavailable(f"{self._where}: ack refused while the server loads ({reply}); "
                                             "acking again is safe")
                raise BackendError(f"{self._where}: XACK failed: {reply}")
        return replies

    async def close(self) -> None:
        self.closed = True
        if self.conn is not None:
            self.conn.close()
