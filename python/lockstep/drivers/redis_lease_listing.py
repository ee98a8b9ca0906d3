"""Listing the busy resources of a namespace on Redis, from its index (never a keyspace scan).

The lease scripts keep ``ls:NS:{meta}:leases``, a zset of every resource of the namespace
that has a fence key (see ``lua/lease_common.lua``): an entry is made with the fence and
goes with it (``purge``), so taking and dropping a lock costs the index nothing. A listing
reads the index, then runs ``lua/lease_list.lua`` over the resources in batches: each
batch is one atomic look at its resources, on the server clock, returning those someone
holds or waits for. The listing is a consistent snapshot per batch, not across batches,
and its cost grows with the resources ever fenced (purge retires them).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ProtocolError, Timeout
from .lease_store import HolderInfo, LeaseWaiter, ResourceLeases
from .redis_leases import script

if TYPE_CHECKING:
    from .redis_leases import RedisLeaseStore

__all__ = ["list_resources"]

BATCH = 200  # resources per script call: 1,000 keys, well under Lua's unpack limit


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _left(deadline: float, store: RedisLeaseStore) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout(f"{store.driver.name}: listing the leases did not finish in time")
    return left


async def list_resources(store: RedisLeaseStore, *, timeout: float) -> list[ResourceLeases]:
    deadline = time.monotonic() + timeout
    reply = await store._conn.call("lease index", "ZRANGE", store.index_key, 0, -1, timeout=timeout)
    if not isinstance(reply, list):
        raise BackendError(f"{store.driver.name}: reading the lease index failed: {reply!r:.200}")
    resources = sorted(_text(m).partition(":")[::2] for m in reply)  # (kind, name)
    found: list[ResourceLeases] = []
    for first in range(0, len(resources), BATCH):
        batch = resources[first : first + BATCH]
        keys = [k for kind, name in batch for k in store._keys(kind, [name])] + [store.index_key]
        rows = await script("lease_list").run(store._conn, keys, [], timeout=_left(deadline, store))
        try:
            found += [_record(row) for row in rows]
        except (TypeError, ValueError, IndexError) as exc:
            raise ProtocolError(f"{store.driver.name}: unexpected reply to lease_list: {rows!r:.200}") from exc
    return found


def _record(row: list[Any]) -> ResourceLeases:
    resource, slots, fence, holders, waiters = row
    kind, _, name = _text(resource).partition(":")
    return ResourceLeases(
        kind,
        name,
        int(slots),
        int(fence),
        tuple(HolderInfo(_text(owner), int(f), int(ms) / 1000, _text(token)) for token, owner, f, ms in holders),
        tuple(LeaseWaiter(_text(owner), _text(ticket), int(ms) / 1000) for ticket, owner, ms in waiters),
    )
