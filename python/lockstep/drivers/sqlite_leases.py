"""Leases of the SQLite driver: state in the database, liveness by ``flock``, wake-ups by datagram.

**State.** Each operation is one ``BEGIN IMMEDIATE`` transaction on the driver's
connection thread: it loads the rows of the resources it touches into a
:class:`lockstep._core.LeaseTable`, applies the operation (the same rules as every
driver) and writes back what changed. So a crash mid-write leaves the old state or the
new one, and the fence counter (``lease_resource.fence``) is as durable as any commit.
TTLs run on the host clock (``time.time()``), shared by every process of the host.

**Death of a holder.** A coordinator holds an exclusive ``flock`` on one lock file in
``<db>.locks/`` (``holder-N.lock``, created 0600 and never unlinked, so two processes
can never lock two inodes under one name) for as long as it lives, and its holder rows
name that file (session ``<id>:N``); ``lease_lockfile`` records which session owns
file N and its inode. An acquirer that meets an unexpired holder or waiter of another
session tries that file with ``LOCK_EX | LOCK_NB``: when it gets the lock (same inode as
recorded) the owner's process is gone (the kernel drops a flock when its last
descriptor closes, even on ``kill -9``), so its leases are freed at once instead of at
their TTL. A file that is missing or was replaced (another inode) proves nothing: the
holder then keeps its lease until its TTL. ``fcntl``/``lockf`` record locks are never
used: they drop when any descriptor of the file closes, and never conflict within a
process.

**Waiting.** SQLite has no notifications. A release names the waiters that can now go;
after its commit, the releaser sends each a datagram on the Linux abstract-namespace
Unix socket of its coordinator (``\\0lockstep-wake-<session>``; no file to clean up, gone
when the process dies), which wakes it at once. Waiters also poll, starting at 2 ms
and backing off to 50 ms, which covers a lost datagram, a holder that died (found by
the flock test above) and processes in other network namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._core import LeaseTable
from ..errors import BackendError
from .lease_store import (
    AcquireRequest,
    Blocked,
    Busy,
    Grant,
    HolderInfo,
    LeaseStore,
    RenewItem,
    RenewReply,
)

if TYPE_CHECKING:
    from .sqlite import SqliteDriver

__all__ = ["SqliteLeaseStore"]

T = TypeVar("T")
MAX_LOCK_FILES = 4096  # holder-N.lock files tried before giving up
POLL_FIRST, POLL_MAX = 0.002, 0.05

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lease_resource (
           resource TEXT PRIMARY KEY NOT NULL, slots INTEGER NOT NULL, fence INTEGER NOT NULL
       ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lease_holder (
           resource TEXT NOT NULL, token TEXT NOT NULL, owner TEXT NOT NULL, session TEXT NOT NULL,
           fence INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (resource, token)
       ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lease_waiter (
           resource TEXT NOT NULL, seq INTEGER NOT NULL, ticket TEXT NOT NULL, owner TEXT NOT NULL,
           session TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (resource, seq)
       ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lease_value (
           resource TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, fence INTEGER NOT NULL,
           PRIMARY KEY (resource, key)
       ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS lease_lockfile (
           idx INTEGER PRIMARY KEY NOT NULL, session TEXT NOT NULL, inode TEXT NOT NULL
       )""",
)


def _wake_address(session: str) -> bytes:
    return b"\0lockstep-wake-" + session.encode()


