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

from typing import TYPE_CHECKING

from ..errors import ProtocolError
from .redis_scripts import LuaScript
from .signal_store import LogEntry, LogRead, SignalStore

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["RedisSignalStore"]



_APPEND = LuaScript("signal_append", idempotent=False)
_READ = LuaScript("signal_read", idempotent=True)


def _entry(gen: int, raw: bytes) -> LogEntry:
    stamp, sep, record = raw.partition(b"|")
    if not sep:
        raise ProtocolError(f"signal entry {gen} is not '<ts_us>|<record>': {raw[:40]!r}")
    return LogEntry(gen, int(stamp) / 1e6, record)


class RedisSignalStore(SignalStore):
    def __init__(self, driver: RedisDriver) -> None:
        self.driver = driver

    async def append(self, key: str, record: bytes, *, keep: int, timeout: float) -> LogEntry:
        reply = await _APPEND.run(self.driver, [key], [bytes(record), keep], timeout=timeout)
        gen, now_us = (int(v) for v in reply)
        return LogEntry(gen, now_us / 1e6, bytes(record))

    async def read(self, key: str, after: int | None, *, timeout: float) -> LogRead:
        arg = "" if after is None else str(int(after))
        first, last, gen, raw = await _READ.run(self.driver, [key], [arg], timeout=timeout)
        entry = None if raw is None else _entry(int(gen), bytes(raw))
        return LogRead(entry, int(first), int(last), after)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        return await self.driver.delete(keys, timeout=timeout)
