"""Messaging of the redis+streams driver: a stream per channel, at-least-once.

Channel ``NAME`` of namespace ``NS`` is the stream ``ls:NS:{stream:NAME}``; each message
is one entry with one field, ``m`` = the envelope (a foreign ``XADD`` with other fields
is delivered too, see ``lockstep_core::pubsub::entry_payload``).

* publish: ``XADD key * m <envelope>`` per message, every channel of a flush in one
  buffer (``pack_each``), replies skipped in bulk. Nothing is retried: a lost reply is
  OutcomeUnknown (the entries may exist; consumers dedupe by message id if it matters).
  Every ``TRIM_EVERY`` messages per channel the retention script runs
  (``lua/stream_trim.lua``): MINID trimming by length and age, never past the oldest
  entry any consumer group has pending or not yet read. A stream held longer than its
  ``max_len`` by a stuck group is logged (see docs/runbook.md), never trimmed in silence.
* subscribe: ``XREAD BLOCK`` from the last id at subscribe time, or ``from_id``. A lost
  connection loses nothing (reading resumes from the last id); a server restart that
  lost entries, or retention that removed entries not yet read, is reported as a Gap.
* consume: :class:`StreamGroupReader`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _core
from .._core import MessageDecoder
from ..errors import BackendError, BackendUnavailable, InvalidInputError, LockstepError
from ..keys import Keyspace
from .message_store import (
    Feed,
    FlushState,
    Gap,
    GroupInfo,
    GroupReader,
    GroupSpec,
    Inbox,
    MessageStore,
    OutgoingBatch,
    Retention,
)
from .redis_connection import (
    INCOMPLETE,
    LOADING_PAUSE,
    ConnectionLost,
    RespConnection,
    is_loading,
    send_or_unknown,
)
from .redis_info import parse_info
from .redis_pubsub import SharedConnection
from .redis_stream_group import StreamGroupReader

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["TRIM_EVERY", "RedisStreamsStore", "compare_ids", "script"]

log = logging.getLogger("lockstep.messaging")

TRIM_EVERY = 1000  # messages per channel between retention runs
TRIM_SCAN = 2000  # entries the script may look at per run to find the length cut
READ_COUNT = 1000  # entries per XREAD
READ_BLOCK_MS = 1000
CHECK_EVERY = 1.0  # s between checks that retention did not pass a subscriber
BACKOFF, BACKOFF_CAP = 0.05, 0.5
_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


def script(name: str) -> str:
    return (Path(__file__).with_name("lua") / f"{name}.lua").read_text()


def compare_ids(a: str, b: str) -> int:
    """-1, 0 or 1 as stream id ``a`` is before, equal to or after ``b``."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    left, right = (int(ams), int(aseq or 0)), (int(bms), int(bseq or 0))
    return (left > right) - (left < right)


def check_id(text: str) -> str:
    if text in ("0", "$") or _ID.fullmatch(text):
        return text
    raise InvalidInputError(f"redis+streams: from_id must be '0', '$' or a stream id like '1700000000000-0', got {text!r}")


def info_fields(reply: Any) -> dict[str, Any]:
    """XINFO STREAM's flat reply as a dict (text keys)."""
    if not isinstance(reply, list):
        return {}
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in zip(reply[::2], reply[1::2], strict=False)}


