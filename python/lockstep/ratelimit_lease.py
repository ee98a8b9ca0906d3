"""Token leasing: take a block of units in one round trip, spend it in-process.

With ``coord.rate_limit(..., lease=N)`` a process asks the store for a block of up
to ``N`` units when it runs dry, and spends them through the Rust pool
(:class:`~lockstep._core.RateLeasePool`) with no round trip per request. The shared
limit still holds across processes, because the store counts a block as spent the
moment it grants it, for as long as any unit of it could still be spent:

* sliding window: a block's units may be spent until ``lease_ttl`` after the grant
  (measured from just *before* the request left, on this process's clock), and the
  store keeps them in its window until ``lease_ttl + period`` after the grant;
* GCRA (burst 1 only): a block is the next run of the limit's slots, spent one per
  emission interval, never before its slot and never past the block's end.

Units left when a block ages out, or on :meth:`LeasedUnits.close`, are handed back
(a refund), so other processes can use them. A lost reply to a lease counts the
whole block as spent (conservative); a failed refund leaves the units spent until
they expire on the store. Fetches are single-flight per key: concurrent callers of
one process wait for one round trip instead of leasing a block each.
"""

from __future__ import annotations

import asyncio
import logging

from ._core import Decision, RateLeasePool, RateRule, rate_clock_us
from .drivers.rate_store import RateStore
from .errors import BackendError

__all__ = ["LeasedUnits"]

log = logging.getLogger("lockstep.ratelimit")


class LeasedUnits:
    """The blocks of one limiter, per key (see the module docstring)."""

    def __init__(self, store: RateStore, rule: RateRule, *, block: int, lease_us: int) -> None:
        self.store = store
        self.rule = rule
        self.block = block
        self.lease_us = lease_us
        self.pool = RateLeasePool(rule)
        self._fetches: dict[str, asyncio.Future[Decision | None]] = {}

    async def acquire(self, key: str, cost: int, *, timeout: float) -> Decision:
        fetched = False
        while True:
            decision = self.pool.spend(key, cost)
            if decision is not None:
                return decision
            if fetched:
                # A block arrived but cannot be spent (its lifetime was shorter than the
                # round trip): refuse rather than lease block after block.
                return Decision(False, max(self.rule.emission_us, 1000) / 1e6, 0, 0.0, rate_clock_us() / 1e6, "lease")
            pending = self._fetches.get(key)
            if pending is not None:
                refused = await asyncio.shield(pending)
                if refused is not None:
                    return refused
                continue
            refused = await self._fetch(key, cost, timeout)
            if refused is not None:
                return refused
            fetched = True

    async def _fetch(self, key: str, cost: int, timeout: float) -> Decision | None:
        """Lease a block for ``key``; None when granted, else the store's refusal."""
        done: asyncio.Future[Decision | None] = asyncio.get_running_loop().create_future()
        self._fetches[key] = done
        refused: Decision | None = None
        try:
            await self.give_back(self.pool.take_refunds(), timeout=timeout)
            need = max(1, self.pool.shortfall(key, cost))
            sent = rate_clock_us()
            grant = await self.store.lease(key, need, max(self.block, need), self.lease_us, timeout=timeout)
            received = rate_clock_us()
            if grant.granted:
                self.pool.add(key, grant.granted, grant.token, grant.start_us, grant.end_us, sent, received)
            else:
                refused = Decision(
                    False, grant.retry_after, grant.remaining, grant.retry_after, grant.at_us / 1e6, "store"
                )
            return refused
        finally:
            del self._fetches[key]
            done.set_result(refused)  # waiters on a failed fetch retry it themselves

    async def give_back(self, refunds: list[tuple[str, int, int]], *, timeout: float) -> int:
        """Refund unspent units; failures leave them spent (they expire on the store)."""
        back = 0
        for key, token, units in refunds:
            try:
                back += await self.store.refund(key, token, units, timeout=timeout)
            except BackendError as exc:
                log.debug("rate limit %r: could not hand back %d units of %r: %s", self.store.name, units, key, exc)
        return back

    async def close(self, *, timeout: float) -> int:
        """Stop spending; hand back every unit still held, all within ``timeout``. Returns how
        many the store took back (units not handed back in time stay spent until they expire)."""
        refunds = self.pool.drain()
        try:
            async with asyncio.timeout(timeout):
                return await self.give_back(refunds, timeout=timeout)
        except TimeoutError:
            return 0
