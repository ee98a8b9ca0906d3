"""The per-driver contract for rate limits: where one named limit keeps its counters.

A :class:`RateStore` serves one limit (a name under a namespace, and its
:class:`~lockstep._core.RateRule`) on one backend. Every decision is made
atomically where the state lives, by the same arithmetic:

* memory: the Rust counters (:class:`~lockstep._core.RateTable`), shared by the
  coordinators of one ``memory://`` space; decided in-process, no round trip;
* file: one SQLite ``BEGIN IMMEDIATE`` transaction reads the key's state, runs the
  Rust step on it and writes it back, on the host clock read after the lock is held;
* redis: one Lua script on the server's clock (``TIME``), keys hash-tagged per limit.

Time lives with the state, never with the caller: the memory driver's clock, the
host clock inside the transaction, or Redis ``TIME``.

Non-idempotent calls (acquire, lease, refund) are never retried: when a reply is
lost they raise :class:`~lockstep.errors.OutcomeUnknown`, and the limiter counts the
units as spent. Units leased out are counted as spent the moment they are granted.

Keys are validated names (``InvalidNameError`` otherwise). Configuration travels with
the state: a process that uses a name with another rate, burst or algorithm while the
limit holds live state gets ``ConfigError`` naming both.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._core import Decision, RateRule
from ..names import validate_name

if TYPE_CHECKING:
    from ..keys import Keyspace

__all__ = ["Grant", "RateStore", "decision_from_row"]

KEY_WHAT = "rate-limit key"


@dataclass(frozen=True, slots=True)
class Grant:
    """A block of units leased to one process (``granted`` 0: refused, see ``retry_after``)."""

    granted: int
    retry_after: float  #: seconds until ``min_units`` could be granted (when refused)
    token: int  #: names the block on the store, for a refund
    start_us: int  #: from the store's clock at the grant: first unit spendable (GCRA)
    end_us: int  #: from the store's clock at the grant: spend everything by then
    remaining: int  #: units still free on the store right after the grant
    at_us: int  #: the store's clock at the grant, microseconds since the epoch

    @classmethod
    def from_row(cls, row: Sequence[int]) -> Grant:
        granted, retry_us, token, start_us, end_us, remaining, at_us = (int(v) for v in row)
        return cls(granted, retry_us / 1e6, token, start_us, end_us, remaining, at_us)


def decision_from_row(row: Sequence[int]) -> Decision:
    """``(allowed, retry_after_us, remaining, reset_after_us, now_us)`` from a script (RESP integers)."""
    allowed, retry_us, remaining, reset_us, now_us = row
    return Decision(allowed == 1, retry_us / 1e6, remaining, reset_us / 1e6, now_us / 1e6, "store")


class RateStore(abc.ABC):
    """The counters of one named limit on one backend."""

    #: True when decisions need no round trip, so :meth:`acquire_nowait` works.
    local: ClassVar[bool] = False

    def __init__(self, keys: Keyspace, name: str, rule: RateRule) -> None:
        self.keys = keys
        self.name = name
        self.rule = rule
        self._prefix = keys.key("rate", name)

    def state_key(self, key: str) -> str:
        """The backend key of one limiter key: ``ls:NS:{rate:NAME}:KEY`` (one hash slot per limit)."""
        return f"{self._prefix}:{validate_name(key, what=KEY_WHAT)}"

    @staticmethod
    async def close_shared(driver: Any) -> None:
        """Release what this store type shares per driver (a connection); the coordinator calls
        it when it closes. Stores that share nothing keep this no-op."""

    def acquire_nowait(self, key: str, cost: int) -> Decision:
        """Decide in-process (only when :attr:`local`)."""
        raise NotImplementedError(f"{type(self).__name__} decides on the backend; use acquire()")

    def hit_nowait(self, key: str, cost: int) -> bool:
        """``acquire_nowait(key, cost).allowed`` without building the Decision (only when :attr:`local`)."""
        raise NotImplementedError(f"{type(self).__name__} decides on the backend; use acquire()")

    @abc.abstractmethod
    async def acquire(self, key: str, cost: int, *, timeout: float) -> Decision:
        """Spend ``cost`` units of ``key`` if they fit. Never retried (OutcomeUnknown)."""

    @abc.abstractmethod
    async def peek(self, key: str, *, timeout: float) -> Decision:
        """What a cost-1 acquire would get now, changing nothing."""

    @abc.abstractmethod
    async def reset(self, key: str, *, timeout: float) -> bool:
        """Forget the key's state (its limit is whole again); True if it held any."""

    @abc.abstractmethod
    async def lease(self, key: str, min_units: int, max_units: int, lease_us: int, *, timeout: float) -> Grant:
        """Take a block of ``min_units..max_units`` units, counted as spent at once."""

    @abc.abstractmethod
    async def refund(self, key: str, token: int, units: int, *, timeout: float) -> int:
        """Hand back unspent units of the block ``token``; returns how many were taken back."""
