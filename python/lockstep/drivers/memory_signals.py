"""Signal logs of the memory driver: one dict per space, shared by its coordinators.

Like the rest of a ``memory://`` space, logs live as long as the process. Each
operation runs under one lock (threads of one process may share a space), so an
append's generation and its write are one step. Time is ``time.time()``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .signal_store import LogEntry, LogInfo, LogRead, SignalStore, pick

if TYPE_CHECKING:
    from .memory import MemoryDriver

__all__ = ["MemorySignalStore"]


@dataclass
class _Log:
    last: int = 0
    first: int = 1
    entries: dict[int, tuple[float, bytes]] = field(default_factory=dict)


_LOGS: dict[tuple[str, str], _Log] = {}
_LOCK = threading.Lock()


class MemorySignalStore(SignalStore):
    def __init__(self, driver: MemoryDriver) -> None:
        self.driver = driver

    def _space(self) -> str:
        self.driver._attached()  # BackendUnavailable once the driver is closed
        return self.driver.space_name

    async def append(self, key: str, record: bytes, *, keep: int, timeout: float) -> LogEntry:
        space = self._space()
        with _LOCK:
            log = _LOGS.setdefault((space, key), _Log())
            log.last += 1
            now = time.time()
            log.entries[log.last] = (now, bytes(record))
            while log.last - log.first + 1 > keep:
                log.entries.pop(log.first, None)
                log.first += 1
            return LogEntry(log.last, now, bytes(record))

    async def read(self, key: str, after: int | None, *, timeout: float) -> LogRead:
        space = self._space()
        with _LOCK:
            log = _LOGS.get((space, key))
            if log is None:
                return LogRead(None, 1, 0, after)
            return pick(log.entries, log.first, log.last, after)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        space = self._space()
        with _LOCK:
            return sum(_LOGS.pop((space, k), None) is not None for k in keys)

    async def logs(self, prefix: str, *, timeout: float) -> list[LogInfo]:
        space = self._space()
        with _LOCK:
            found = [
                LogInfo(key, log.first, log.last, log.entries[log.last][0] if log.last in log.entries else None)
                for (in_space, key), log in _LOGS.items()
                if in_space == space and key.startswith(prefix)
            ]
        return sorted(found, key=lambda info: info.key)
