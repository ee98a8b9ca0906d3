"""Noticing another process's commit within about a millisecond, without a query.

SQLite in WAL mode keeps a shared-memory index (the ``-shm`` file, mapped by every
connection). Its first 48 bytes are the WAL-index header, which every commit rewrites
(``mxFrame``, the last valid frame, and its checksum; a WAL restart changes the salt)
-- see https://sqlite.org/walformat.html. Comparing those bytes through a read-only
``mmap`` costs well under a microsecond and no system call, so one poller per store
checks them every ``HOT`` seconds while something changed lately (``COOL`` after
``COOL_AFTER`` quiet seconds) and wakes the feeds and consumers waiting on it, which
then run their query on the driver's thread. Waiters pass the header they saw before
their last query, so a commit between that query and the wait is never missed.

If the file cannot be mapped (an odd filesystem, a locking mode without shared
memory), :meth:`Doorbell.changed` just sleeps ``COOL`` seconds, so the caller queries at
that rate instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import time
from pathlib import Path

__all__ = ["COOL", "HOT", "Doorbell"]

HOT, COOL, COOL_AFTER = 0.001, 0.004, 2.0  # s
HEADER = 48


class Doorbell:
    """See the module docs."""

    def __init__(self, shm_path: Path) -> None:
        self.shm_path = shm_path
        self._map: mmap.mmap | None = None
        self._waiters: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_change = 0.0

    def _mapped(self) -> mmap.mmap | None:
        if self._map is None:
            with contextlib.suppress(OSError, ValueError):
                fd = os.open(self.shm_path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if os.fstat(fd).st_size >= 4096:
                        self._map = mmap.mmap(fd, 4096, access=mmap.ACCESS_READ)
                finally:
                    os.close(fd)
        return self._map

    @property
    def works(self) -> bool:
        return self._mapped() is not None

    def current(self) -> bytes:
        """The WAL-index header now (empty when the file cannot be mapped)."""
        mapped = self._mapped()
        return b"" if mapped is None else mapped[:HEADER]

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
        if self._map is not None:
            self._map.close()
            self._map = None
