"""Leases of the file driver: records in lock files, durable epochs in SQLite, wake-ups by datagram.

**State.** Each resource's holders, queue and fence counter are one record in its own
lock file, changed under ``flock`` (see :mod:`.sqlite_lease_records`): acquire, renew and
release run right on the event loop, a few system calls each, with the rules of
:class:`lockstep._core.LeaseTable` (those of every driver). Only when another process is
inside a record's critical section does an operation move to the driver's worker thread
and wait there. SQLite keeps what must outlive the host: the epoch of each boot (the
high bits of every fence) and fenced values. TTLs run on the host clock
(``time.time()``), shared by every process of the host.

**Death of a holder.** A coordinator holds an exclusive ``flock`` on its liveness file
(``holder-N.lock``) for as long as it lives; its holder and queue rows name that file.
An acquirer that meets an unexpired holder or waiter of another session tests the file:
when it gets the lock, the owner's process is gone, so its leases are freed at once
instead of at their TTL. A file that is missing or was replaced (another inode) proves
nothing: the holder then keeps its lease until its TTL.

**Waiting.** A release names the waiters that can now go; after writing the record,
the releaser sends each a datagram on the Linux abstract-namespace Unix socket of its
coordinator (``\\0lockstep-wake-<session>``; no file to clean up, gone when the process
dies), which wakes it at once. Waiters also poll, starting at 2 ms and backing off to
50 ms, which covers a lost datagram, a holder that died (found by the flock test above)
and processes in other network namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
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
    ResourceLeases,
)
from .sqlite_lease_records import (
    HolderFile,
    RecordFiles,
    boot_epoch,
    current_boot_id,
    session_dead,
)

if TYPE_CHECKING:
    from .sqlite import SqliteDriver

__all__ = ["SqliteLeaseStore"]

T = TypeVar("T")
POLL_FIRST, POLL_MAX = 0.002, 0.05
RID_CACHE_SIZE = 4096

VALUES_TABLE = """CREATE TABLE IF NOT EXISTS lease_value (
    resource TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, fence INTEGER NOT NULL,
    PRIMARY KEY (resource, key)
) WITHOUT ROWID"""


def _failed(exc: OSError) -> BackendError:
    return BackendError(f"file: a lease record operation failed: {exc}")


def _wake_address(session: str) -> bytes:
    return b"\0lockstep-wake-" + session.encode()


class SqliteLeaseStore(LeaseStore):
    epoch = None
    poll_max = POLL_MAX

    def __init__(self, driver: SqliteDriver, *, session: str, owner: str, keys: Any = None) -> None:
        super().__init__(session=session, owner=owner, keys=keys)
        self.driver = driver
        self.locks_dir = Path(f"{driver.path}.locks")
        self.records = RecordFiles(self.locks_dir, current_boot_id())
        self._holder: HolderFile | None = None
        self.holder_session = f"{session}:-"  #: "<session>:<N>:<inode>" once holder-N.lock is ours
        self._receiver: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._rid_cache: dict[tuple[str, ...], list[str]] = {}

    def poll_interval(self, attempt: int) -> float:
        return min(POLL_MAX, POLL_FIRST * (1 << min(attempt, 10)))

    # -- setup: tables, this boot's epoch, this coordinator's liveness file -------------
    async def _setup(self, timeout: float) -> None:
        if self._holder is not None:
            return

        def job(conn: sqlite3.Connection, now: float) -> tuple[int, HolderFile]:
            conn.execute(VALUES_TABLE)
            epoch = boot_epoch(conn, self.records.boot, self.driver.opts["synchronous"])
            try:
                self.locks_dir.mkdir(mode=0o700, exist_ok=True)
                return epoch, HolderFile(self.locks_dir, self.session)
            except OSError as exc:
                raise BackendError(f"file: cannot use the lock folder {self.locks_dir}: {exc}") from exc

        epoch, holder = await self.driver._run("lease setup", job, timeout=timeout, write=False)
        if self._holder is not None:  # two first operations raced: keep one file
            holder.close()
            return
        self.records.base_fence = epoch << 40
        self._holder, self.holder_session = holder, holder.holder_session

    async def _locked(self, op: str, rids: Sequence[str], work: Callable[[LeaseTable, float], T], timeout: float) -> T:
        """``work(table, now)`` on the records of ``rids``: on the loop when their critical
        sections are free (the common case), else on the worker thread, which waits.
        (acquire and release inline the common case: one coroutine less on the hot path.)"""
        if self._holder is None:
            await self._setup(timeout)
        result = self.records.locked(rids, work)
        return await self._waiting(op, rids, work, timeout) if result is None else result

    async def _waiting(self, op: str, rids: Sequence[str], work: Callable[[LeaseTable, float], T], timeout: float) -> T:
        give_up = time.monotonic() + timeout
        return await self.driver._run(
            op, lambda conn, now: self.records.locked_blocking(rids, work, give_up), timeout=timeout, write=False
        )

    def _rids(self, kind: str, names: Sequence[str]) -> list[str]:
        """The resource ids of ``names`` (cached: the hot path asks for the same ones)."""
        key = (kind, names[0]) if len(names) == 1 else (kind, *names)
        found = self._rid_cache.get(key)
        if found is None:
            if len(self._rid_cache) >= RID_CACHE_SIZE:
                self._rid_cache.clear()
            found = self._rid_cache[key] = [self.rid(kind, n) for n in names]
        return found

    def _free_dead(self, table: LeaseTable, rids: Sequence[str], now: float) -> list[str]:
        """Free the holders and waiters of dead sessions among these resources."""
        sessions = {h[2] for rid in rids for h in table.holders(rid, now)}
        sessions |= {w[2] for rid in rids for w in table.queue(rid, now)}
        sessions.discard(self.holder_session)
        wake: list[str] = []
        for session in sessions:
            if session_dead(self.locks_dir, session):
                wake += table.release_session(session, now)[1]
        return wake

    # -- operations --------------------------------------------------------------------
    async def acquire(self, req: AcquireRequest, *, timeout: float) -> Grant | Busy:
        if self._holder is None:
            await self._setup(timeout)
        names = req.names
        if len(names) == 1:  # the hot path: granted at once, in one call
            try:
                granted = self.records.hot(self._rids(req.kind, names)[0]).try_grant(
                    req.token, req.owner, self.holder_session, req.slots, req.ttl, req.floors[0] if req.floors else 0
                )
            except OSError as exc:
                raise _failed(exc) from exc
            if granted is not None:
                return Grant((granted[0],), names if granted[1] else ())
        return await self._acquire(req, self._rids(req.kind, names), timeout)

    async def _acquire(self, req: AcquireRequest, rids: list[str], timeout: float) -> Grant | Busy:
        """Acquire, the general path: several resources, busy ones, a queue to join."""
        floors = list(req.floors) or None

        def work(table: LeaseTable, now: float) -> tuple[Any, list[str]]:
            args = (req.token, req.owner, self.holder_session, rids, req.slots, req.ttl, now, req.queue_ttl, floors)
            outcome = table.acquire(*args)
            if outcome[0] == "granted":
                return outcome, []
            # Busy: free what dead processes hold or wait for, and look again (the same step).
            wake = self._free_dead(table, rids, now)
            return (table.acquire(*args) if wake or outcome[1] else outcome), wake

        done = self.records.locked(rids, work)
        outcome, wake = await self._waiting("lease acquire", rids, work, timeout) if done is None else done
        if wake:
            self._send_wakeups(wake, skip=req.token)
        if outcome[0] == "granted":
            return Grant(tuple(outcome[1]), tuple(self.name_of(r) for r in outcome[2]))
        _, blockers, retry_in, queued = outcome
        blocked = tuple(Blocked(self.name_of(r), tuple(h), tuple(w)) for r, h, w in blockers)
        return Busy(blocked, retry_in, queued)

    async def renew(self, items: Sequence[RenewItem], *, timeout: float) -> RenewReply:
        held = []
        for item in items:
            rids = self._rids(item.kind, item.names)

            def work(table: LeaseTable, now: float, item: RenewItem = item, rids: list[str] = rids) -> bool:
                return table.renew(item.token, rids, item.ttl, now)

            done = None
            if len(rids) == 1 and self._holder is not None:
                try:
                    done = self.records.hot(rids[0]).renew(item.token, item.ttl)
                except OSError as exc:
                    raise _failed(exc) from exc
            held.append(await self._locked("lease renew", rids, work, timeout) if done is None else done)
        return RenewReply(held)

    async def release(self, token: str, kind: str, names: Sequence[str], *, timeout: float) -> bool:
        if self._holder is None:
            await self._setup(timeout)
        rids = self._rids(kind, names)
        done = None
        if len(rids) == 1:  # the hot path
            try:
                done = self.records.hot(rids[0]).release(token)
            except OSError as exc:
                raise _failed(exc) from exc
        if done is None:

            def work(table: LeaseTable, now: float) -> tuple[bool, list[str]]:
                return table.release(token, rids, now)

            done = self.records.locked(rids, work)
            if done is None:
                done = await self._waiting("lease release", rids, work, timeout)
        held, wake = done
        if wake:
            self._send_wakeups(wake)
        return held

    async def fenced_set(
        self, token: str, kind: str, name: str, fence: int, key: str, value: bytes, *, timeout: float
    ) -> bool:
        """Checked under the record's lock, written in a SQLite transaction while it is held."""
        rid = self.rid(kind, name)
        if self._holder is None:
            await self._setup(timeout)
        give_up = time.monotonic() + timeout

        def write(conn: sqlite3.Connection) -> Callable[[LeaseTable, float], bool]:
            def work(table: LeaseTable, now: float) -> bool:
                if not table.is_held(token, rid, fence, now):
                    return False
                conn.execute(
                    "INSERT OR REPLACE INTO lease_value (resource, key, value, fence) VALUES (?, ?, ?, ?)",
                    (rid, key, value, fence),
                )
                return True

            return work

        return await self.driver._run(
            "fenced set",
            lambda conn, now: self.records.locked_blocking([rid], write(conn), give_up),
            timeout=timeout,
            write=True,
        )

    async def fenced_get(self, kind: str, name: str, key: str, *, timeout: float) -> bytes | None:
        rid = self.rid(kind, name)

        def job(conn: sqlite3.Connection, now: float) -> bytes | None:
            conn.execute(VALUES_TABLE)
            row = conn.execute("SELECT value FROM lease_value WHERE resource = ? AND key = ?", (rid, key)).fetchone()
            return None if row is None else bytes(row[0])

        return await self.driver._run("fenced get", job, timeout=timeout, write=False)

    async def holders(self, kind: str, name: str, *, timeout: float) -> list[HolderInfo]:
        rid = self.rid(kind, name)

        def work(table: LeaseTable, now: float) -> list[HolderInfo]:
            rows = sorted(table.holders(rid, now), key=lambda h: h[3])
            return [HolderInfo(owner, fence, expires_at - now) for _, owner, _, fence, expires_at in rows]

        return await self._locked("lease holders", [rid], work, timeout)

    # -- inspection and retirement (jobs in .sqlite_lease_listing) -----------------------
    async def list_resources(self, *, timeout: float) -> list[ResourceLeases]:
        from .sqlite_lease_listing import list_job

        job = list_job(self, time.monotonic() + timeout)  # no _setup: listing takes no liveness file
        return await self.driver._run("lease list", job, timeout=timeout, write=False)

    async def purge(self, kind: str, name: str, *, timeout: float) -> bool:
        from .sqlite_lease_listing import purge_job

        if self._holder is None:
            await self._setup(timeout)
        return await self.driver._run(
            "lease purge", purge_job(self, self.rid(kind, name), time.monotonic() + timeout), timeout=timeout, write=True
        )

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
            except OSError:  # drained (BlockingIOError), or closed
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
        self.records.close()
        if self._holder is not None:
            self._holder.close()  # our leases were released first; this ends the session
        await super().close()
