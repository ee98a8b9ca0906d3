"""Rate limits on the memory driver: the Rust counters, shared by one space's coordinators.

Each limit (space, namespace, name) is one :class:`~lockstep._core.RateTable`, kept
for the life of the process like the rest of a ``memory://`` space. Decisions take
the table's mutex and never wait on I/O, so :meth:`MemoryRateStore.acquire_nowait`
is the same decision without asyncio around it. Time is the Rust glue's clock
(``rate_clock_us``: wall-clock aligned, never going backwards).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .._core import Decision, RateRule, RateTable
from ..errors import ConfigError
from .rate_store import Grant, RateStore

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .memory import MemoryDriver

__all__ = ["MemoryRateStore"]

_TABLES: dict[tuple[str, str], RateTable] = {}
_TABLES_LOCK = threading.Lock()


def _shared_table(space: str, limit_key: str, name: str, rule: RateRule) -> RateTable:
    """The space's table for one limit; another rule is refused while the table holds live state."""
    with _TABLES_LOCK:
        table = _TABLES.get((space, limit_key))
        if table is not None and table.rule != rule:
            if table.live_keys():
                raise ConfigError(
                    f"rate limit {name!r} is in use as {table.rule.describe()}, but this limiter says "
                    f"{rule.describe()}; every user of a name must give it the same rate, burst and "
                    "algorithm (or reset it first)"
                )
            table = None  # idle: the new rule takes over
        if table is None:
            table = _TABLES[(space, limit_key)] = RateTable(rule)
        return table


class MemoryRateStore(RateStore):
    """One limit's keys in this process (see the module docstring)."""

    local = True

    def __init__(self, driver: MemoryDriver, keys: Keyspace, name: str, rule: RateRule) -> None:
        super().__init__(keys, name, rule)
        self.driver = driver
        self.table = _shared_table(driver.space_name, keys.key("rate", name), name, rule)
        #: the decision itself, bound: no Python frame between the caller and Rust
        self.acquire_nowait = self.table.acquire  # type: ignore[method-assign]
        self.hit_nowait = self.table.hit  # type: ignore[method-assign]

    def _check_open(self) -> None:
        self.driver._attached()  # BackendUnavailable once the driver is closed

    async def acquire(self, key: str, cost: int, *, timeout: float) -> Decision:
        self._check_open()
        return self.table.acquire(key, cost)

    async def peek(self, key: str, *, timeout: float) -> Decision:
        self._check_open()
        return self.table.peek(key)

    async def reset(self, key: str, *, timeout: float) -> bool:
        self._check_open()
        return self.table.reset(key)

    async def lease(self, key: str, min_units: int, max_units: int, lease_us: int, *, timeout: float) -> Grant:
        self._check_open()
        return Grant.from_row(self.table.lease(key, min_units, max_units, lease_us))

    async def refund(self, key: str, token: int, units: int, *, timeout: float) -> int:
        self._check_open()
        return self.table.refund(key, token, units)

