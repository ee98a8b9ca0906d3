"""The file driver's lease records: one small file per resource, changed under ``flock``.

Acquire and release are the hot path, and a SQLite write transaction plus a hop to the
driver's worker thread costs ~300 us; a lease operation on a record file costs a few
system calls, done right on the event loop. Layout, in ``<db>.locks/`` (0700):

* ``r-<sha256(resource id)[:32]>.lock``, one per resource ever used, created 0600 and
  never unlinked (so every process locks the same inode). It holds the resource's
  record (boot id, resource id, slots, fence, holders, waiters; the codec is the Rust
  core's, ``LeaseTable.load_record`` / ``dump_record``). An operation takes
  ``flock(LOCK_EX)`` on the file, reads the record, applies the LeaseTable rules in the
  same table, writes the record back in one ``pwrite`` and unlocks: that is the whole
  critical section, microseconds long. The loop only ever tries ``LOCK_NB``; when
  another process is inside (or was paused there), the operation moves to the worker
  thread, which polls the lock until the call's deadline. A process killed inside the
  critical section loses its ``flock`` at once; its ``pwrite`` either happened or not
  (the length prefix makes a shorter record written over a longer one read right).
* ``holder-N.lock``: the liveness files (see :class:`HolderFile`).

**Fences.** ``fence = epoch << 40 | counter``. The counter lives in the record; the
epoch is durable, in SQLite (``lease_boot``), one per boot of the host
(``/proc/sys/kernel/random/boot_id``), committed with ``synchronous=FULL`` before any
fence of it is handed out; the first boot's epoch is 0. A record written in another
boot (every holder of it died with that boot) or one that cannot be read (torn by an
OS crash) starts over at ``epoch << 40``, above every fence of the earlier boots: so
fences only grow, across process kills and OS crashes, while the record itself is
never fsynced. (Removing the lock folder by hand within a boot restarts its counters:
don't.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .._core import LeaseRecordFile, LeaseTable, lease_record_size
from ..errors import BackendError, Timeout

__all__ = ["EPOCH_SHIFT", "HolderFile", "RecordFiles", "boot_epoch", "current_boot_id", "session_dead"]

T = TypeVar("T")
EPOCH_SHIFT = 40  #: fences are epoch << 40 | counter
MAX_OPEN = 256  # record files kept open per store (closing one drops nothing: no flock held between ops)
POLL_FIRST, POLL_MAX = 0.0002, 0.005  # s between tries of a busy critical section (worker thread)
MAX_HOLDER_FILES = 4096

HolderRow = tuple[str, str, str, int, float]  # token, owner, session, fence, expires_at
WaiterRow = tuple[str, str, str, float]  # ticket, owner, session, expires_at
State = tuple[int, int, list[HolderRow], list[WaiterRow]]  # slots, fence, holders, waiters

READ_SIZE = 4096  # one read gets most records whole
_U16 = struct.Struct(">H")
_HEADER = struct.Struct(">I")  # the length before a liveness file's session name
_LOCK_NB = fcntl.LOCK_EX | fcntl.LOCK_NB


def current_boot_id() -> str:
    """This boot of the host (Linux); a constant elsewhere, where boots are not told apart."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def boot_epoch(conn: sqlite3.Connection, boot: str, synchronous: str) -> int:
    """The durable epoch of ``boot`` (on the driver's thread): made once per boot, the
    first 0, each next one above every earlier; committed with a full fsync."""
    conn.execute("CREATE TABLE IF NOT EXISTS lease_boot (boot TEXT PRIMARY KEY NOT NULL, epoch INTEGER NOT NULL)")
    row = conn.execute("SELECT epoch FROM lease_boot WHERE boot = ?", (boot,)).fetchone()
    if row is not None:
        return int(row[0])
    conn.execute("PRAGMA synchronous = FULL")  # the epoch must survive the OS crash it guards against
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT epoch FROM lease_boot WHERE boot = ?", (boot,)).fetchone()
            if row is None:
                (top,) = conn.execute("SELECT max(epoch) FROM lease_boot").fetchone()
                row = (0 if top is None else top + 1,)
                conn.execute("INSERT INTO lease_boot (boot, epoch) VALUES (?, ?)", (boot, row[0]))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise
    finally:
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    return int(row[0])


def _read(fd: int) -> bytes:
    """The bytes of the record in ``fd`` (whole, even when longer than one read)."""
    raw = os.pread(fd, READ_SIZE, 0)
    if len(raw) == READ_SIZE:
        size = lease_record_size(raw) or 0
        if size > READ_SIZE:
            raw = os.pread(fd, size, 0)
    return raw


