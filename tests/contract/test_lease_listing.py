"""Listing the leases of a namespace (``coord.leases()``) and retiring idle resources
(``coord.purge_lease()``), on every driver: held locks, semaphore slots, queued waiters in
order, expiry, namespace isolation; on Redis, the resource index the listing reads instead
of scanning the keyspace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import lockstep
import pytest
from lockstep.drivers.lease_store import QUEUE_TTL, AcquireRequest, Grant

from tests.conftest import DRIVERS


@pytest.fixture
def connect(url: str, namespace: str) -> Callable[..., lockstep.Coordinator]:
    return lambda member, ns=namespace: lockstep.connect(url, namespace=ns, member=member, timeout=5.0)


@pytest.fixture
async def trio(connect) -> AsyncIterator[tuple[lockstep.Coordinator, ...]]:
    async with connect("alice") as a, connect("bob") as b, connect("carol") as c:
        yield a, b, c


async def wait_for_queue(coord: lockstep.Coordinator, name: str, length: int) -> lockstep.ResourceLeases:
    for _ in range(300):
        found = {r.name: r for r in await coord.leases()}
        if name in found and len(found[name].waiters) == length:
            return found[name]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name}: the queue never reached {length} waiter(s)")


async def test_nothing_held_lists_nothing(trio) -> None:
    alice, _, _ = trio
    assert await alice.leases() == []


async def test_held_lock_is_listed_with_holder_fence_and_expiry(trio) -> None:
    alice, _, _ = trio
    async with alice.lock("build", ttl=10) as lease:
        (found,) = await alice.leases()
        assert (found.kind, found.name, found.slots, found.fence) == ("lock", "build", 1, lease.fence)
        (holder,) = found.holders
        assert (holder.owner, holder.fence, holder.token) == ("alice", lease.fence, lease.token)
        assert 8.0 < holder.expires_in <= 10.0
        assert found.waiters == ()
    assert await alice.leases() == []  # released: gone from the listing


async def test_semaphore_slots_list_every_holder_lowest_fence_first(trio) -> None:
    alice, bob, carol = trio
    first = await alice.semaphore("gpu", 3, ttl=10)
    second = await bob.semaphore("gpu", 3, ttl=10)
    try:
        (found,) = await carol.leases()
        assert (found.kind, found.name, found.slots) == ("sem", "gpu", 3)
        assert [(h.owner, h.fence) for h in found.holders] == [("alice", first.fence), ("bob", second.fence)]
        assert found.fence == second.fence
    finally:
        await first.release()
        await second.release()


async def test_waiters_are_listed_in_queue_order(trio) -> None:
    alice, bob, carol = trio
    held = await alice.lock("deploy", ttl=10)
    bob_turn = asyncio.create_task(_take(bob, "deploy"))
    await wait_for_queue(alice, "deploy", 1)
    carol_turn = asyncio.create_task(_take(carol, "deploy"))
    found = await wait_for_queue(alice, "deploy", 2)
    try:
        assert [h.owner for h in found.holders] == ["alice"]
        assert [w.owner for w in found.waiters] == ["bob", "carol"]
        assert all(0 < w.expires_in <= QUEUE_TTL for w in found.waiters)
        assert len({w.ticket for w in found.waiters}) == 2
        await held.release()
        bob_lease = await asyncio.wait_for(bob_turn, 5)
        found = await wait_for_queue(alice, "deploy", 1)
        assert [h.owner for h in found.holders] == ["bob"] and [w.owner for w in found.waiters] == ["carol"]
        await bob_lease.release()
        await (await asyncio.wait_for(carol_turn, 5)).release()
    finally:
        for task in (bob_turn, carol_turn):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    assert await alice.leases() == []


async def _take(coord: lockstep.Coordinator, name: str) -> lockstep.Lease:
    return await coord.lock(name, ttl=10, wait=8)


async def test_an_expired_lease_drops_out_of_the_listing(trio) -> None:
    alice, bob, _ = trio
    store = alice._lease_manager().store  # straight to the store: no renewer keeps it alive
    request = AcquireRequest(token=f"{store.session}.t1", owner="alice", kind="port", names=("8080",), slots=1, ttl=0.3)
    assert isinstance(await store.acquire(request, timeout=5), Grant)
    (found,) = await bob.leases()
    assert (found.kind, found.name) == ("port", "8080")
    assert 0 < found.holders[0].expires_in <= 0.3
    await asyncio.sleep(0.45)
    assert await bob.leases() == []


async def test_claims_list_each_resource(trio) -> None:
    alice, bob, _ = trio
    async with alice.acquire_many(["a", "b"], kind="claim", ttl=10) as lease:
        found = await bob.leases()
        assert [(r.kind, r.name) for r in found] == [("claim", "a"), ("claim", "b")]
        assert all(r.holders[0].token == lease.token for r in found)


async def test_other_namespaces_are_not_listed(trio, connect, namespace: str) -> None:
    alice, _, _ = trio
    async with connect("dave", ns=namespace + "x") as other, other.lock("build", ttl=10):
        assert await alice.leases() == []
        async with alice.lock("build", ttl=10):
            assert [h.owner for r in await alice.leases() for h in r.holders] == ["alice"]
            assert [h.owner for r in await other.leases() for h in r.holders] == ["dave"]


async def test_purge_refuses_a_busy_resource_and_forgets_an_idle_one(trio, connect) -> None:
    alice, bob, _ = trio
    async with alice.lock("result", ttl=10) as lease:
        await lease.fenced_set("out", b"v1")
        assert await bob.purge_lease("result") is False  # held
        assert await bob.fenced_get("result", "out") == b"v1"
    assert await bob.purge_lease("result") is True
    assert await bob.fenced_get("result", "out") is None
    assert await bob.purge_lease("never-used", kind="sem") is True  # nothing to forget
    async with connect("erin") as fresh, fresh.lock("result", ttl=10) as again:
        assert again.fence == 1  # the counter started over


@pytest.mark.parametrize("url", [d for d in DRIVERS if d.startswith("redis")], indirect=True)
async def test_redis_keeps_an_index_of_fenced_resources(trio, redis_server) -> None:
    """The index lists every resource with a fence key (permanent, like the fences, so a
    lock cycle costs it nothing); a listing shows only the busy ones; purge empties it."""
    alice, bob, _ = trio
    index = alice.keys.meta("leases")
    client = redis_server.client()
    store = alice._lease_manager().store  # straight to the store: no renewer keeps "gone" alive

    async def take_briefly(name: str, ttl: float) -> None:
        request = AcquireRequest(token=f"{store.session}.{name}", owner="alice", kind="lock", names=(name,), slots=1, ttl=ttl)
        assert isinstance(await store.acquire(request, timeout=5), Grant)

    try:
        async with alice.lock("build", ttl=10):
            assert client.zrange(index, 0, -1) == [b"lock:build"]  # its fence was made: indexed
            assert client.pttl(index) == -1  # permanent, like the fences
            await take_briefly("gone", 0.2)
            await asyncio.sleep(0.3)
            assert client.zrange(index, 0, -1) == [b"lock:build", b"lock:gone"]
            assert [r.name for r in await bob.leases()] == ["build"]  # lapsed: indexed, not listed
        assert [r.name for r in await bob.leases()] == []
        assert client.zrange(index, 0, -1) == [b"lock:build", b"lock:gone"]
        async with alice.lock("build", ttl=10):
            assert client.zrange(index, 0, -1) == [b"lock:build", b"lock:gone"]
        assert await bob.purge_lease("gone") and await bob.purge_lease("build")
        assert client.exists(index) == 0  # purged with their fences
    finally:
        client.close()
