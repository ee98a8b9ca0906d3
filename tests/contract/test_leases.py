"""Fenced leases, one suite for every driver: exclusion, fences, waiting, release, loss.

Two or three coordinators share one backend (same URL and namespace), as separate
clients would. Timing bounds are generous for a busy 2-core box but tight enough to
tell a wake-up from the polling fallback (one second on Redis and memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import lockstep
import pytest
from lockstep.errors import (
    ClaimConflict,
    InvalidInputError,
    InvalidNameError,
    LeaseLost,
    LockTimeout,
)

WAKE_BOUND = 0.25  # s: a woken waiter has the lock this soon after the release


@pytest.fixture
def connect(url: str, namespace: str) -> Callable[[str], lockstep.Coordinator]:
    return lambda member: lockstep.connect(url, namespace=namespace, member=member, timeout=5.0)


@pytest.fixture
async def alice(connect) -> AsyncIterator[lockstep.Coordinator]:
    async with connect("alice") as c:
        yield c


@pytest.fixture
async def bob(connect) -> AsyncIterator[lockstep.Coordinator]:
    async with connect("bob") as c:
        yield c


def partition(coord: lockstep.Coordinator) -> None:
    """Make every renewal of ``coord`` fail as if the backend were unreachable."""
    store = coord._lease_manager().store

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise lockstep.Timeout("test: the backend is unreachable")

    store.renew = unreachable  # type: ignore[method-assign]


async def eventually(check: Callable[[], object], within: float = 2.0) -> None:
    give_up = time.monotonic() + within
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < give_up, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- exclusion and fences ----------------------------------------------------------------
async def test_fences_strictly_increase_across_holders(alice, bob) -> None:
    fences = []
    for coord in (alice, bob, alice, bob, bob):
        async with coord.lock("f", ttl=5, wait=5) as lease:
            fences.append(lease.fence)
            assert lease.holder == coord.member and lease.name == "f" and lease.fences == {"f": lease.fence}
    assert fences == sorted(fences) and len(set(fences)) == len(fences)


async def test_at_most_one_holder_under_50_tasks(alice, bob) -> None:
    inside, most, fences = 0, 0, []

    async def worker(coord: lockstep.Coordinator) -> None:
        nonlocal inside, most
        async with coord.lock("one", ttl=10, wait=30) as lease:
            inside += 1
            most = max(most, inside)
            fences.append(lease.fence)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(worker(alice if i % 2 else bob) for i in range(50)))
    assert most == 1
    assert fences == sorted(fences) and len(set(fences)) == 50


async def test_semaphore_admits_at_most_its_slots(alice, bob) -> None:
    inside, most = 0, 0

    async def worker(coord: lockstep.Coordinator) -> None:
        nonlocal inside, most
        async with coord.semaphore("gpu", 3, ttl=10, wait=30):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.gather(*(worker(alice if i % 2 else bob) for i in range(50)))
    assert most == 3
    holders = await alice.lease_holders("gpu", kind="sem")
    assert holders == []


# -- waiting -------------------------------------------------------------------------------
async def test_waiters_are_served_first_come_first_served(alice, bob, connect) -> None:
    order: list[int] = []
    held = await alice.lock("q", ttl=10, wait=1)

    async def waiter(i: int, coord: lockstep.Coordinator) -> None:
        async with coord.lock("q", ttl=10, wait=20):
            order.append(i)

    others = [connect(f"w{i}") for i in range(3)]
    for c in others:
        await c.open()
    try:
        tasks = []
        for i in range(6):  # queued one after the other, across four coordinators
            tasks.append(asyncio.create_task(waiter(i, (bob, *others)[i % 4])))
            await asyncio.sleep(0.1)
        await held.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        for c in others:
            await c.close()
    assert order == list(range(6))


async def test_a_waiter_wakes_promptly_on_release(alice, bob) -> None:
    for _ in range(3):
        held = await alice.lock("w", ttl=10, wait=1)
        waiter = asyncio.create_task(bob.lock("w", ttl=10, wait=10)._acquire())
        await asyncio.sleep(0.15)  # in line, asleep
        released = time.monotonic()
        await held.release()
        lease = await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - released < WAKE_BOUND
        await lease.release()


async def test_timeout_names_the_holder_and_is_a_timeout(alice, bob) -> None:
    async with alice.lock("t", ttl=10, wait=1):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            await bob.lock("t", wait=0.3)
        assert 0.3 <= time.monotonic() - started < 1.5
        assert info.value.holders == ("alice",) and info.value.resource == "t"
        assert isinstance(info.value, lockstep.Timeout) and isinstance(info.value, TimeoutError)
        assert "alice" in str(info.value) and "'t'" in str(info.value)
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            await bob.lock("t", wait=0)  # tries once
        assert time.monotonic() - started < 0.5


async def test_a_waiter_that_timed_out_does_not_block_the_next(alice, bob, connect) -> None:
    held = await alice.lock("x", ttl=10, wait=1)
    with pytest.raises(LockTimeout):
        await bob.lock("x", wait=0.3)  # was first in line, gave up
    async with connect("carol") as carol:
        waiter = asyncio.create_task(carol.lock("x", ttl=10, wait=10)._acquire())
        await asyncio.sleep(0.1)
        released = time.monotonic()
        await held.release()
        lease = await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - released < WAKE_BOUND, "the expired waiter blocked the queue"
        await lease.release()


async def test_a_cancelled_waiter_leaves_the_queue(alice, bob, connect) -> None:
    held = await alice.lock("c", ttl=10, wait=1)
    cancelled = asyncio.create_task(bob.lock("c", ttl=10, wait=10)._acquire())
    await asyncio.sleep(0.1)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.sleep(0.1)
    async with connect("carol") as carol:
        waiter = asyncio.create_task(carol.lock("c", ttl=10, wait=10)._acquire())
        await asyncio.sleep(0.1)
        released = time.monotonic()
        await held.release()
        lease = await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - released < WAKE_BOUND
        await lease.release()


# -- release -------------------------------------------------------------------------------
async def test_release_is_idempotent(alice, bob) -> None:
    lease = await alice.lock("r", ttl=10, wait=1)
    assert await lease.release() is True
    assert await lease.release() is True  # the same release, not a second one
    other = await bob.lock("r", ttl=10, wait=0)
    assert other.fence > lease.fence
    assert await lease.release() is True  # still does not touch bob's lease
    assert [h.owner for h in await alice.lease_holders("r")] == ["bob"]
    await other.release()


async def test_release_survives_cancellation(alice, bob) -> None:
    for _ in range(5):
        lease = await alice.lock("cancel", ttl=30, wait=1)
        releasing = asyncio.create_task(lease.release())
        await asyncio.sleep(0)
        releasing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await releasing  # cancelled mid-flight (the memory driver may finish at once)
        # The lock ends released, long before its 30 s TTL.
        other = await bob.lock("cancel", ttl=30, wait=2)
        await other.release()


async def test_closing_the_coordinator_releases_its_leases(connect, bob) -> None:
    carol = await connect("carol").open()
    await carol.lock("closing", ttl=30, wait=1)
    await carol.semaphore("closing", 2, ttl=30, wait=1)
    await carol.close()
    lease = await bob.lock("closing", ttl=5, wait=0)
    await lease.release()
    assert await bob.lease_holders("closing", kind="sem") == []


# -- extend and loss -----------------------------------------------------------------------
async def test_extend_moves_the_deadline(alice) -> None:
    lease = await alice.lock("e", ttl=0.5, wait=1)
    await lease.extend(5)
    assert lease.ttl == 5 and lease.deadline - time.monotonic() > 4
    (holder,) = await alice.lease_holders("e")
    assert holder.owner == "alice" and holder.fence == lease.fence and holder.expires_in > 4
    await asyncio.sleep(0.7)  # past the old ttl
    lease.check()
    await lease.release()


async def test_the_renewer_keeps_a_lease_alive(alice, bob) -> None:
    async with alice.lock("kept", ttl=0.4, wait=1) as lease:
        await asyncio.sleep(1.3)  # three ttls
        lease.check()
        with pytest.raises(LockTimeout):
            await bob.lock("kept", wait=0)
    assert alice._lease_manager().renewer.running


async def test_lost_fires_by_the_deadline_when_renewal_fails(alice, bob) -> None:
    lease = await alice.lock("lost", ttl=0.5, wait=1)
    partition(alice)
    await asyncio.wait_for(lease.lost, 1.5)
    assert time.monotonic() <= lease.deadline + 0.1
    assert lease.lost.is_set() and "deadline" in (lease.lost.reason or "")
    with pytest.raises(LeaseLost):
        lease.check()
    other = await bob.lock("lost", ttl=5, wait=2)  # free once its TTL passed
    assert other.fence > lease.fence
    await other.release()


async def test_lost_fires_at_once_when_the_backend_drops_the_lease(alice) -> None:
    lease = await alice.lock("dropped", ttl=5, wait=1)
    store = alice._lease_manager().store
    assert await store.release(lease.token, "lock", ["dropped"], timeout=2) is True  # behind its back
    with pytest.raises(LeaseLost):
        await lease.extend()
    assert lease.lost.is_set() and "no longer" in (lease.lost.reason or "")
    assert await lease.release() is False


async def test_leaving_async_with_after_loss_raises_lease_lost(alice) -> None:
    with pytest.raises(LeaseLost, match="lost before the `async with` block ended"):
        async with alice.lock("aw", ttl=0.3, wait=1):
            partition(alice)
            await asyncio.sleep(0.6)
    with pytest.raises(ValueError, match="the body's own error"):
        async with alice.lock("aw2", ttl=0.3, wait=1):
            await asyncio.sleep(0.6)  # partitioned still: lost
            raise ValueError("the body's own error")


async def test_a_stale_fenced_write_is_refused(alice, bob) -> None:
    old = await alice.lock("fw", ttl=0.4, wait=1)
    await old.fenced_set("result", b"first")
    partition(alice)
    new = await bob.lock("fw", ttl=5, wait=3)
    assert new.fence > old.fence
    await new.fenced_set("result", b"second")
    with pytest.raises(LeaseLost):
        await old.fenced_set("result", b"stale")
    assert await bob.fenced_get("fw", "result") == b"second"
    await new.release()


# -- many resources ------------------------------------------------------------------------
async def test_acquire_many_is_all_or_nothing_and_names_conflicts(alice, bob) -> None:
    held = await bob.lock("b", ttl=10, wait=1)
    with pytest.raises(ClaimConflict) as info:
        await alice.acquire_many(["a", "b", "c"], wait=0)
    assert info.value.conflicts == {"b": "bob"}
    assert await alice.lease_holders("a") == [] and await alice.lease_holders("c") == []
    waiting = asyncio.create_task(alice.acquire_many(["a", "b", "c"], ttl=10, wait=10)._acquire())
    await asyncio.sleep(0.1)
    await held.release()
    lease = await asyncio.wait_for(waiting, 5)
    assert set(lease.fences) == {"a", "b", "c"} and lease.resources == ("a", "b", "c")
    assert lease.fences["b"] > held.fence
    with pytest.raises(ClaimConflict) as info:
        await bob.acquire_many(["c", "d"], kind="lock", wait=0.2)
    assert info.value.conflicts == {"c": "alice"}
    await lease.release()
    both = await bob.acquire_many(["c", "d"], wait=0)
    await both.release()


async def test_kinds_are_separate_resource_families(alice, bob) -> None:
    async with alice.acquire_many(["src/a.py"], kind="claim", wait=1):
        async with bob.lock("src/a.py", wait=0):  # a lock of the same name is another resource
            pass
        with pytest.raises(ClaimConflict):
            await bob.acquire_many(["src/a.py", "src/b.py"], kind="claim", wait=0)


# -- bad input -----------------------------------------------------------------------------
def test_bad_arguments_are_refused_at_the_call(alice) -> None:
    with pytest.raises(InvalidNameError):
        alice.lock("no spaces")
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(InvalidInputError, match="ttl"):
            alice.lock("x", ttl=bad)
    for bad in (-1, float("nan"), float("inf"), None):
        with pytest.raises(InvalidInputError, match="wait"):
            alice.lock("x", wait=bad)
    for slots in (0, -2, 1.5, True, 2**40):
        with pytest.raises(InvalidInputError, match="slots"):
            alice.semaphore("x", slots)
    with pytest.raises(InvalidInputError, match="at least one"):
        alice.acquire_many([])
    with pytest.raises(InvalidInputError, match="twice"):
        alice.acquire_many(["a", "a"])
    with pytest.raises(InvalidInputError, match="list of names"):
        alice.acquire_many("abc")
    with pytest.raises(InvalidInputError, match="kind"):
        alice.acquire_many(["a"], kind="Not A Kind")


async def test_fenced_write_arguments_are_checked(alice) -> None:
    async with alice.acquire_many(["p", "q"], wait=1) as lease:
        with pytest.raises(InvalidInputError, match="not one of"):
            await lease.fenced_set("k", b"v", resource="zzz")
        with pytest.raises(InvalidNameError):
            await lease.fenced_set("bad key", b"v")
        with pytest.raises(InvalidInputError, match="bytes"):
            await lease.fenced_set("k", "text")  # type: ignore[arg-type]
        await lease.fenced_set("k", b"v", resource="q")
        assert await alice.fenced_get("q", "k") == b"v"
        assert await alice.fenced_get("p", "k") is None


async def test_a_released_lease_refuses_writes_and_extension(alice) -> None:
    lease = await alice.lock("done", ttl=5, wait=1)
    await lease.release()
    with pytest.raises(LeaseLost, match="released"):
        lease.check()
    with pytest.raises(LeaseLost):
        await lease.extend()
    with pytest.raises(LeaseLost):
        await lease.fenced_set("k", b"late")
    assert await alice.fenced_get("done", "k") is None


async def test_closing_the_coordinator_ends_its_waits(connect, bob) -> None:
    held = await bob.lock("busy", ttl=10, wait=1)
    carol = await connect("carol").open()
    waiter = asyncio.create_task(carol.lock("busy", wait=30)._acquire())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await carol.close()
    with pytest.raises(lockstep.BackendUnavailable, match="closed"):
        await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 2
    await held.release()
    assert await bob.lease_holders("busy") == []


async def test_a_short_ttl_waiter_served_after_a_long_wait_holds_a_live_lease(alice, bob) -> None:
    held = await alice.lock("short", ttl=5, wait=1)
    waiter = asyncio.create_task(bob.lock("short", ttl=0.3, wait=5)._acquire())
    await asyncio.sleep(1.2)  # several of the waiter's ttls in line
    await held.release()
    lease = await asyncio.wait_for(waiter, 3)
    assert lease.deadline - time.monotonic() > 0.1 and not lease.lost.is_set()
    await asyncio.sleep(0.8)  # renewed from then on
    lease.check()
    await lease.release()
