"""Signal logs of the file driver: two tables in the SQLite file, shared by processes.

Layout (created on first use, next to the key/value tables)::

    signal_head(key PRIMARY KEY, first, last)        -- the log's retained bounds
    signal_entry(key, gen, ts, record, PRIMARY KEY (key, gen))

An append is one ``BEGIN IMMEDIATE`` transaction (read ``last``, insert ``last + 1``,
delete what falls out of ``keep``), so processes take turns and a process killed
mid-append leaves the log as it was. ``ts`` is the host clock read inside it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .signal_store import LogEntry, LogInfo, LogRead, SignalStore

if TYPE_CHECKING:
    from .sqlite import SqliteDriver

__all__ = ["SqliteSignalStore"]

T = TypeVar("T")
Conn = sqlite3.Connection

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS signal_head (
           key TEXT PRIMARY KEY NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS signal_entry (
           key TEXT NOT NULL, gen INTEGER NOT NULL, ts REAL NOT NULL, record BLOB NOT NULL,
           PRIMARY KEY (key, gen)) WITHOUT ROWID""",
)


def _bounds(conn: Conn, key: str) -> tuple[int, int]:
    row = conn.execute("SELECT first, last FROM signal_head WHERE key = ?", (key,)).fetchone()
    return (1, 0) if row is None else (int(row[0]), int(row[1]))


class SqliteSignalStore(SignalStore):
    def __init__(self, driver: SqliteDriver) -> None:
        self.driver = driver
        self._ready = False

    async def _op(self, op: str, job: Callable[[Conn, float], T], *, timeout: float, write: bool) -> T:
        if not self._ready:

            def create(conn: Conn, now: float) -> None:
                for statement in SCHEMA:
                    conn.execute(statement)

            await self.driver._run("signal setup", create, timeout=timeout, write=True)
            self._ready = True
        return await self.driver._run(op, job, timeout=timeout, write=write)

    async def append(self, key: str, record: bytes, *, keep: int, timeout: float) -> LogEntry:
        data = bytes(record)

        def job(conn: Conn, _now: float) -> LogEntry:
            first, last = _bounds(conn, key)
            gen, now = last + 1, time.time()
            conn.execute("INSERT INTO signal_entry(key, gen, ts, record) VALUES (?, ?, ?, ?)", (key, gen, now, data))
            first = max(first, gen - keep + 1)
            conn.execute("DELETE FROM signal_entry WHERE key = ? AND gen < ?", (key, first))
            conn.execute(
                "INSERT INTO signal_head(key, first, last) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET first = excluded.first, last = excluded.last",
                (key, first, gen),
            )
            return LogEntry(gen, now, data)

        return await self._op("signal append", job, timeout=timeout, write=True)

    async def read(self, key: str, after: int | None, *, timeout: float) -> LogRead:
        # One statement, so the bounds and the entry come from one snapshot.
        query = (
            "SELECT h.first, h.last, e.gen, e.ts, e.record FROM signal_head h "
            "LEFT JOIN signal_entry e ON e.key = h.key AND e.gen = "
            "(CASE WHEN ?2 IS NULL THEN h.last ELSE max(?2 + 1, h.first) END) WHERE h.key = ?1"
        )

        def job(conn: Conn, _now: float) -> LogRead:
            row = conn.execute(query, (key, after)).fetchone()
            if row is None:
                return LogRead(None, 1, 0, after)
            first, last, gen, ts, record = row
            entry = None if gen is None else LogEntry(int(gen), float(ts), bytes(record))
            return LogRead(entry, int(first), int(last), after)

        return await self._op("signal read", job, timeout=timeout, write=False)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        def job(conn: Conn, _now: float) -> int:
            gone = 0
            for key in keys:
                conn.execute("DELETE FROM signal_entry WHERE key = ?", (key,))
                gone += conn.execute("DELETE FROM signal_head WHERE key = ?", (key,)).rowcount
            return gone

        return await self._op("signal delete", job, timeout=timeout, write=True)

    async def logs(self, prefix: str, *, timeout: float) -> list[LogInfo]:
        # keys under the prefix form one range of the primary key: [prefix, prefix + U+10FFFF)
        query = (
            "SELECT h.key, h.first, h.last, e.ts FROM signal_head h "
            "LEFT JOIN signal_entry e ON e.key = h.key AND e.gen = h.last "
            "WHERE h.key >= ? AND h.key < ? ORDER BY h.key"
        )

        def job(conn: Conn, _now: float) -> list[LogInfo]:
            rows = conn.execute(query, (prefix, prefix + "\U0010ffff")).fetchall()
            return [LogInfo(key, int(first), int(last), None if ts is None else float(ts)) for key, first, last, ts in rows]

        return await self._op("signal logs", job, timeout=timeout, write=False)
