"""Noticing another process's commit within about a millisecond, without a query.

SQLite in WAL mode keeps a shared-memory index (the ``-shm`` file, mapped by every
connection). Its first 48 bytes are the WAL-index header, which every commit rewrites
(``mxFrame``, the last valid frame, and its checksum; a WAL restart changes the salt)
-- see https://sqlite.org/walformat.html. Reading those bytes with one ``pread`` costs a
microsecond, so one poller per store checks them every ``HOT`` seconds while something
changed lately (``COOL`` after ``COOL_AFTER`` quiet seconds) and wakes the feeds and
consumers waiting on it, which then run their query on the driver's thread. Waiters pass
the header they saw before their last query, so a commit between that query and the
wait is never missed.

The descriptor on the ``-shm`` file is opened once per process and never closed (see
:func:`shm_descriptor`): closing any descriptor of a file drops every POSIX lock the
process holds on it, SQLite's own included. It is read with ``pread``, not ``mmap``: a
file truncated under a mapping kills the process with SIGBUS on the next read.

If the file cannot be opened (an odd filesystem, a locking mode without shared
memory), :meth:`Doorbell.changed` just sleeps ``COOL`` seconds, so the caller queries at
that rate instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

__all__ = ["COOL", "HOT", "Doorbell", "shm_descriptor"]

HOT, COOL, COOL_AFTER = 0.001, 0.004, 2.0  # s
HEADER = 48

_SHM_FDS: dict[str, int] = {}  # -shm path -> this process's descriptor on it


def shm_descriptor(path: Path) -> int | None:
    """A read-only descriptor on the ``-shm`` file, opened once per process and kept.

    Never closed while the file is in use: ``close()`` of ANY descriptor of a file drops
    all of this process's POSIX locks on it, SQLite's "dead man switch" lock on the -shm
    included. Without it, the next process to open the database takes itself for the
    first user and truncates the -shm under everyone's feet (a 1-in-20 SIGBUS of a
    consumer in the scenario 9 chaos test, and a corrupt WAL index in the worst case;
    see "How To Corrupt An SQLite Database File", 2.2). When SQLite replaced the file
    (the last connection anywhere closed and unlinked it), the old inode is in use by no
    one, so its descriptor is closed and the new file opened."""
    key = str(path)
    fd = _SHM_FDS.get(key)
    if fd is not None:
        try:
            if os.fstat(fd).st_nlink > 0:
                return fd
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.close(fd)  # an unlinked inode: nobody's locks to drop
        del _SHM_FDS[key]
    try:
        fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    _SHM_FDS[key] = fd
    return fd


class Doorbell:
    """See the module docs."""

    def __init__(self, shm_path: Path) -> None:
        self.shm_path = shm_path
        self._waiters: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_change = 0.0
        self._closed = False

    @property
    def works(self) -> bool:
        return not self._closed and shm_descriptor(self.shm_path) is not None

    def current(self) -> bytes:
        """The WAL-index header now (empty when the file cannot be read; short while
        SQLite re-creates it)."""
        fd = None if self._closed else shm_descriptor(self.shm_path)
        if fd is None:
            return b""
        try:
            return os.pread(fd, HEADER, 0)
        except OSError:
            return b""

    async def changed(self, seen: bytes, timeout: float) -> None:
        """Return once the header differs from ``seen``, or after ``timeout`` seconds."""
        if not seen:  # no shared memory: the caller's own poll interval does the work
            await asyncio.sleep(min(timeout, COOL))
            return
        if self.current() != seen:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seen, future))
        self._ensure_poller()
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            if not future.done():
                future.cancel()

    def _ensure_poller(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        assert self._wakeup is not None
        while True:
            self._waiters = [(seen, f) for seen, f in self._waiters if not f.done()]
            if not self._waiters:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            now = time.monotonic()
            await asyncio.sleep(HOT if now - self._last_change < COOL_AFTER else COOL)
            header = self.current()
            for seen, future in self._waiters:
                if seen != header and not future.done():
                    future.set_result(None)
                    self._last_change = time.monotonic()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters = []
        self._closed = True  # the descriptor stays open: see shm_descriptor
