"""The solo record of an uncontended lock on Redis (lua/lease_common.lua): one key besides
the fence, alive exactly as long as the lease; every other script first turns it into the
general form, keeping its holder, fence and expiry; a release by another token leaves it."""

from __future__ import annotations

import asyncio

import lockstep
from lockstep.drivers.lease_store import AcquireRequest, Grant, RenewItem

from tests.support.redis_server import RedisServer


def prefix(namespace: str, name: str) -> str:
    return f"ls:{namespace}:{{lock:{name}}}"


async def test_an_uncontended_lock_is_one_key_that_expires_with_the_lease(redis_server: RedisServer) -> None:
    async with lockstep.connect(redis_server.url(), namespace="solo1", member="alice", timeout=5) as coord:
        store = coord._lease_manager().store  # straight to the store: no renewer
        request = AcquireRequest("s.one", "alice", "lock", ("x",), slots=1, ttl=0.3)
        grant = await store.acquire(request, timeout=5)
        assert isinstance(grant, Grant) and grant.fences == (1,)
        with redis_server.client() as c:
            keys = sorted(k.decode() for k in c.scan_iter(match=f"{prefix('solo1', 'x')}*"))
            assert keys == [f"{prefix('solo1', 'x')}:fence", f"{prefix('solo1', 'x')}:holders"]
            assert c.type(f"{prefix('solo1', 'x')}:holders") == b"string"
            assert 200 < c.pttl(f"{prefix('solo1', 'x')}:holders") < 300  # the lease's ttl, not 1 s more
        assert [h.owner for h in await coord.lease_holders("x")] == ["alice"]
        await asyncio.sleep(0.35)
        assert await coord.lease_holders("x") == []
        assert not await store.release("s.one", "lock", ["x"], timeout=5)  # lapsed: not held
        async with coord.lock("x", ttl=5) as again:
            assert again.fence == 2


async def test_other_scripts_see_the_holder_of_a_solo_record(redis_server: RedisServer) -> None:
    async with (
        lockstep.connect(redis_server.url(), namespace="solo2", member="alice", timeout=5) as alice,
        lockstep.connect(redis_server.url(), namespace="solo2", member="bob", timeout=5) as bob,
    ):
        store = alice._lease_manager().store
        grant = await store.acquire(AcquireRequest("s.a", "alice", "lock", ("x",), 1, ttl=5), timeout=5)
        assert isinstance(grant, Grant)
        # A release by another token (a stale retry) leaves the holder, its fence and expiry.
        assert not await store.release("s.other", "lock", ["x"], timeout=5)
        (holder,) = await bob.lease_holders("x")
        assert (holder.owner, holder.fence) == ("alice", 1) and 4.5 < holder.expires_in <= 5
        assert [r.name for r in await bob.leases()] == ["x"]
        with redis_server.client() as c:
            assert c.type(f"{prefix('solo2', 'x')}:holders") == b"zset"  # turned into the general form
        assert (await store.renew([RenewItem("s.a", "lock", ("x",), 5)], timeout=5)).held == [True]
        # The same token asking again keeps its grant (idempotent); another waits.
        again = await store.acquire(AcquireRequest("s.a", "alice", "lock", ("x",), 1, ttl=5), timeout=5)
        assert isinstance(again, Grant) and again.fences == (1,)
        assert not isinstance(await store.acquire(AcquireRequest("s.b", "bob", "lock", ("x",), 1, ttl=5), timeout=5), Grant)
        assert await store.release("s.a", "lock", ["x"], timeout=5)
        assert await bob.lease_holders("x") == []


async def test_a_waiter_behind_a_solo_record_is_handed_the_lock(redis_server: RedisServer) -> None:
    async with (
        lockstep.connect(redis_server.url(), namespace="solo3", member="alice", timeout=5) as alice,
        lockstep.connect(redis_server.url(), namespace="solo3", member="bob", timeout=5) as bob,
    ):
        first = await alice.lock("x", ttl=5)
        waiting = asyncio.ensure_future(bob.lock("x", ttl=5, wait=5))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await first.release()
        second = await asyncio.wait_for(waiting, 2)
        assert second.fence == first.fence + 1
        assert [h.owner for h in await alice.lease_holders("x")] == ["bob"]
        await second.release()