def trimmed_key(wire: str) -> str:
    """Where the retention script records the newest id it removed (same hash tag)."""
    return f"{wire}:trimmed"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamsStore(MessageStore):
    """See the module docs."""

    durable = True

    def __init__(self, driver: RedisDriver, keys: Keyspace) -> None:
        self.driver = driver
        self.keys = keys
        self.commands = SharedConnection(driver, "streams")
        #: channels that have consumer groups: a set, so status lists them without a scan
        self.groups_key = keys.meta("groups")
        self._since_trim: dict[str, int] = {}
        self._trim = script("stream_trim")
        self._claim = script("stream_claim")
        self._held_logged: dict[str, float] = {}

    def wire(self, channel: str) -> str:
        return self.keys.key("stream", channel)

    def _trim_command(self, channel: str, retention: Retention, added: int) -> tuple[Any, ...] | None:
        if retention.max_len is None and retention.max_age is None:
            return None
        done = self._since_trim.get(channel, 0) + added
        if done < TRIM_EVERY and retention.max_len is not None and done < retention.max_len:
            self._since_trim[channel] = done
            return None
        self._since_trim[channel] = 0
        age = "" if retention.max_age is None else f"{int((time.time() - retention.max_age) * 1000)}-0"
        wire = self.wire(channel)
        return ("EVAL", self._trim, 2, wire, trimmed_key(wire), retention.max_len or 0, age, TRIM_SCAN)

    async def send(self, batches: Sequence[OutgoingBatch], *, flush: FlushState, timeout: float) -> None:
        conn = await self.commands.get(timeout)
        parts: list[bytes] = []
        trims: list[tuple[str, tuple[Any, ...]]] = []
        count = 0
        for b in batches:
            parts.append(b.pack(("XADD", self.wire(b.channel), "*", "m")))
            count += b.count
            trim = self._trim_command(b.channel, b.retention, b.count)
            if trim is not None:
                trims.append((b.channel, trim))
        if trims:
            parts.append(_core.pack_commands([t for _, t in trims]))
        what = f"{self.driver.name}: XADD of {count} message(s)"

        def sent() -> None:
            flush.sent = True

        skipped = _Skip(count, len(trims))
        error = await send_or_unknown(conn, b"".join(parts), skipped, what=what, on_sent=sent)
        if trims:
            self._check_trims(trims, skipped.trims)
        if error is not None:
            raise BackendError(f"{what} failed: {error}")
        await conn.drain()

    def _check_trims(self, trims: list[tuple[str, tuple[Any, ...]]], replies: list[Any]) -> None:
        for (channel, _), reply in zip(trims, replies, strict=False):
            if isinstance(reply, _core.RespError):
                log.warning("%s: retention of %r failed: %s", self.driver.name, channel, reply)
            elif isinstance(reply, list) and len(reply) == 3 and reply[1] == 1:
                now = time.monotonic()
                if now - self._held_logged.get(channel, -1e9) > 60:
                    self._held_logged[channel] = now
                    log.warning(
                        "%s: retention of %r is held back at %s by a consumer group's pending or unread "
                        "entries; the stream grows past its max_len until they are acked (docs/runbook.md)",
                        self.driver.name, channel, text(reply[2]),
                    )

    def open_feed(
        self, channels: Sequence[str], inbox: Inbox, decoder: MessageDecoder, *, from_id: str | None
    ) -> Feed:
        start = None if from_id is None else check_id(from_id)
        return StreamFeed(self, {self.wire(c): c for c in channels}, inbox, decoder, start)

    def check_position(self, text: str) -> str:
        return check_id(text)

    def open_group(self, spec: GroupSpec, decoder: MessageDecoder) -> GroupReader:
        dead = self.wire(spec.dead_letter) if spec.dead_letter else self.wire(spec.channel) + ":nodead"
        return StreamGroupReader(self, spec, self.wire(spec.channel), dead, decoder, self._claim)

    async def purge(self, channels: Sequence[str], *, timeout: float) -> None:
        keys = [k for c in channels for k in (self.wire(c), trimmed_key(self.wire(c)))]
        conn = await self.commands.get(timeout)
        async with asyncio.timeout(timeout):
            reply, _ = await conn.call([("DEL", *keys), ("SREM", self.groups_key, *channels)])
        if isinstance(reply, _core.RespError):
            raise BackendError(f"{self.driver.name}: purging {', '.join(channels)} failed: {reply}")

    async def groups(self, *, timeout: float) -> list[GroupInfo]:
        conn = await self.commands.get(timeout)
        async with asyncio.timeout(timeout):
            (members,) = await conn.call([("SMEMBERS", self.groups_key)])
            channels = sorted(text(m) for m in members) if isinstance(members, list) else []
            replies = await conn.call([("XINFO", "GROUPS", self.wire(c)) for c in channels]) if channels else []
            gone = [c for c, reply in zip(channels, replies, strict=True) if isinstance(reply, _core.RespError)]
            if gone:  # the stream was deleted (or expired with its groups): out of the index
                await conn.call([("SREM", self.groups_key, *gone)])
        found = []
        for channel, reply in zip(channels, replies, strict=True):
            for fields in map(info_fields, reply if isinstance(reply, list) else []):
                lag = fields.get("lag")
                found.append(
                    GroupInfo(channel, text(fields.get("name", "")), int(fields.get("consumers", 0)),
                              int(fields.get("pending", 0)), None if lag is None else int(lag))
                )  # fmt: skip
        return found

    async def close(self) -> None:
        self.commands.close()


class _Skip:
    """Taker: skip ``count`` XADD replies (keeping the first error), then take the replies
    of ``trim_count`` retention scripts."""

    def __init__(self, count: int, trim_count: int) -> None:
        self.left = count
        self.error: Any = None
        self.trims: list[Any] = []
        self.trim_count = trim_count

    def __call__(self, reader: _core.ReplyReader) -> Any:
        if self.left:
            taken, error = reader.skip(self.left)
            self.left -= taken
            if error is not None and self.error is None:
                self.error = error
            if self.left:
                return INCOMPLETE
        if len(self.trims) < self.trim_count:
            self.trims += reader.take(self.trim_count - len(self.trims))
            if len(self.trims) < self.trim_count:
                return INCOMPLETE
        return self.error


