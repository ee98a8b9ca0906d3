"""Consumer groups of the file driver, with the semantics of Redis Streams groups.

Each read is one write transaction: first idle pending entries of the group (delivered
``idle`` seconds ago or more and not acked) are handed to this consumer with their
delivery count raised, or moved to the dead-letter channel once delivered
``max_deliveries`` times, or reported deleted when retention or someone else removed
their log entry; then new entries after the group's position become pending for this
consumer. A process killed mid-batch leaves its entries pending: another consumer gets
them after ``idle``. Waiting uses the store's doorbell, and wakes for the next idle
entry too.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._core import MessageDecoder
from ..errors import LockstepError, OutcomeUnknown, Timeout
from .message_store import Gap, GroupBatch, GroupReader, GroupSpec
from .sqlite_messages import append, dead_meta, last_id

if TYPE_CHECKING:
    from .sqlite_messages import SqliteMessageStore

__all__ = ["SqliteGroupReader"]

Conn = sqlite3.Connection
Taken = tuple[list[tuple[int, bytes, int]], list[int], list[str], bool, float | None]


def ran_out_of_time(exc: LockstepError) -> bool:
    """Whether a failed call only hit its deadline (a Timeout, or an OutcomeUnknown from the
    deadline or the interrupt at it), rather than a lasting fault such as an I/O error."""
    cause = exc.__cause__
    interrupted = isinstance(cause, sqlite3.OperationalError) and (
        (getattr(cause, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_INTERRUPT
    )
    return isinstance(exc, Timeout) or isinstance(cause, TimeoutError) or interrupted


class SqliteGroupReader(GroupReader):
    """See the module docs."""

    def __init__(self, store: SqliteMessageStore, spec: GroupSpec, decoder: MessageDecoder) -> None:
        self.store = store
        self.spec = spec
        self.decoder = decoder
        self.wire = store.wire(spec.channel)
        self.dead = None if spec.dead_letter is None else store.wire(spec.dead_letter)

    async def open(self, *, timeout: float) -> list[Gap]:
        spec = self.spec

        def job(conn: Conn, now: float) -> None:
            start = 0 if spec.start == "0" else last_id(conn)
            conn.execute("INSERT OR IGNORE INTO msg_group VALUES (?, ?, ?)", (self.wire, spec.group, start))

        await self.store.run("create group", job, timeout=timeout, write=True)
        return []

    def _take(self, conn: Conn, started: float) -> Taken:
        """On the thread, in one transaction: reclaim, dead-letter, read new."""
        # The clock is read here, with the write lock held, not at ``started`` (before
        # BEGIN IMMEDIATE waited up to busy_timeout for the lock): a stale stamp made
        # fresh deliveries look idle early, so they went to a second consumer while the
        # first was still working on them.
        now = time.time()
        spec = self.spec
        key = (self.wire, spec.group)
        lost = False
        row = conn.execute("SELECT last_id FROM msg_group WHERE channel = ? AND grp = ?", key).fetchone()
        if row is None:  # deleted behind our back: recreate at 0, and say so
            conn.execute("INSERT INTO msg_group VALUES (?, ?, 0)", key)
            row, lost = (0,), True
        rows: list[tuple[int, bytes, int]] = []
        deleted: list[int] = []
        dead: list[str] = []
        idle = conn.execute(
            "SELECT p.id, p.deliveries, l.payload FROM msg_pending p LEFT JOIN msg_log l ON l.id = p.id "
            "WHERE p.channel = ? AND p.grp = ? AND p.delivered_at <= ? ORDER BY p.id LIMIT ?",
            (*key, now - spec.idle, spec.batch),
        ).fetchall()
        for id, deliveries, payload in idle:
            if payload is None:
                deleted.append(id)
            elif deliveries >= spec.max_deliveries:
                dead.append(str(id))
                if self.dead is not None:
                    append(conn, self.dead, [payload], now, dead_meta(id, spec.group, deliveries))
            else:
                rows.append((id, payload, deliveries + 1))
        gone = deleted + [int(d) for d in dead]
        conn.executemany("DELETE FROM msg_pending WHERE channel = ? AND grp = ? AND id = ?", [(*key, i) for i in gone])
        conn.executemany(
            "UPDATE msg_pending SET consumer = ?, delivered_at = ?, deliveries = ? "
            "WHERE channel = ? AND grp = ? AND id = ?",
            [(spec.consumer, now, count, *key, id) for id, _, count in rows],
        )
        room = spec.batch - len(rows)
        if room > 0:
            new = conn.execute(
                "SELECT id, payload FROM msg_log WHERE channel = ? AND id > ? ORDER BY id LIMIT ?",
                (self.wire, row[0], room),
            ).fetchall()
            if new:
                conn.executemany(
                    "INSERT OR REPLACE INTO msg_pending VALUES (?, ?, ?, ?, ?, 1)",
                    [(*key, id, spec.consumer, now) for id, _ in new],
                )
                conn.execute("UPDATE msg_group SET last_id = ? WHERE channel = ? AND grp = ?", (new[-1][0], *key))
                rows += [(id, payload, 1) for id, payload in new]
        soonest = conn.execute(
            "SELECT min(delivered_at) FROM msg_pending WHERE channel = ? AND grp = ?", key
        ).fetchone()[0]
        next_idle = None if soonest is None else soonest + spec.idle
        return rows, deleted, dead, lost, next_idle

    def _anything(self, conn: Conn, now: float) -> tuple[bool, float | None]:
        """A read-only look: is there anything to take (new or idle entries)? And when is
        the next pending entry due? Spares the write lock for the common empty wake-up."""
        key = (self.wire, self.spec.group)
        new = conn.execute(
            "SELECT 1 FROM msg_group g JOIN msg_log l ON l.channel = g.channel AND l.id > g.last_id "
            "WHERE g.channel = ? AND g.grp = ? LIMIT 1",
            key,
        ).fetchone()
        group = conn.execute("SELECT 1 FROM msg_group WHERE channel = ? AND grp = ?", key).fetchone()
        soonest = conn.execute(
            "SELECT min(delivered_at) FROM msg_pending WHERE channel = ? AND grp = ?", key
        ).fetchone()[0]
        due = soonest is not None and soonest + self.spec.idle <= now
        return bool(new or due or group is None), None if soonest is None else soonest + self.spec.idle

    async def read(self, *, wait: float, timeout: float) -> GroupBatch:
        spec = self.spec
        doorbell = self.store.doorbell
        deadline = time.monotonic() + wait
        while True:
            seen = doorbell.current()
            try:
                anything, next_idle = await self.store.read("consume check", self._anything, timeout=timeout)
                taken = await self.store.run("consume", self._take, timeout=timeout, write=True) if anything else None
            except (Timeout, OutcomeUnknown) as e:
                if not ran_out_of_time(e):
                    raise  # a disk error, say: retrying at once would only spin
                # The file stayed locked past the deadline, or the read's commit is unknown:
                # what it took (if anything) is pending for this consumer and comes back to
                # some consumer after `idle`. Nothing is skipped; the caller simply reads again.
                return GroupBatch([], [], [], [], [])
            if taken is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return GroupBatch([], [], [], [], [])
                if next_idle is not None:
                    left = min(left, max(next_idle - time.time(), 0.001))
                await doorbell.changed(seen, left)
                continue
            rows, deleted, dead, lost, next_idle = taken
            batch = GroupBatch([], [], [], [], dead)
            if lost:
                batch.gaps.append(Gap(
                    reason="group-lost",
                    detail=f"consumer group {spec.group!r} of {spec.channel!r} had vanished; recreated at 0",
                    channels=(spec.channel,),
                ))
            if deleted:
                batch.gaps.append(Gap(
                    reason="deleted",
                    detail=f"{len(deleted)} pending entries of {spec.channel!r} in group {spec.group!r} "
                    "were deleted before their ack",
                    channels=(spec.channel,),
                    count=len(deleted),
                    ids=tuple(map(str, deleted)),
                ))
            if rows:
                ids = [str(id) for id, _, _ in rows]
                batch.items, _ = self.decoder.decode(spec.channel, [p for _, p, _ in rows], ids)
                batch.ids, batch.counts = ids, [c for _, _, c in rows]
            left = deadline - time.monotonic()
            if rows or batch.gaps or dead or left <= 0:
                return batch
            if next_idle is not None:
                left = min(left, max(next_idle - time.time(), 0.001))
            await doorbell.changed(seen, left)

    async def ack(self, ids: Sequence[str], *, timeout: float) -> list[bool]:
        spec = self.spec

        def job(conn: Conn, now: float) -> list[bool]:
            sql = "DELETE FROM msg_pending WHERE channel = ? AND grp = ? AND id = ?"
            return [conn.execute(sql, (self.wire, spec.group, int(id))).rowcount == 1 for id in ids]

        # Deleting a pending row twice is harmless, so a lost reply is a Timeout, not OutcomeUnknown.
        try:
            result: list[bool] = await self.store.run("ack", job, timeout=timeout, write=True)
        except OutcomeUnknown as e:
            raise Timeout(f"file: ack on {spec.channel!r} not confirmed ({e}); acking again is safe") from e
        return result

    async def close(self) -> None:
        pass