def _inode(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


# -- rows <-> LeaseTable ---------------------------------------------------------------
def _load(conn: sqlite3.Connection, table: LeaseTable, ids: Sequence[str]) -> dict[str, Any]:
    """Load the resources' rows; returns their dumps, to write back only what changed."""
    for rid in ids:
        row = conn.execute("SELECT slots, fence FROM lease_resource WHERE resource = ?", (rid,)).fetchone()
        if row is None:
            continue
        holders = conn.execute(
            "SELECT token, owner, session, fence, expires_at FROM lease_holder WHERE resource = ?", (rid,)
        ).fetchall()
        waiters = conn.execute(
            "SELECT ticket, owner, session, expires_at FROM lease_waiter WHERE resource = ? ORDER BY seq", (rid,)
        ).fetchall()
        table.load(rid, row[0], row[1], holders, waiters)
    return {rid: table.dump(rid) for rid in ids}


def _save(conn: sqlite3.Connection, table: LeaseTable, before: dict[str, Any]) -> None:
    """Write back what the operation changed (most operations touch one or two rows)."""
    for rid, old in before.items():
        new = table.dump(rid)
        if new is None or new == old:
            continue
        slots, fence, holders, waiters = new
        old_slots, old_fence, old_holders, old_waiters = old or (None, None, [], [])
        if (slots, fence) != (old_slots, old_fence):
            conn.execute(
                "INSERT INTO lease_resource (resource, slots, fence) VALUES (?, ?, ?) ON CONFLICT (resource) "
                "DO UPDATE SET slots = excluded.slots, fence = max(fence, excluded.fence)",
                (rid, slots, fence),
            )
        if holders != old_holders:
            kept = {h[0] for h in holders}
            gone = [(rid, h[0]) for h in old_holders if h[0] not in kept]
            conn.executemany("DELETE FROM lease_holder WHERE resource = ? AND token = ?", gone)
            fresh = [(rid, *h) for h in holders if h not in old_holders]
            conn.executemany("INSERT OR REPLACE INTO lease_holder VALUES (?, ?, ?, ?, ?, ?)", fresh)
        if waiters != old_waiters:  # the order matters: write the line again
            conn.execute("DELETE FROM lease_waiter WHERE resource = ?", (rid,))
            conn.executemany(
                "INSERT INTO lease_waiter VALUES (?, ?, ?, ?, ?, ?)", [(rid, i, *w) for i, w in enumerate(waiters)]
            )


class SqliteLeaseStore(LeaseStore):
    epoch = None
    poll_max = POLL_MAX

    def __init__(self, driver: SqliteDriver, *, session: str, owner: str, keys: Any = None) -> None:
        super().__init__(session=session, owner=owner, keys=keys)
        self.driver = driver
        self.locks_dir = Path(f"{driver.path}.locks")
        self.holder_session = f"{session}:-"  #: "<session>:N" once lock file N is ours
        self._lock_fd: int | None = None
        self._ready = False
        self._receiver: socket.socket | None = None
        self._sender: socket.socket | None = None

    def poll_interval(self, attempt: int) -> float:
        return min(POLL_MAX, POLL_FIRST * 2 ** min(attempt, 10))

    def lock_path(self, idx: int) -> Path:
        return self.locks_dir / f"holder-{idx}.lock"

    # -- setup: tables and this coordinator's lock file ---------------------------------
    async def _op(
        self, op: str, job: Callable[[sqlite3.Connection, float], T], *, timeout: float, write: bool = True
    ) -> T:
        if not self._ready:
            await self._setup(timeout)
        return await self.driver._run(op, job, timeout=timeout, write=write)

    async def _setup(self, timeout: float) -> None:
        """Create the tables and take this coordinator's lock file (once)."""
        taken: list[tuple[int, int]] = []

        def job(conn: sqlite3.Connection, now: float) -> None:
            for statement in SCHEMA:
                conn.execute(statement)
            taken.append(self._take_lock_file(conn))

        try:
            await self.driver._run("lease setup", job, timeout=timeout, write=True)
        except BaseException:
            for fd, _ in taken:  # not committed (or not known to be): never hold a file no row names
                os.close(fd)
            raise
        self._lock_fd, idx = taken[0]
        self.holder_session = f"{self.session}:{idx}"
        self._ready = True

    def _take_lock_file(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Lock the first free holder-N.lock whose inode is the one recorded for N."""
        try:
            self.locks_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"file: cannot create the lock folder {self.locks_dir}: {exc}") from exc
        for idx in range(MAX_LOCK_FILES):
            fd = os.open(self.lock_path(idx), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                inode = _inode(os.fstat(fd))
                row = conn.execute("SELECT inode FROM lease_lockfile WHERE idx = ?", (idx,)).fetchone()
                if row is not None and row[0] != inode:
                    raise BlockingIOError  # replaced under a holder that may still lock the old inode
                conn.execute(
                    "INSERT OR REPLACE INTO lease_lockfile (idx, session, inode) VALUES (?, ?, ?)",
                    (idx, f"{self.session}:{idx}", inode),
                )
                return fd, idx
            except BlockingIOError:
                os.close(fd)
            except BaseException:
                os.close(fd)
                raise
        raise BackendError(f"file: all {MAX_LOCK_FILES} holder lock files in {self.locks_dir} are in use")

    def _session_dead(self, conn: sqlite3.Connection, session: str) -> bool:
        """True only when the session's lock file proves its process is gone."""
        _, _, idx = session.rpartition(":")
        if not idx.isdigit():
            return False
        row = conn.execute("SELECT session, inode FROM lease_lockfile WHERE idx = ?", (int(idx),)).fetchone()
        if row is None:
            return False
        if row[0] != session:
            return True  # a newer coordinator locked the same inode: this one let go of it
        try:
            fd = os.open(self.lock_path(int(idx)), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return False  # removed: proves nothing
        try:
            if _inode(os.fstat(fd)) != row[1]:
                return False  # replaced: proves nothing
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # drops our test lock

    def _free_dead(self, conn: sqlite3.Connection, table: LeaseTable, ids: Sequence[str], now: float) -> list[str]:
        """Free the holders and waiters of dead sessions among these resources."""
        sessions = {h[2] for rid in ids for h in table.holders(rid, now)}
        sessions |= {w[2] for rid in ids for w in table.queue(rid, now)}
        sessions.discard(self.holder_session)
        wake: list[str] = []
        for session in sessions:
            if self._session_dead(conn, session):
                wake += table.release_session(session, now)[1]
                conn.execute("DELETE FROM lease_holder WHERE session = ?", (session,))
                conn.execute("DELETE FROM lease_waiter WHERE session = ?", (session,))
        return wake

    # -- operations --------------------------------------------------------------------
    async def acquire(self, req: AcquireRequest, *, timeout: float) -> Grant | Busy:
        ids = [self.rid(req.kind, n) for n in req.names]

        def job(conn: sqlite3.Connection, now: float) -> tuple[Grant | Busy, list[str]]:
            table = LeaseTable()
            before = _load(conn, table, ids)
            wake = self._free_dead(conn, table, ids, now)
            outcome = table.acquire(
                req.token, req.owner, self.holder_session, ids, req.slots, req.ttl, now,
                req.queue_ttl, list(req.floors) or None,
            )  # fmt: skip
            _save(conn, table, before)
            if outcome[0] == "granted":
                return Grant(tuple(outcome[1]), tuple(self.name_of(r) for r in outcome[2])), wake
            _, blockers, retry_in, queued = outcome
            blocked = tuple(Blocked(self.name_of(r), tuple(h), tuple(w)) for r, h, w in blockers)
            return Busy(blocked, retry_in, queued), wake

        result, wake = await self._op("lease acquire", job, timeout=timeout)
        self._send_wakeups(wake, skip=req.token)
        return result

    async def renew(self, items: Sequence[RenewItem], *, timeout: float) -> RenewReply:
        def job(conn: sqlite3.Connection, now: float) -> RenewReply:
            held = []
            for item in items:
                ids = [self.rid(item.kind, n) for n in item.names]
                table = LeaseTable()
                before = _load(conn, table, ids)
                held.append(table.renew(item.token, ids, item.ttl, now))
                _save(conn, table, before)
            return RenewReply(held)

        return await self._op("lease renew", job, timeout=timeout)

    async def release(self, token: str, kind: str, names: Sequence[str], *, timeout: float) -> bool:
        ids = [self.rid(kind, n) for n in names]

        def job(conn: sqlite3.Connection, now: float) -> tuple[bool, list[str]]:
            table = LeaseTable()
            before = _load(conn, table, ids)
            held, wake = table.release(token, ids, now)
            _save(conn, table, before)
            return held, wake

        held, wake = await self._op("lease release", job, timeout=timeout)
        self._send_wakeups(wake)
        return held

    async def fenced_set(
        self, token: str, kind: str, name: str, fence: int, key: str, value: bytes, *, timeout: float
    ) -> bool:
        rid = self.rid(kind, name)

        def job(conn: sqlite3.Connection, now: float) -> bool:
            table = LeaseTable()
            _load(conn, table, [rid])
            if not table.is_held(token, rid, fence, now):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO lease_value (resource, key, value, fence) VALUES (?, ?, ?, ?)",
                (rid, key, value, fence),
            )
            return True

        return await self._op("fenced set", job, timeout=timeout)

    async def fenced_get(self, kind: str, name: str, key: str, *, timeout: float) -> bytes | None:
        rid = self.rid(kind, name)

        def job(conn: sqlite3.Connection, now: float) -> bytes | None:
            row = conn.execute("SELECT value FROM lease_value WHERE resource = ? AND key = ?", (rid, key)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._op("fenced get", job, timeout=timeout, write=False)

    async def holders(self, kind: str, name: str, *, timeout: float) -> list[HolderInfo]:
        rid = self.rid(kind, name)

        def job(conn: sqlite3.Connection, now: float) -> list[HolderInfo]:
            rows = conn.execute(
                "SELECT owner, fence, expires_at FROM lease_holder WHERE resource = ? AND expires_at > ? "
                "ORDER BY fence",
                (rid, now),
            ).fetchall()
            return [HolderInfo(owner, fence, expires_at - now) for owner, fence, expires_at in rows]

        return await self._op("lease holders", job, timeout=timeout, write=False)

    # -- wake-ups ------------------------------------------------------------------------
    async def prepare_wait(self, *, timeout: float) -> None:
        if self._receiver is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.bind(_wake_address(self.session))
        except OSError:
            sock.close()  # no abstract namespace here: waiters just poll
            return
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_datagrams)
        self._receiver = sock

    def _on_datagrams(self) -> None:
        assert self._receiver is not None
        while True:
            try:
                data = self._receiver.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.deliver(data.decode("ascii", "replace"))

    def _send_wakeups(self, tickets: Sequence[str], skip: str = "") -> None:
        for ticket in tickets:
            if ticket == skip:
                continue
            if self._sender is None:
                self._sender = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            with contextlib.suppress(OSError):  # gone, full, or elsewhere: its poll covers it
                self._sender.sendto(ticket.encode(), _wake_address(ticket.partition(".")[0]))

    async def close(self) -> None:
        if self._receiver is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._receiver.fileno())
            self._receiver.close()
            self._receiver = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # our leases were released first; this ends the session
            self._lock_fd = None
        await super().close()
