"""Signal logs of the Redis drivers: one hash per log, appended by one Lua script.

``lua/signal_append.lua`` reads the counter, writes the entry, trims past ``keep`` and
stamps the server's clock in one atomic step; ``lua/signal_read.lua`` returns an entry
with the log's bounds from one snapshot. The log's key carries the ``{sig:TARGET}``
hash tag, so a target's logs (and their ACKs) share a cluster slot.

Scripts run by ``EVALSHA``; on ``NOSCRIPT`` (nothing ran: the cache was flushed or the
server restarted) by ``EVAL`` with the source. An append is never retried after it was
sent: a lost reply raises :class:`~lockstep.errors.OutcomeUnknown`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from ..errors import BackendError, ProtocolError
from .signal_store import LogEntry, LogRead, SignalStore

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["RedisSignalStore"]

LUA = Path(__file__).with_name("lua")


class _Script:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = (LUA / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, driver: RedisDriver, key: str, *args: Any, idempotent: bool, timeout: float) -> Any:
        give_up = time.monotonic() + timeout
        try:
            return await driver._call(self.name, "EVALSHA", self.sha, 1, key, *args, idempotent=idempotent, timeout=timeout)
        except BackendError as exc:
            if not isinstance(exc.__cause__, rx.NoScriptError):
                raise
        left = max(0.001, give_up - time.monotonic())
        return await driver._call(self.name, "EVAL", self.source, 1, key, *args, idempotent=idempotent, timeout=left)


_APPEND = _Script("signal_append")
_READ = _Script("signal_read")


def _entry(gen: int, raw: bytes) -> LogEntry:
    stamp, sep, record = raw.partition(b"|")
    if not sep:
        raise ProtocolError(f"signal entry {gen} is not '<ts_us>|<record>': {raw[:40]!r}")
    return LogEntry(gen, int(stamp) / 1e6, record)


class RedisSignalStore(SignalStore):
    def __init__(self, driver: RedisDriver) -> None:
        self.driver = driver

    async def append(self, key: str, record: bytes, *, keep: int, timeout: float) -> LogEntry:
        reply = await _APPEND.run(self.driver, key, bytes(record), keep, idempotent=False, timeout=timeout)
        gen, now_us = (int(v) for v in reply)
        return LogEntry(gen, now_us / 1e6, bytes(record))

    async def read(self, key: str, after: int | None, *, timeout: float) -> LogRead:
        arg = "" if after is None else str(int(after))
        first, last, gen, raw = await _READ.run(self.driver, key, arg, idempotent=True, timeout=timeout)
        entry = None if raw is None else _entry(int(gen), bytes(raw))
        return LogRead(entry, int(first), int(last), after)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        return await self.driver.delete(keys, timeout=timeout)