def _rid_in(raw: bytes) -> str | None:
    """The resource id a record names (None: not a record); its header is
    ``u32 length | "LSR1" | u16 n, boot id | u16 n, resource id``."""
    try:
        if raw[4:8] != b"LSR1":
            return None
        at = 10 + _U16.unpack_from(raw, 8)[0]
        (size,) = _U16.unpack_from(raw, at)
        return raw[at + 2 : at + 2 + size].decode()
    except (struct.error, UnicodeDecodeError):
        return None


def _wait_for_lock(fd: int, what: str, give_up: float) -> None:
    """``flock(LOCK_EX)`` on ``fd``, polling until ``give_up`` (monotonic); Timeout after."""
    pause = POLL_FIRST
    while True:
        try:
            fcntl.flock(fd, _LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() + pause > give_up:
                raise Timeout(
                    f"file: the lease record {what} stayed locked by another process until the "
                    "deadline (a process paused inside an update?); nothing changed"
                ) from None
            time.sleep(pause)
            pause = min(POLL_MAX, pause * 2)


class RecordFiles:
    """The record files of one store. ``locked()`` runs an operation on the loop (never
    blocks; None when a critical section is busy), ``locked_blocking()`` on the worker
    thread (waits for it, up to a deadline, with descriptors of its own so its ``flock``
    also excludes the loop's)."""

    def __init__(self, folder: Path, boot: str) -> None:
        self.folder = folder
        self.boot = boot
        self.base_fence = 0  #: epoch << EPOCH_SHIFT, set once the epoch is known
        self._fds: OrderedDict[str, int] = OrderedDict()  # resource id -> fd, loop thread only
        self._files: OrderedDict[str, LeaseRecordFile] = OrderedDict()  # the hot path's, loop only

    def path(self, rid: str) -> str:
        return f"{self.folder}/r-{hashlib.sha256(rid.encode()).hexdigest()[:32]}.lock"

    def _open(self, rid: str) -> int:
        try:
            return os.open(self.path(rid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise BackendError(f"file: cannot open the lease record of {rid!r} in {self.folder}: {exc}") from exc

    def _cached(self, rid: str) -> int:
        fd = self._fds.get(rid)
        if fd is None:
            fd = self._fds[rid] = self._open(rid)
            if len(self._fds) > MAX_OPEN:
                os.close(self._fds.popitem(last=False)[1])
        return fd

    def hot(self, rid: str) -> LeaseRecordFile:
        """The record file of ``rid`` for the Rust hot path (one call per operation, None
        when it is not done there: the caller then uses :meth:`locked`)."""
        found = self._files.get(rid)
        if found is None:
            try:
                found = self._files[rid] = LeaseRecordFile(self.path(rid), rid, self.boot, self.base_fence)
            except OSError as exc:
                raise BackendError(f"file: cannot open the lease record of {rid!r} in {self.folder}: {exc}") from exc
            if len(self._files) > MAX_OPEN:
                self._files.popitem(last=False)
        return found

    def _forget(self, rid: str) -> None:
        self._files.pop(rid, None)
        fd = self._fds.pop(rid, None)
        if fd is not None:
            os.close(fd)

    def locked(self, rids: Sequence[str], work: Callable[[LeaseTable, float], T]) -> T | None:
        """Run ``work`` on the records of ``rids`` if every critical section is free now."""
        order = rids if len(rids) == 1 else sorted(rids)
        fds: list[int] = []
        try:
            for rid in order:
                fd = self._cached(rid)
                try:
                    fcntl.flock(fd, _LOCK_NB)
                except BlockingIOError:
                    return None
                fds.append(fd)
                if os.fstat(fd).st_nlink == 0:  # unlinked under us: lock what the name is now
                    fds.pop()
                    self._forget(rid)
                    return None
            return self._apply(order, fds, work)
        finally:
            for fd in fds:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def locked_blocking(self, rids: Sequence[str], work: Callable[[LeaseTable, float], T], give_up: float) -> T:
        """As :meth:`locked`, waiting for busy critical sections until ``give_up`` (monotonic)."""
        order = sorted(rids)
        fds: list[int] = []
        try:
            for rid in order:
                fd = self._open(rid)
                fds.append(fd)
                _wait_for_lock(fd, f"of {rid!r}", give_up)
            return self._apply(order, fds, work)
        finally:
            for fd in fds:
                os.close(fd)  # drops its flock

    def _apply(self, rids: Sequence[str], fds: Sequence[int], work: Callable[[LeaseTable, float], T]) -> T:
        """Load the records, run ``work(table, now)``, write back each record it changed."""
        table = LeaseTable()
        boot = self.boot
        if len(rids) == 1:  # the common case, without the lists
            rid, fd = rids[0], fds[0]
            old = _read(fd)
            table.load_record(rid, old, boot, self.base_fence)
            result = work(table, time.time())
            new = table.dump_record(rid, boot)
            if new is not None and not old.startswith(new):
                os.pwrite(fd, new, 0)
            return result
        before = []
        for rid, fd in zip(rids, fds, strict=True):
            before.append(_read(fd))
            table.load_record(rid, before[-1], boot, self.base_fence)
        result = work(table, time.time())
        for rid, fd, old in zip(rids, fds, before, strict=True):
            new = table.dump_record(rid, boot)
            if new is not None and not old.startswith(new):
                os.pwrite(fd, new, 0)
        return result

    def scan(self, prefix: str, give_up: float) -> list[tuple[str, State]]:
        """``(resource id, state)`` of every record whose id starts with ``prefix`` (worker
        thread: reads every record file, each under its lock)."""
        found = []
        for path in sorted(self.folder.glob("r-*.lock")) if self.folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    _wait_for_lock(fd, path.name, give_up)
                    raw = _read(fd)
                finally:
                    os.close(fd)
                rid = _rid_in(raw)
                if rid is not None and rid.startswith(prefix):
                    table = LeaseTable()
                    state = table.dump(rid) if table.load_record(rid, raw, self.boot, 0) else None
                    if state is not None:
                        found.append((rid, state))
        return found

    def forget_blocking(self, rid: str, work: Callable[[LeaseTable, float], bool], give_up: float) -> bool:
        """Under the record's lock: if ``work(table, now)`` says so, empty the record (its
        fence counter starts over from this boot's epoch). The file itself stays."""
        fd = self._open(rid)
        try:
            _wait_for_lock(fd, f"of {rid!r}", give_up)
            table = LeaseTable()
            table.load_record(rid, _read(fd), self.boot, self.base_fence)
            if not work(table, time.time()):
                return False
            os.ftruncate(fd, 0)
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        self._files.clear()
        while self._fds:
            os.close(self._fds.popitem()[1])


# -- liveness -------------------------------------------------------------------------------
class HolderFile:
    """This coordinator's liveness file: ``holder-N.lock``, ``flock``ed for as long as the
    coordinator lives, with its holder session written inside.

    Holder and queue rows name the session as ``<session>:<N>:<inode>``. Another process
    that meets them tests that file (:func:`session_dead`): when it gets the ``flock``,
    the session's process is gone (the kernel drops a flock when its last descriptor
    closes, even on ``kill -9``), so its leases are freed at once instead of at their TTL.
    ``fcntl``/``lockf`` record locks are never used: they drop when any descriptor of the
    file closes, and never conflict within a process.
    """

    def __init__(self, folder: Path, session: str) -> None:
        self.fd: int | None = None
        self.holder_session = f"{session}:-"
        for idx in range(MAX_HOLDER_FILES):
            fd = os.open(folder / f"holder-{idx}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, _LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self.holder_session = f"{session}:{idx}:{os.fstat(fd).st_ino}"
            data = self.holder_session.encode()
            os.pwrite(fd, _HEADER.pack(len(data)) + data, 0)
            self.fd = fd
            return
        raise BackendError(f"file: all {MAX_HOLDER_FILES} holder lock files in {folder} are in use")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # our leases were released first; this ends the session
            self.fd = None


def session_dead(folder: Path, session: str) -> bool:
    """True only when ``session``'s liveness file proves its process is gone."""
    parts = session.rsplit(":", 2)
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        return False
    idx, inode = parts[1], parts[2]
    try:
        fd = os.open(folder / f"holder-{idx}.lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False  # removed: proves nothing
    try:
        if os.fstat(fd).st_ino != int(inode):
            return False  # replaced: proves nothing
        try:
            fcntl.flock(fd, _LOCK_NB)
            return True  # nobody holds it: the session's process is gone
        except BlockingIOError:
            # Held: by the session, or by a newer coordinator that took the file after it.
            raw = os.pread(fd, 512, 0)
            if len(raw) < _HEADER.size:
                return False  # the new owner has not written its name yet: look again later
            (size,) = _HEADER.unpack_from(raw)
            return raw[_HEADER.size : _HEADER.size + size] != session.encode()
    finally:
        os.close(fd)  # drops our test lock
