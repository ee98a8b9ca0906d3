"""Messaging of the file driver: a log table in the SQLite file, shared by processes.

Layout (created on first use, next to the key/value tables; the file stays 0600)::

    msg_log(id INTEGER PRIMARY KEY AUTOINCREMENT, channel, ts, payload, meta)
    msg_channel(channel PRIMARY KEY, trimmed_through)   -- retention's high-water mark
    msg_group(channel, grp, last_id)                    -- a consumer group's read position
    msg_pending(channel, grp, id, consumer, delivered_at, deliveries)

Ids never repeat (AUTOINCREMENT), so a position stays meaningful across trims and a
``from_id`` replay starts exactly after it. Every write is one ``BEGIN IMMEDIATE``
transaction on the driver's thread: a process killed mid-batch leaves the batch wholly
read (entries pending, redelivered after ``idle``) or not read at all.

Subscribers and consumers in other processes notice commits through the WAL-index
header (:mod:`.sqlite_doorbell`) within a millisecond or so, then read what is new.

Retention (per channel, on publish, every ``trim_every(retention)`` messages): entries beyond
``max_len`` or older than ``max_age`` are deleted, but never one a consumer group still
has pending or has not read yet; ``trimmed_through`` lets a subscriber that was passed
report a Gap. Dead letters are entries of the dead-letter channel with
``meta`` = ``{"origin": id, "group": ..., "deliveries": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import MessageDecoder
from ..keys import Keyspace
from .memory_messages import parse_position
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
from .sqlite_doorbell import Doorbell

if TYPE_CHECKING:
    from .sqlite import SqliteDriver

__all__ = ["SqliteMessageStore"]

TRIM_EVERY = 500  # messages per channel between retention runs
READ_ROWS = 2000  # rows per subscriber query
WAIT = 1.0  # s: longest wait on the doorbell before querying anyway
CHECK_EVERY = 1.0  # s between checks that retention did not pass a subscriber

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS msg_log (
           id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, ts REAL NOT NULL,
           payload BLOB NOT NULL, meta TEXT)""",
    "CREATE INDEX IF NOT EXISTS msg_log_channel ON msg_log(channel, id)",
    """CREATE TABLE IF NOT EXISTS msg_channel (
           channel TEXT PRIMARY KEY NOT NULL, trimmed_through INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS msg_group (
           channel TEXT NOT NULL, grp TEXT NOT NULL, last_id INTEGER NOT NULL,
           PRIMARY KEY (channel, grp)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS msg_pending (
           channel TEXT NOT NULL, grp TEXT NOT NULL, id INTEGER NOT NULL, consumer TEXT NOT NULL,
           delivered_at REAL NOT NULL, deliveries INTEGER NOT NULL,
           PRIMARY KEY (channel, grp, id)) WITHOUT ROWID""",
)

Conn = sqlite3.Connection


def _marks(items: Sequence[Any]) -> str:
    return ",".join("?" * len(items))


# -- statements (run on the driver's thread) ------------------------------------------------
def append(conn: Conn, channel: str, payloads: Sequence[bytes], now: float, meta: str | None = None) -> None:
    conn.executemany(
        "INSERT INTO msg_log(channel, ts, payload, meta) VALUES (?, ?, ?, ?)",
        [(channel, now, p, meta) for p in payloads],
    )


