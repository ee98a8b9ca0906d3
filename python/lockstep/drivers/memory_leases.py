"""Leases of the memory driver: one :class:`lockstep._core.LeaseTable` per memory space.

Coordinators of one process naming the same space share its lease table, as clients
of one Redis share its keys. Each operation runs under the space's lease lock on
``time.monotonic()``. Wake-ups are direct: a release names the waiters that can now go,
and their coordinators' events are set (thread-safely, in case they run other loops).
A coordinator's leases and queue entries are freed when it closes. Fences and
fenced values live as long as the process.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._core import LeaseTable
from ..errors import BackendUnavailable
from .lease_store import (
    AcquireRequest,
    Blocked,
    Busy,
    Grant,
    HolderInfo,
    LeaseStore,
    RenewItem,
    RenewReply,
    ResourceLeases,
    resource_leases,
)

__all__ = ["MemoryLeaseStore"]

T = TypeVar("T")


class _SpaceLeases:
    """The lease state of one memory space."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.table = LeaseTable()
        self.values: dict[tuple[str, str], bytes] = {}  # (resource id, key) -> fenced value
        self.stores: weakref.WeakValueDictionary[str, MemoryLeaseStore] = weakref.WeakValueDictionary()


_SPACES: dict[str, _SpaceLeases] = {}
_SPACES_LOCK = threading.Lock()


def _space(name: str) -> _SpaceLeases:
    with _SPACES_LOCK:
        found = _SPACES.get(name)
        if found is None:
            found = _SPACES[name] = _SpaceLeases()
        return found


class MemoryLeaseStore(LeaseStore):
    epoch = None

    def __init__(self, space: str, *, session: str, owner: str, keys: Any = None) -> None:
        super().__init__(session=session, owner=owner, keys=keys)
        self.space_name = space
        self._space: _SpaceLeases | None = _space(space)
        self._space.stores[session] = self

    def _run(self, fn: Callable[[_SpaceLeases, float], T]) -> T:
        space = self._space
        if space is None:
            raise BackendUnavailable(f"memory://{self.space_name}: the coordinator is closed")
        with space.lock:
            return fn(space, time.monotonic())

    def _wake(self, space: _SpaceLeases, tickets: Sequence[str]) -> None:
        for ticket in tickets:
            store = space.stores.get(ticket.partition(".")[0])
            if store is not None:
                store.deliver_threadsafe(ticket)

    async def acquire(self, req: AcquireRequest, *, timeout: float) -> Grant | Busy:
        ids = [self.rid(req.kind, n) for n in req.names]

        def run(space: _SpaceLeases, now: float) -> Grant | Busy:
            outcome = space.table.acquire(
                req.token, req.owner, self.session, ids, req.slots, req.ttl, now,
                req.queue_ttl, list(req.floors) or None,
            )  # fmt: skip
            if outcome[0] == "granted":
                return Grant(tuple(outcome[1]), tuple(self.name_of(r) for r in outcome[2]))
            _, blockers, retry_in, queued = outcome
            return Busy(
                tuple(Blocked(self.name_of(r), tuple(h), tuple(w)) for r, h, w in blockers), retry_in, queued
            )

        return self._run(run)

    async def renew(self, items: Sequence[RenewItem], *, timeout: float) -> RenewReply:
        def run(space: _SpaceLeases, now: float) -> RenewReply:
            return RenewReply(
                [
                    space.table.renew(i.token, [self.rid(i.kind, n) for n in i.names], i.ttl, now)
                    for i in items
                ]
            )

        return self._run(run)

    async def release(self, token: str, kind: str, names: Sequence[str], *, timeout: float) -> bool:
        def run(space: _SpaceLeases, now: float) -> bool:
            held, wake = space.table.release(token, [self.rid(kind, n) for n in names], now)
            self._wake(space, wake)
            return held

        return self._run(run)

    async def fenced_set(
        self, token: str, kind: str, name: str, fence: int, key: str, value: bytes, *, timeout: float
    ) -> bool:
        rid = self.rid(kind, name)

        def run(space: _SpaceLeases, now: float) -> bool:
            if not space.table.is_held(token, rid, fence, now):
                return False
            space.values[(rid, key)] = value
            return True

        return self._run(run)

    async def fenced_get(self, kind: str, name: str, key: str, *, timeout: float) -> bytes | None:
        return self._run(lambda space, now: space.values.get((self.rid(kind, name), key)))

    async def holders(self, kind: str, name: str, *, timeout: float) -> list[HolderInfo]:
        def run(space: _SpaceLeases, now: float) -> list[HolderInfo]:
            rows = space.table.holders(self.rid(kind, name), now)
            return [HolderInfo(owner, fence, expires_at - now) for _, owner, _, fence, expires_at in rows]

        return self._run(run)

    # -- inspection and retirement ------------------------------------------------------
    async def list_resources(self, *, timeout: float) -> list[ResourceLeases]:
        prefix = self.rid_prefix()

        def run(space: _SpaceLeases, now: float) -> list[ResourceLeases]:
            found = []
            for rid in space.table.resource_names():
                if rid.startswith(prefix) and (record := _table_record(space.table, rid, now)) is not None:
                    found.append(record)
            return sorted(found, key=lambda r: (r.kind, r.name))

        return self._run(run)

    async def purge(self, kind: str, name: str, *, timeout: float) -> bool:
        rid = self.rid(kind, name)

        def run(space: _SpaceLeases, now: float) -> bool:
            if space.table.holders(rid, now) or space.table.queue(rid, now):
                return False
            if space.table.dump(rid) is not None:
                space.table.load(rid, 1, 0, [], [])  # the table keeps names; the fence starts over
            for key in [k for k in space.values if k[0] == rid]:
                del space.values[key]
            return True

        return self._run(run)

    async def close(self) -> None:
        """Free this coordinator's leases and queue entries: the in-process "crash" cleanup."""
        if self._space is not None:
            self._run(lambda space, now: self._wake(space, space.table.release_session(self.session, now)[1]))
            self._space.stores.pop(self.session, None)
            self._space = None
        await super().close()


def _table_record(table: LeaseTable, rid: str, now: float) -> ResourceLeases | None:
    """One resource of a LeaseTable as a listing record (None: nobody holds or waits)."""
    state = table.dump(rid)
    if state is None:
        return None
    slots, fence, holders, waiters = state
    kind, name = LeaseStore.split_rid(rid)
    return resource_leases(
        kind, name, slots, fence,
        [(token, owner, f, expires_at) for token, owner, _, f, expires_at in holders],
        [(ticket, owner, expires_at) for ticket, owner, _, expires_at in waiters],
        now,
    )  # fmt: skip
