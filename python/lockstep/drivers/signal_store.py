"""The per-driver contract for signals: an append-only log per (target, name).

A signal log is one key (``ls:NS:{sig:TARGET}:NAME``, built by the caller). Each
append gets the next **generation** (1, 2, 3, ...: strictly increasing, never reused
while the log exists) and the backend's clock, atomically with the write, so two
senders never get the same generation and nothing overwrites an entry not yet read:

* memory: a dict per space under the space's lock;
* file: one ``BEGIN IMMEDIATE`` transaction over ``signal_head`` / ``signal_entry``;
* redis: one Lua script over one hash (``lua/signal_append.lua``).

Retention keeps the newest ``keep`` entries of a log. A reader asking for what came
after generation *g* gets the oldest retained entry above *g* together with the
log's bounds, so when retention passed it the caller sees exactly how many
generations it missed (:attr:`LogRead.skipped`): nothing is dropped in silence.

Appends are not idempotent: a lost reply raises
:class:`~lockstep.errors.OutcomeUnknown` and is never resent. Reads are.

:meth:`SignalStore.logs` lists the logs under a key prefix with their bounds (what
``lockstep status`` shows), from the backend's own table or, on Redis, from a set per
namespace that every append adds its log to (never from a scan of the keyspace).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from ..errors import InvalidInputError

__all__ = ["LogEntry", "LogInfo", "LogRead", "SignalStore", "check_keep"]

MAX_KEEP = 100_000


@dataclass(frozen=True, slots=True)
class LogEntry:
    generation: int
    ts: float  #: the backend's clock at the append, Unix seconds
    record: bytes  #: what the signal layer stored (see lockstep.signals)


@dataclass(frozen=True, slots=True)
class LogRead:
    """One read of a log: the entry asked for (or None) and the log's bounds."""

    entry: LogEntry | None
    first: int  #: the oldest retained generation (last + 1 when none is retained)
    last: int  #: the newest generation ever appended (0: never)
    after: int | None = None  #: what the read asked for

    @property
    def skipped(self) -> int:
        """Generations above ``after`` that retention removed before this read found them."""
        if self.entry is None or self.after is None:
            return 0
        return max(0, self.entry.generation - self.after - 1)


@dataclass(frozen=True, slots=True)
class LogInfo:
    """One log as :meth:`SignalStore.logs` lists it."""

    key: str
    first: int  #: the oldest retained generation
    last: int  #: the newest generation appended
    ts: float | None  #: when the newest was appended (None if it is not retained)


def check_keep(keep: object) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= MAX_KEEP:
        raise InvalidInputError(f"keep must be an int from 1 to {MAX_KEEP} (entries retained per log), got {keep!r}")
    return keep


def pick(entries: dict[int, tuple[float, bytes]], first: int, last: int, after: int | None) -> LogRead:
    """The read rule, shared by the local drivers: the latest entry, or the first above ``after``."""
    if after is None:
        found = entries.get(last) if last >= first else None
        gen = last
    else:
        gen = max(after + 1, first)
        found = entries.get(gen) if gen <= last else None
    entry = None if found is None else LogEntry(gen, found[0], found[1])
    return LogRead(entry, first, last, after)


class SignalStore(abc.ABC):
    """The signal logs of one backend (see the module docstring)."""

    @abc.abstractmethod
    async def append(self, key: str, record: bytes, *, keep: int, timeout: float) -> LogEntry:
        """Append ``record`` to log ``key`` under the next generation; keep the newest ``keep``."""

    @abc.abstractmethod
    async def read(self, key: str, after: int | None, *, timeout: float) -> LogRead:
        """The newest entry (``after`` None) or the oldest retained one above ``after``."""

    @abc.abstractmethod
    async def delete(self, keys: list[str], *, timeout: float) -> int:
        """Forget logs entirely (their generations start again at 1); returns how many existed."""

    @abc.abstractmethod
    async def logs(self, prefix: str, *, timeout: float) -> list[LogInfo]:
        """Every log whose key starts with ``prefix`` (within one namespace), sorted by key."""