def trim_every(retention: Retention) -> int:
    """Messages published on a channel between its retention runs: ``TRIM_EVERY``, or a
    tenth of ``max_len`` when that is more (finding the ``max_len`` cut walks that many
    index entries, so this keeps it near 10 per message; it cost as much as the inserts
    themselves with the default 100,000), and never more than ``max_len``."""
    if retention.max_len is None:
        return TRIM_EVERY
    return min(retention.max_len, max(TRIM_EVERY, retention.max_len // 10))


def trim(conn: Conn, channel: str, retention: Retention, now: float) -> None:
    """Retention for one channel, never past what a group still needs."""
    cuts = []
    low, high = conn.execute(  # two subqueries: each is one index seek, min(), max() together a scan
        "SELECT (SELECT min(id) FROM msg_log WHERE channel = ?1), (SELECT max(id) FROM msg_log WHERE channel = ?1)",
        (channel,),
    ).fetchone()
    # ids are unique, so a channel spanning at most max_len ids has at most max_len entries
    if retention.max_len is not None and low is not None and high - low >= retention.max_len:
        row = conn.execute(
            "SELECT id FROM msg_log WHERE channel = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (channel, retention.max_len),
        ).fetchone()
        if row is not None:
            cuts.append(row[0])
    if retention.max_age is not None:
        row = conn.execute(
            "SELECT max(id) FROM msg_log WHERE channel = ? AND ts < ?", (channel, now - retention.max_age)
        ).fetchone()
        if row[0] is not None:
            cuts.append(row[0])
    if not cuts:
        return
    cut = max(cuts)
    keep = conn.execute(
        "SELECT min(x) FROM (SELECT min(id) AS x FROM msg_pending WHERE channel = ?1 "
        "UNION ALL SELECT last_id + 1 FROM msg_group WHERE channel = ?1)",
        (channel,),
    ).fetchone()[0]
    if keep is not None:
        cut = min(cut, keep - 1)
    if conn.execute("DELETE FROM msg_log WHERE channel = ? AND id <= ?", (channel, cut)).rowcount:
        conn.execute(
            "INSERT INTO msg_channel VALUES (?, ?) ON CONFLICT(channel) DO UPDATE SET "
            "trimmed_through = max(trimmed_through, excluded.trimmed_through)",
            (channel, cut),
        )


def read_after(conn: Conn, channels: Sequence[str], position: int, limit: int) -> list[tuple[str, str, bytes]]:
    """``(position text, channel, payload)`` rows after ``position``, in order."""
    sql = (
        f"SELECT CAST(id AS TEXT), channel, payload FROM msg_log WHERE channel IN ({_marks(channels)}) "
        "AND id > ? ORDER BY id LIMIT ?"
    )
    return conn.execute(sql, (*channels, position, limit)).fetchall()


def trimmed_through(conn: Conn, channels: Sequence[str]) -> dict[str, int]:
    sql = f"SELECT channel, trimmed_through FROM msg_channel WHERE channel IN ({_marks(channels)})"
    return dict(conn.execute(sql, tuple(channels)).fetchall())


def last_id(conn: Conn) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM msg_log").fetchone()[0])


class SqliteMessageStore(MessageStore):
    """See the module docs."""

    durable = True

    def __init__(self, driver: SqliteDriver, keys: Keyspace) -> None:
        self.driver = driver
        self.keys = keys
        self.doorbell = Doorbell(Path(f"{driver.path}-shm"))
        self._ready = False
        self._since_trim: dict[str, int] = {}
        self._reader: sqlite3.Connection | None = None

    def wire(self, channel: str) -> str:
        """The channel's name in the log: namespaced, as every coordinator of the file shares it."""
        return self.keys.key("stream", channel)

    async def run(self, op: str, job: Any, *, timeout: float, write: bool) -> Any:
        if not self._ready:
            await self.driver._run("messaging setup", _create_tables, timeout=timeout, write=True)
            self._ready = True
        return await self.driver._run(op, job, timeout=timeout, write=write)

    async def read(self, op: str, job: Any, *, timeout: float) -> Any:
        """A read for the subscriber hot path, run right here on the event loop with a
        connection of its own: a WAL reader never waits for a writer, and two thread hops
        per wake-up are most of the latency. Should SQLite still answer busy (a recovery
        in progress), it goes to the driver's thread like any other call."""
        if not self._ready:
            return await self.run(op, job, timeout=timeout, write=False)
        try:
            if self._reader is None:
                self._reader = sqlite3.connect(str(self.driver.path), timeout=0, isolation_level=None)
                self._reader.execute("PRAGMA query_only = ON")
            return job(self._reader, time.time())
        except sqlite3.OperationalError:
            return await self.run(op, job, timeout=timeout, write=False)

    async def send(self, batches: Sequence[OutgoingBatch], *, flush: FlushState, timeout: float) -> None:
        trims = []
        for b in batches:
            done = self._since_trim.get(b.channel, 0) + b.count
            if done >= trim_every(b.retention):
                trims.append(b)
                done = 0
            self._since_trim[b.channel] = done

        envelopes = [b.envelopes() for b in batches]

        def job(conn: Conn, now: float) -> None:
            flush.sent = True
            for b, envs in zip(batches, envelopes, strict=True):
                append(conn, self.wire(b.channel), envs, now)
            for b in trims:
                trim(conn, self.wire(b.channel), b.retention, now)

        await self.run("publish", job, timeout=timeout, write=True)

    def check_position(self, text: str) -> str:
        parse_position(text, driver="file")
        return text

    def open_feed(self, channels: Sequence[str], inbox: Inbox, decoder: MessageDecoder, *, from_id: str | None) -> Feed:
        start = None if from_id is None else parse_position(from_id, driver="file")
        return _LogFeed(self, {self.wire(c): c for c in channels}, inbox, decoder, start)

    def open_group(self, spec: GroupSpec, decoder: MessageDecoder) -> GroupReader:
        from .sqlite_groups import SqliteGroupReader

        return SqliteGroupReader(self, spec, decoder)

    async def purge(self, channels: Sequence[str], *, timeout: float) -> None:
        wires = [self.wire(c) for c in channels]

        def job(conn: Conn, now: float) -> None:
            for table in ("msg_log", "msg_channel", "msg_group", "msg_pending"):
                conn.execute(f"DELETE FROM {table} WHERE channel IN ({_marks(wires)})", wires)

        await self.run("purge", job, timeout=timeout, write=True)

    async def groups(self, *, timeout: float) -> list[GroupInfo]:
        prefix = self.wire("x").removesuffix("x}")  # "ls:NS:{stream:": the namespace's channels
        bounds = (prefix, prefix[:-1] + ";")  # ";" follows ":"

        def job(conn: Conn, now: float) -> list[GroupInfo]:
            rows = conn.execute(
                "SELECT g.channel, g.grp, "
                "(SELECT count(DISTINCT consumer) FROM msg_pending p WHERE p.channel = g.channel AND p.grp = g.grp), "
                "(SELECT count(*) FROM msg_pending p WHERE p.channel = g.channel AND p.grp = g.grp), "
                "(SELECT count(*) FROM msg_log l WHERE l.channel = g.channel AND l.id > g.last_id) "
                "FROM msg_group g WHERE g.channel >= ? AND g.channel < ? ORDER BY g.channel, g.grp",
                bounds,
            ).fetchall()
            return [GroupInfo(wire[len(prefix) : -1], grp, *counts) for wire, grp, *counts in rows]

        groups: list[GroupInfo] = await self.run("consumer groups", job, timeout=timeout, write=False)
        return groups

    async def close(self) -> None:
        self.doorbell.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _create_tables(conn: Conn, now: float) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


class _LogFeed(Feed):
    """Reads the log after a position, woken by the doorbell."""

    def __init__(
        self, store: SqliteMessageStore, wires: dict[str, str], inbox: Inbox, decoder: MessageDecoder, start: int | None
    ) -> None:
        super().__init__(wires, inbox, decoder)
        self.store = store
        self.channels = tuple(wires)  # the log names
        self.start_at = start
        self.position = 0
        self.reported: dict[str, int] = {}
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, timeout: float) -> None:
        def job(conn: Conn, now: float) -> tuple[int, dict[str, int]]:
            return last_id(conn), trimmed_through(conn, self.channels)

        newest, trimmed = await self.store.run("subscribe", job, timeout=timeout, write=False)
        self.position = newest if self.start_at is None or self.start_at < 0 else self.start_at
        self.reported = {c: self.position for c in self.channels}
        self._report_trims(trimmed)
        self._task = asyncio.ensure_future(self._run(timeout))

    def _report_trims(self, trimmed: dict[str, int]) -> None:
        for wire, through in trimmed.items():
            channel = self.wires[wire]
            if through > self.position and through > self.reported.get(wire, 0):
                self.reported[wire] = through
                self.inbox.lost(Gap(
                    reason="trimmed",
                    detail=f"retention removed entries of {channel!r} up to position {through} before "
                    f"this subscriber (at {self.position}) read them",
                    channels=(channel,),
                ))

    async def _run(self, timeout: float) -> None:
        doorbell = self.store.doorbell
        checked = time.monotonic()

        def job(conn: Conn, now: float, check: bool, limit: int) -> tuple[list[tuple[str, str, bytes]], dict[str, int]]:
            rows = read_after(conn, self.channels, self.position, limit)
            return rows, trimmed_through(conn, self.channels) if check else {}

        while not self.closed:
            try:
                await self.inbox.room()
                seen = doorbell.current()
                check = time.monotonic() - checked > CHECK_EVERY
                if check:
                    checked = time.monotonic()
                limit = min(READ_ROWS, self.inbox.space())
                rows, trimmed = await self.store.read(
                    "read messages", lambda c, now, check=check, limit=limit: job(c, now, check, limit), timeout=timeout
                )
                if trimmed:
                    self._report_trims(trimmed)
                if rows:
                    positions, channels, payloads = zip(*rows, strict=True)
                    self.position = int(positions[-1])
                    items, jumps = self.decoder.decode(channels, payloads, positions)
                    self.inbox.put(items, jumps)
                    if len(rows) == limit:
                        continue
                await doorbell.changed(seen, WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 -- a broken database: the subscriber's iteration raises it
                self.inbox.failed(e)
                return

    async def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def dead_meta(origin: int, group: str, deliveries: int) -> str:
    return json.dumps({"origin": origin, "group": group, "deliveries": deliveries})

