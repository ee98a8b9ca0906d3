"""Membership of the SQLite driver: tables beside ``kv``, each decision one transaction.

Every write runs in the driver's ``BEGIN IMMEDIATE`` transaction on the host clock
(``time.time()``, shared by every process on the host), so a reap re-checks staleness
in the same transaction that deletes the record and the owned keys: two reapers in two
processes serialize on the database's write lock, and the second finds nothing left.
Scratch keys are ordinary ``kv`` rows (readable with ``driver.get``), written with the
statements of :mod:`.sqlite_schema`.

Tables (created on first use, all keyed by namespace)::

    member(ns, agent, inc, beat, due, ttl, interval, meta, host, hostid, pid, start,
           session, registered)                  -- indexed by (ns, due), (ns, beat),
                                                 -- (ns, hostid, pid, start)
    member_owned(ns, agent, key, expires_at)     -- the ownership index of keys
    member_lease(ns, agent, token, kind, names)  -- the ownership index of leases
    member_seq(ns, seq)                          -- incarnations
    member_log(ns, seq, entry)                   -- lifecycle log, capped per namespace

Stale agents are found through the ``due``/``beat`` indexes, so a sweep reads only the
stale range; the process index finds this host's processes without reading the rest.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import sqlite_schema as tables
from .member_store import (
    LOG_CAP,
    Claimed,
    MemberRecord,
    MemberStore,
    MemoryUsage,
    OwnedLease,
    Reason,
    Registration,
    lease_entry,
    log_entry,
    parse_lease,
)

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .sqlite import SqliteDriver

__all__ = ["SqliteMemberStore"]

T = TypeVar("T")
Conn = sqlite3.Connection

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS member (
           ns TEXT NOT NULL, agent TEXT NOT NULL, inc INTEGER NOT NULL, beat REAL NOT NULL,
           due REAL NOT NULL, ttl REAL NOT NULL, interval REAL NOT NULL, meta BLOB NOT NULL,
           host TEXT NOT NULL, hostid TEXT NOT NULL, pid INTEGER NOT NULL, start TEXT NOT NULL,
           session TEXT NOT NULL, registered REAL NOT NULL, PRIMARY KEY (ns, agent)
       ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS member_due ON member(ns, due)",
    "CREATE INDEX IF NOT EXISTS member_beat ON member(ns, beat)",
    "CREATE INDEX IF NOT EXISTS member_process ON member(ns, hostid, pid, start)",
    """CREATE TABLE IF NOT EXISTS member_owned (
           ns TEXT NOT NULL, agent TEXT NOT NULL, key TEXT NOT NULL, expires_at REAL,
           PRIMARY KEY (ns, agent, key)
       ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS member_lease (
           ns TEXT NOT NULL, agent TEXT NOT NULL, token TEXT NOT NULL, entry BLOB NOT NULL,
           PRIMARY KEY (ns, agent, token)
       ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS member_seq (ns TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS member_log (
           ns TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (ns, seq)
       ) WITHOUT ROWID""",
)
COLUMNS = "agent, inc, beat, ttl, interval, meta, host, hostid, pid, start, session, registered"


class SqliteMemberStore(MemberStore):
    clock = "host"

    def __init__(self, driver: SqliteDriver, keys: Keyspace) -> None:
        self.driver = driver
        self.ns = keys.namespace
        self._ready = False

    async def _op(self, op: str, job: Callable[[Conn, float], T], *, timeout: float, write: bool) -> T:
        if not self._ready:
            await self.driver._run("membership setup", _create_tables, timeout=timeout, write=True)
            self._ready = True
        if write:
            return await self.driver._run(f"membership {op}", job, timeout=timeout, write=True)

        def snapshot(conn: Conn, now: float) -> T:
            conn.execute("BEGIN")  # one consistent view across the statements of a read
            try:
                return job(conn, now)
            finally:
                conn.execute("COMMIT")

        return await self.driver._run(f"membership {op}", snapshot, timeout=timeout, write=False)

    # -- helpers (on the connection thread) ---------------------------------------------
    def _record(self, conn: Conn, row: Sequence[Any], now: float) -> MemberRecord:
        agent, inc, beat, ttl, interval, meta, host, hostid, pid, start, session, registered = row
        owned = conn.execute(
            "SELECT count(*) FROM member_owned WHERE ns = ? AND agent = ? AND (expires_at IS NULL OR expires_at > ?)",
            (self.ns, agent, now),
        ).fetchone()[0]
        leases = conn.execute(
            "SELECT count(*) FROM member_lease WHERE ns = ? AND agent = ?", (self.ns, agent)
        ).fetchone()[0]
        return MemberRecord(
            agent=agent, incarnation=inc, last_beat=beat, age=now - beat, ttl=ttl, interval=interval,
            meta=bytes(meta), host=host, hostid=hostid, pid=pid, start=start, session=session,
            registered_at=registered, owned_keys=owned, owned_leases=leases,
        )  # fmt: skip

    def _is_current(self, conn: Conn, agent: str, incarnation: int) -> bool:
        row = conn.execute("SELECT inc FROM member WHERE ns = ? AND agent = ?", (self.ns, agent)).fetchone()
        return row is not None and row[0] == incarnation

    def _remove(self, conn: Conn, agent: str, now: float, reason: str, reaper: str | None) -> Claimed | None:
        """Delete the agent, its owned keys and its index rows; log it if reaped."""
        row = conn.execute("SELECT inc, beat FROM member WHERE ns = ? AND agent = ?", (self.ns, agent)).fetchone()
        if row is None:
            return None
        where = (self.ns, agent)
        owned = [k for (k,) in conn.execute("SELECT key FROM member_owned WHERE ns = ? AND agent = ?", where)]
        deleted = tables.delete(conn, now, owned) if owned else 0
        leases = tuple(
            parse_lease(token, entry)
            for token, entry in conn.execute("SELECT token, entry FROM member_lease WHERE ns = ? AND agent = ?", where)
        )
        for table in ("member_owned", "member_lease", "member"):
            conn.execute(f"DELETE FROM {table} WHERE ns = ? AND agent = ?", where)
        claimed = Claimed(agent, row[0], reason, now - row[1], deleted, leases)
        if reaper is not None:
            self._log(conn, log_entry(claimed, reaper, now))
        return claimed

    def _log(self, conn: Conn, entry: bytes) -> None:
        top = conn.execute("SELECT max(seq) FROM member_log WHERE ns = ?", (self.ns,)).fetchone()[0] or 0
        conn.execute("INSERT INTO member_log (ns, seq, entry) VALUES (?, ?, ?)", (self.ns, top + 1, entry))
        conn.execute("DELETE FROM member_log WHERE ns = ? AND seq <= ?", (self.ns, top + 1 - LOG_CAP))

    # -- the operations --------------------------------------------------------------
    async def register(self, reg: Registration, *, timeout: float) -> int | MemberRecord:
        def job(conn: Conn, now: float) -> int | MemberRecord:
            sql = f"SELECT {COLUMNS} FROM member WHERE ns = ? AND agent = ?"
            row = conn.execute(sql, (self.ns, reg.agent)).fetchone()
            if row is not None:
                return self._record(conn, row, now)
            conn.execute(
                "INSERT INTO member_seq (ns, seq) VALUES (?, 1) ON CONFLICT (ns) DO UPDATE SET seq = seq + 1",
                (self.ns,),
            )
            inc = conn.execute("SELECT seq FROM member_seq WHERE ns = ?", (self.ns,)).fetchone()[0]
            conn.execute(
                "INSERT INTO member VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.ns, reg.agent, inc, now, now + reg.ttl, reg.ttl, reg.interval, reg.meta, reg.host,
                 reg.hostid, reg.pid, reg.start, reg.session, now),
            )  # fmt: skip
            return int(inc)

        return await self._op("register", job, timeout=timeout, write=True)

    async def heartbeat(self, beats: Sequence[tuple[str, int]], *, timeout: float) -> list[bool]:
        def job(conn: Conn, now: float) -> list[bool]:
            return [
                conn.execute(
                    "UPDATE member SET beat = ?, due = ? + ttl WHERE ns = ? AND agent = ? AND inc = ?",
                    (now, now, self.ns, agent, inc),
                ).rowcount
                == 1
                for agent, inc in beats
            ]

        return await self._op("heartbeat", job, timeout=timeout, write=True)

    async def deregister(self, agent: str, incarnation: int, *, timeout: float) -> Claimed | None:
        def job(conn: Conn, now: float) -> Claimed | None:
            if not self._is_current(conn, agent, incarnation):
                return None
            return self._remove(conn, agent, now, "left", None)

        return await self._op("deregister", job, timeout=timeout, write=True)

    async def put(
        self, agent: str, incarnation: int, key: str, value: bytes, ttl: float | None, *, timeout: float
    ) -> bool:
        def job(conn: Conn, now: float) -> bool:
            if not self._is_current(conn, agent, incarnation):
                return False
            tables.set_value(conn, now, key, bytes(value), ttl, False)
            conn.execute(
                "DELETE FROM member_owned WHERE ns = ? AND agent = ? AND expires_at <= ?", (self.ns, agent, now)
            )  # entries of keys expired since: the index stays bounded
            conn.execute(
                "INSERT OR REPLACE INTO member_owned VALUES (?, ?, ?, ?)",
                (self.ns, agent, key, None if ttl is None else now + ttl),
            )
            return True

        return await self._op("put", job, timeout=timeout, write=True)

    async def delete_owned(self, agent: str, incarnation: int, key: str, *, timeout: float) -> bool | None:
        def job(conn: Conn, now: float) -> bool | None:
            if not self._is_current(conn, agent, incarnation):
                return None
            conn.execute("DELETE FROM member_owned WHERE ns = ? AND agent = ? AND key = ?", (self.ns, agent, key))
            return tables.delete(conn, now, [key]) == 1

        return await self._op("delete", job, timeout=timeout, write=True)

    async def own_lease(self, agent: str, incarnation: int, lease: OwnedLease, *, timeout: float) -> bool:
        def job(conn: Conn, now: float) -> bool:
            if not self._is_current(conn, agent, incarnation):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO member_lease VALUES (?, ?, ?, ?)",
                (self.ns, agent, lease.token, lease_entry(lease)),
            )
            return True

        return await self._op("own lease", job, timeout=timeout, write=True)

    async def disown_lease(self, agent: str, token: str, *, timeout: float) -> None:
        def job(conn: Conn, now: float) -> None:
            conn.execute("DELETE FROM member_lease WHERE ns = ? AND agent = ? AND token = ?", (self.ns, agent, token))

        await self._op("disown lease", job, timeout=timeout, write=True)

    async def members(self, *, timeout: float) -> list[MemberRecord]:
        def job(conn: Conn, now: float) -> list[MemberRecord]:
            rows = conn.execute(f"SELECT {COLUMNS} FROM member WHERE ns = ? ORDER BY agent", (self.ns,)).fetchall()
            return [self._record(conn, row, now) for row in rows]

        return await self._op("members", job, timeout=timeout, write=False)

    async def leases(self, agent: str, *, timeout: float) -> list[OwnedLease]:
        def job(conn: Conn, now: float) -> list[OwnedLease]:
            rows = conn.execute("SELECT token, entry FROM member_lease WHERE ns = ? AND agent = ?", (self.ns, agent))
            return [parse_lease(token, entry) for token, entry in rows]

        return await self._op("leases", job, timeout=timeout, write=False)

    async def reap_stale(self, threshold: float | None, limit: int, reaper: str, *, timeout: float) -> list[Claimed]:
        def job(conn: Conn, now: float) -> list[Claimed]:
            if threshold is None:  # silent for longer than its own ttl
                sql, bound = "SELECT agent FROM member WHERE ns = ? AND due < ? ORDER BY due LIMIT ?", now
            else:
                sql, bound = "SELECT agent FROM member WHERE ns = ? AND beat < ? ORDER BY beat LIMIT ?", now - threshold
            agents = [a for (a,) in conn.execute(sql, (self.ns, bound, limit))]
            return [c for a in agents if (c := self._remove(conn, a, now, "stale", reaper)) is not None]

        return await self._op("reap", job, timeout=timeout, write=True)

    async def local_processes(self, hostid: str, *, timeout: float) -> list[tuple[int, str]]:
        def job(conn: Conn, now: float) -> list[tuple[int, str]]:
            sql = "SELECT DISTINCT pid, start FROM member WHERE ns = ? AND hostid = ? ORDER BY pid"
            return [(int(p), str(s)) for p, s in conn.execute(sql, (self.ns, hostid))]

        return await self._op("local processes", job, timeout=timeout, write=False)

    async def reap_process(self, hostid: str, pid: int, start: str, reaper: str, *, timeout: float) -> list[Claimed]:
        def job(conn: Conn, now: float) -> list[Claimed]:
            sql = "SELECT agent FROM member WHERE ns = ? AND hostid = ? AND pid = ? AND start = ?"
            agents = [a for (a,) in conn.execute(sql, (self.ns, hostid, pid, start))]
            return [c for a in agents if (c := self._remove(conn, a, now, "process gone", reaper)) is not None]

        return await self._op("reap process", job, timeout=timeout, write=True)

    async def reap_agent(
        self, agent: str, incarnation: int, reason: Reason, reaper: str, *, timeout: float
    ) -> Claimed | None:
        def job(conn: Conn, now: float) -> Claimed | None:
            row = conn.execute("SELECT inc, due FROM member WHERE ns = ? AND agent = ?", (self.ns, agent)).fetchone()
            if row is None or row[0] != incarnation or (reason == "stale" and row[1] >= now):
                return None
            return self._remove(conn, agent, now, reason, reaper)

        return await self._op("reap agent", job, timeout=timeout, write=True)

    async def lifecycle(self, limit: int, *, timeout: float) -> list[bytes]:
        def job(conn: Conn, now: float) -> list[bytes]:
            sql = "SELECT entry FROM member_log WHERE ns = ? ORDER BY seq DESC LIMIT ?"
            return [bytes(e) for (e,) in conn.execute(sql, (self.ns, limit))]

        return await self._op("lifecycle", job, timeout=timeout, write=False)

    async def memory(self, *, timeout: float) -> MemoryUsage:
        def job(conn: Conn, now: float) -> MemoryUsage:
            def pragma(name: str) -> int:
                return int(conn.execute(f"PRAGMA {name}").fetchone()[0])

            page, pages, free = pragma("page_size"), pragma("page_count"), pragma("freelist_count")
            owned_bytes, owned_keys = conn.execute(
                "SELECT coalesce(sum(length(kv.key) + coalesce(length(kv.value), 0)), 0), count(kv.key) "
                "FROM member_owned o JOIN kv ON kv.key = o.key WHERE o.ns = ? "
                "AND (kv.expires_at IS NULL OR kv.expires_at > ?)",
                (self.ns, now),
            ).fetchone()
            record_bytes, agents = conn.execute(
                "SELECT coalesce(sum(length(agent) + length(meta) + length(host) + length(hostid) "
                "+ length(session) + 64), 0), count(*) FROM member WHERE ns = ?",
                (self.ns,),
            ).fetchone()
            index_bytes = sum(
                conn.execute(sql, (self.ns,)).fetchone()[0]
                for sql in (
                    "SELECT coalesce(sum(length(agent) + length(key) + 16), 0) FROM member_owned WHERE ns = ?",
                    "SELECT coalesce(sum(length(agent) + length(token) + length(entry)), 0) "
                    "FROM member_lease WHERE ns = ?",
                    "SELECT coalesce(sum(length(entry) + 8), 0) FROM member_log WHERE ns = ?",
                )
            )
            return MemoryUsage(
                backend_bytes=(pages - free) * page,
                namespace_bytes=int(owned_bytes + record_bytes + index_bytes),
                keys=int(owned_keys + agents),
                detail={"file_bytes": pages * page, "free_bytes": free * page, "page_size": page,
                        "how": "pages in use; the namespace's share is its rows' sizes"},
            )  # fmt: skip

        return await self._op("memory", job, timeout=timeout, write=False)

    async def drop_indexes(self, *, timeout: float, keep_counter: bool = True) -> int:
        tables_to_clear = ["member_log", "member_owned", "member_lease", "member"]
        if not keep_counter:
            tables_to_clear.append("member_seq")

        def job(conn: Conn, now: float) -> int:
            gone = 0
            for table in tables_to_clear:
                gone += conn.execute(f"DELETE FROM {table} WHERE ns = ?", (self.ns,)).rowcount
            return gone

        return await self._op("drop indexes", job, timeout=timeout, write=True)


def _create_tables(conn: Conn, now: float) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