class StreamFeed(Feed):
    """XREAD from each stream's position; see the module docs."""

    def __init__(
        self, store: RedisStreamsStore, wires: dict[str, str], inbox: Inbox, decoder: MessageDecoder, start: str | None
    ) -> None:
        super().__init__(wires, inbox, decoder)
        self.store = store
        self.start_at = start
        self.positions: dict[str, str] = {}
        self.reported_deleted: dict[str, str] = {}
        self.conn: RespConnection | None = None
        self.run_id: str | None = None
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    async def _open(self, timeout: float) -> None:
        conn = await RespConnection.open(self.store.driver, timeout=timeout, purpose="stream reader")
        try:
            async with asyncio.timeout(timeout):
                wires = list(self.wires)
                commands: list[tuple[Any, ...]] = [("INFO", "server")]
                commands += [c for w in wires for c in (("XINFO", "STREAM", w), ("GET", trimmed_key(w)))]
                replies = await conn.call(commands)
        except BaseException:
            conn.close()
            raise
        if any(map(is_loading, replies)):  # the streams' state is not known yet: not "lost"
            conn.close()
            raise BackendUnavailable(f"{self.store.driver.name}: the server is still loading its dataset")
        info = replies[0]
        run_id = None if isinstance(info, _core.RespError) else parse_info(info).get("run_id")
        restarted = self.run_id is not None and run_id is not None and run_id != self.run_id
        self.run_id = run_id or self.run_id
        self.conn = conn
        for wire, reply, trimmed in zip(wires, replies[1::2], replies[2::2], strict=True):
            fields = info_fields(reply) if not isinstance(reply, _core.RespError) else {}
            last = text(fields.get("last-generated-id", b"0-0"))
            if wire not in self.positions:
                self.positions[wire] = last if self.start_at in (None, "$") else (
                    "0-0" if self.start_at == "0" else str(self.start_at)
                )
            self._check_lost(wire, fields, trimmed, restarted)

    def _check_lost(self, wire: str, fields: dict[str, Any], trimmed: Any, restarted: bool) -> None:
        """Report entries removed before this reader got them, or lost by a restart."""
        channel = self.wires[wire]
        position = self.positions[wire]
        last = text(fields.get("last-generated-id", b"0-0"))
        deleted = text(fields.get("max-deleted-entry-id", b"0-0"))
        if isinstance(trimmed, bytes) and compare_ids(trimmed.decode(), deleted) > 0:
            deleted = trimmed.decode()
        if restarted and compare_ids(last, position) < 0:
            self.inbox.lost(Gap(
                reason="restarted",
                detail=f"the server restarted and lost the entries of {channel!r} after {last} "
                f"(this reader was at {position}); run Redis with appendonly yes",
                channels=(channel,),
            ))
            self.positions[wire] = last
            return
        seen = self.reported_deleted.get(wire, position)
        if compare_ids(deleted, position) > 0 and compare_ids(deleted, seen) > 0:
            self.reported_deleted[wire] = deleted
            self.inbox.lost(Gap(
                reason="trimmed",
                detail=f"entries of {channel!r} after {position} (up to {deleted}) were removed "
                "(retention or XDEL) before this reader got them",
                channels=(channel,),
            ))

    async def start(self, *, timeout: float) -> None:
        await self._open(timeout)
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.conn is not None:
            self.conn.close()

    async def _run(self) -> None:
        checked = time.monotonic()
        while not self.closed:
            try:
                await self.inbox.room()
                conn = self.conn
                if conn is None or conn.closed:
                    await self._reopen()
                    continue
                wires = list(self.wires)
                count = max(1, min(READ_COUNT, self.inbox.space()))
                command: list[str | int] = ["XREAD", "COUNT", count, "BLOCK", READ_BLOCK_MS, "STREAMS", *wires]
                command += [self.positions[w] for w in wires]
                result = await conn.request(_core.pack_command(*command), self._take)
                if is_loading(result):  # restarted: reopen (and re-check) once it has loaded
                    conn.close()
                    await asyncio.sleep(LOADING_PAUSE)
                    continue
                if isinstance(result, _core.RespError):
                    self.inbox.failed(BackendError(f"{self.store.driver.name}: XREAD failed: {result}"))
                    return
                items, jumps, _deleted, last = result
                for wire, id in last:
                    self.positions[text(wire)] = id
                if items:
                    self.inbox.put(items, jumps)
                if time.monotonic() - checked > CHECK_EVERY:
                    checked = time.monotonic()
                    replies = await conn.call(
                        [c for w in wires for c in (("XINFO", "STREAM", w), ("GET", trimmed_key(w)))]
                    )
                    for wire, reply, trimmed in zip(wires, replies[::2], replies[1::2], strict=True):
                        if not isinstance(reply, _core.RespError):
                            self._check_lost(wire, info_fields(reply), trimmed, False)
            except (ConnectionLost, OSError):
                continue
            except asyncio.CancelledError:
                raise

    def _take(self, reader: _core.ReplyReader) -> Any:
        result = reader.take_stream_read(self.decoder)
        return INCOMPLETE if result is None else result

    async def _reopen(self) -> None:
        delay = 0.0
        while not self.closed:
            if delay:
                await asyncio.sleep(delay)
            try:
                await self._open(timeout=1.0)
                return
            except (LockstepError, OSError, TimeoutError):
                delay = min(BACKOFF_CAP, max(BACKOFF, delay * 2))
