"""Rate limits on the SQLite driver: exact across the processes sharing the file.

Each decision is one write transaction (``BEGIN IMMEDIATE``, so processes take
turns): read the key's stored state, run the Rust step on it
(:meth:`~lockstep._core.RateRule.acquire_state` and friends), write the new state
back with a TTL, so an idle key's row expires and is purged. An acquire reads first,
without the write lock, and returns a refusal from there (a refusal changes nothing),
so refused callers never queue for the lock; a foreseen admission takes the lock and
decides again in the same turn of the driver's thread, not behind the reads queued
meanwhile (a crowd of callers woken together would otherwise admit late). So an
acquire is one non-idempotent call: a failure even while reading raises
``OutcomeUnknown`` (its units count as spent), never ``Timeout``.

The clock is the host's, read *after* the state (inside the transaction, so after the
write lock is held): a decision's time is never earlier than any decision it sees, so
decisions are stamped in the order they are applied. (The driver's own ``now`` is read
before the lock, and is not used here.)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .._core import Decision, RateRule
from . import sqlite_schema as tables
from .local_rules import wrong_type
from .rate_store import Grant, RateStore

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .sqlite import SqliteDriver

__all__ = ["SqliteRateStore"]

T = TypeVar("T")
#: ``step(state, now_us) -> (result, new state or None when idle, ttl_us)``
Step = Callable[[bytes | None, int], tuple[T, bytes | None, int]]


def _now_us() -> int:
    return time.time_ns() // 1000


def _state(conn: sqlite3.Connection, row_key: str) -> bytes | None:
    """The stored state, expired or not: an expired one is idle, and the Rust step drops what
    expired by its own clock, which is read after this (so it never predates what it reads)."""
    row = conn.execute("SELECT kind, value FROM kv WHERE key = ?", (row_key,)).fetchone()
    if row is None:
        return None
    if row[0] != "str":
        raise wrong_type("file", "rate-limit", row_key, "hash")
    return bytes(row[1])


class SqliteRateStore(RateStore):
    """One limit's keys as rows of the driver's ``kv`` table (see the module docstring)."""

    def __init__(self, driver: SqliteDriver, keys: Keyspace, name: str, rule: RateRule) -> None:
        super().__init__(keys, name, rule)
        self.driver = driver

    async def _write(
        self, op: str, key: str, step: Step[T], *, timeout: float, foresee: Callable[[bytes | None, int], T | None] | None = None
    ) -> T:
        """Run ``step`` on the key's state in a write transaction; with ``foresee``, first on a
        read without the lock: a result other than None is returned with nothing written."""
        row_key = self.state_key(key)

        def job(conn: sqlite3.Connection, _lock_wait_started: float) -> T:
            stored = _state(conn, row_key)
            now_us = _now_us()
            now = now_us / 1e6
            result, state, ttl_us = step(stored, now_us)
            if state is None:
                tables.delete(conn, now, [row_key])
            else:
                tables.set_value(conn, now, row_key, state, ttl_us / 1e6, False)
            return result

        def precheck(conn: sqlite3.Connection, _now: float) -> T | None:
            assert foresee is not None
            return foresee(_state(conn, row_key), _now_us())  # the clock read after the state

        return await self.driver._run(
            f"rate-limit {op}", job, timeout=timeout, write=True, precheck=None if foresee is None else precheck
        )

    async def acquire(self, key: str, cost: int, *, timeout: float) -> Decision:
        self.rule.check_cost(cost)

        def refusal(state: bytes | None, now_us: int) -> Decision | None:
            foreseen = self.rule.acquire_state(state, cost, now_us)[0]
            return None if foreseen.allowed else foreseen

        return await self._write(
            "acquire", key, lambda state, now: self.rule.acquire_state(state, cost, now), timeout=timeout, foresee=refusal
        )

    async def _read(self, op: str, key: str, look: Callable[[bytes | None, int], T], *, timeout: float) -> T:
        row_key = self.state_key(key)

        def job(conn: sqlite3.Connection, _now: float) -> T:
            state = _state(conn, row_key)
            now_us = _now_us()  # read after the state: never before a decision it reflects
            return look(state, now_us)

        return await self.driver._run(f"rate-limit {op}", job, timeout=timeout, write=False)

    async def peek(self, key: str, *, timeout: float) -> Decision:
        return await self._read("peek", key, self.rule.peek_state, timeout=timeout)

    async def reset(self, key: str, *, timeout: float) -> bool:
        row_key = self.state_key(key)

        def job(conn: sqlite3.Connection, _now: float) -> bool:
            return tables.delete(conn, _now_us() / 1e6, [row_key]) > 0

        return await self.driver._run("rate-limit reset", job, timeout=timeout, write=True)

    async def lease(self, key: str, min_units: int, max_units: int, lease_us: int, *, timeout: float) -> Grant:
        row = await self._write(
            "lease",
            key,
            lambda state, now: self.rule.lease_state(state, min_units, max_units, lease_us, now),
            timeout=timeout,
        )
        return Grant.from_row(row)

    async def refund(self, key: str, token: int, units: int, *, timeout: float) -> int:
        return await self._write(
            "refund", key, lambda state, now: self.rule.refund_state(state, token, units, now), timeout=timeout
        )
