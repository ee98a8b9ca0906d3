"""Signal logs of the Redis drivers: one hash per log, appended by one Lua script.

``lua/signal_append.lua`` reads the counter, writes the entry, trims past ``keep`` and
stamps the server's clock in one atomic step; ``lua/signal_read.lua`` returns an entry
with the log's bounds from one snapshot. The log's key carries the ``{sig:TARGET}``
hash tag, so a target's logs (and their ACKs) share a cluster slot.

Scripts run by ``EVALSHA``; on ``NOSCRIPT`` (nothing ran: the cache was flushed or the
server restarted) by ``EVAL`` with the source. An append is never retried after it was
sent: a lost reply raises :class:`~lockstep.errors.OutcomeUnknown`.

The namespace's set ``ls:NS:{meta}:signals`` indexes its logs for :meth:`logs` (``lockstep
status``). Every append adds its log first (``SADD``: idempotent, one round trip more per
signal; it lives in its own slot, so it is not part of the append script, which must stay
in the log's). A log deleted behind lockstep's back leaves the index when ``logs`` finds it
gone; one recreated at that very moment is listed again at its next append.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import ProtocolError
from ..keys import meta_of
from .redis_scripts import LuaScript
from .signal_store import LogEntry, LogInfo, LogRead, SignalStore

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["RedisSignalStore"]

LIST_CONCURRENCY = 16  # logs read at once by logs()

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
        give_up = asyncio.get_running_loop().time() + timeout
        await self.driver._call("signal index", "SADD", _index(key), key, idempotent=True, timeout=timeout)
        left = max(0.001, give_up - asyncio.get_running_loop().time())
        reply = await _APPEND.run(self.driver, [key], [bytes(record), keep], timeout=left)
        gen, now_us = (int(v) for v in reply)
        return LogEntry(gen, now_us / 1e6, bytes(record))

    async def read(self, key: str, after: int | None, *, timeout: float) -> LogRead:
        arg = "" if after is None else str(int(after))
        first, last, gen, raw = await _READ.run(self.driver, [key], [arg], timeout=timeout)
        entry = None if raw is None else _entry(int(gen), bytes(raw))
        return LogRead(entry, int(first), int(last), after)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        # Out of the index first (idempotent): if the DEL then fails, the error is true
        # (nothing deleted) and the log is listed again at its next append.
        give_up = asyncio.get_running_loop().time() + timeout
        for index in sorted({_index(k) for k in keys}):
            left = max(0.001, give_up - asyncio.get_running_loop().time())
            await self.driver._call("signal index", "SREM", index, *keys, idempotent=True, timeout=left)
        left = max(0.001, give_up - asyncio.get_running_loop().time())
        return await self.driver.delete(keys, timeout=left)

    async def logs(self, prefix: str, *, timeout: float) -> list[LogInfo]:
        give_up = asyncio.get_running_loop().time() + timeout
        index = _index(prefix)
        members = await self.driver._call("signal logs", "SMEMBERS", index, idempotent=True, timeout=timeout)
        keys = sorted(k for k in (m.decode() if isinstance(m, bytes) else str(m) for m in members) if k.startswith(prefix))
        found: list[LogInfo] = []
        gone: list[str] = []
        for at in range(0, len(keys), LIST_CONCURRENCY):
            chunk = keys[at : at + LIST_CONCURRENCY]
            left = max(0.001, give_up - asyncio.get_running_loop().time())
            reads = await asyncio.gather(*(self.read(k, None, timeout=left) for k in chunk))
            for key, read in zip(chunk, reads, strict=True):
                if read.last == 0:  # no such hash: deleted (or flushed) behind lockstep's back
                    gone.append(key)
                else:
                    found.append(LogInfo(key, read.first, read.last, None if read.entry is None else read.entry.ts))
        if gone:
            left = max(0.001, give_up - asyncio.get_running_loop().time())
            await self.driver._call("signal index", "SREM", index, *gone, idempotent=True, timeout=left)
        return found


def _index(key: str) -> str:
    """The namespace's index of signal logs (see the module docs)."""
    return meta_of(key, "signals")
