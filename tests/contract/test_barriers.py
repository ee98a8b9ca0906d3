"""Barriers: released, timed out (missing), broken (dead); rounds that a late arrival
cannot release; on every driver. Cross-process and killed parties: tests/chaos."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import lockstep
import pytest
from lockstep.barriers import BarrierResult
from lockstep.errors import InvalidInputError, InvalidNameError

SLACK = 0.15


@pytest.fixture
async def peers(url: str, namespace: str) -> AsyncIterator[list[lockstep.Coordinator]]:
    """Three coordinators on one backend and namespace, as three processes would be."""
    coords = [lockstep.connect(url, namespace=namespace, member=f"c{i}", timeout=5.0) for i in range(3)]
    for c in coords:
        await c.open()
    try:
        yield coords
    finally:
        for c in coords:
            await c.close()


async def test_released_when_every_party_arrives(peers: list[lockstep.Coordinator]) -> None:
    parties = ["a", "b", "c"]

    async def arrive(coord: lockstep.Coordinator, me: str, delay: float) -> BarrierResult:
        await asyncio.sleep(delay)
        return await coord.barrier("sync", parties, timeout=10, me=me)

    started = time.monotonic()
    results = await asyncio.gather(*(arrive(c, p, 0.1 * i) for i, (c, p) in enumerate(zip(peers, parties))))
    assert time.monotonic() - started < 2.0
    assert [r.state for r in results] == ["released"] * 3 and all(results)
    assert {r.round for r in results} == {1}
    assert all(r.arrived == ("a", "b", "c") and r.missing == () and r.dead == () for r in results)
    assert len({r.decided_by for r in results}) == 1  # decided once, for everyone


async def test_timed_out_names_the_missing_party_at_the_deadline(peers: list[lockstep.Coordinator]) -> None:
    parties = ["a", "b", "w"]
    started = time.monotonic()
    a, b = await asyncio.gather(
        peers[0].barrier("late", parties, timeout=0.5, me="a"),
        peers[1].barrier("late", parties, timeout=0.5, me="b"),
    )
    took = time.monotonic() - started
    assert 0.5 <= took < 0.5 + SLACK
    for r in (a, b):
        assert r.state == "timed_out" and r.missing == ("w",) and r.arrived == ("a", "b") and not r


async def test_a_late_arrival_gets_its_rounds_outcome_and_never_releases_the_next(
    peers: list[lockstep.Coordinator],
) -> None:
    parties = ["a", "b", "w"]
    ca, cb, cw = peers
    await asyncio.gather(ca.barrier("r", parties, timeout=0.3, me="a"), cb.barrier("r", parties, timeout=0.3, me="b"))
    started = time.monotonic()
    late = await cw.barrier("r", parties, timeout=5, me="w")  # round 1 is over: told at once
    assert time.monotonic() - started < 1.0
    assert (late.round, late.state, late.missing) == (1, "timed_out", ("w",))
    # Round 2: a and b arrive; w's stale round-1 arrival must not complete it.
    a2, b2 = await asyncio.gather(
        ca.barrier("r", parties, timeout=0.4, me="a"), cb.barrier("r", parties, timeout=0.4, me="b")
    )
    assert (a2.round, a2.state, a2.missing) == (2, "timed_out", ("w",))
    assert (b2.round, b2.state) == (2, "timed_out")
    # w counts its own calls: its next one is for round 2, over too, so it is told at once...
    behind = await cw.barrier("r", parties, timeout=5, me="w")
    assert (behind.round, behind.state, behind.missing) == (2, "timed_out", ("w",))
    # ...and from round 3 on, everyone on time is released together.
    results = await asyncio.gather(*(c.barrier("r", parties, timeout=5, me=p) for c, p in zip(peers, parties)))
    assert [(r.round, r.state) for r in results] == [(3, "released")] * 3


async def test_a_late_party_in_a_loop_resyncs_on_its_next_call(peers: list[lockstep.Coordinator]) -> None:
    parties = ["a", "w"]
    ca, cw = peers[:2]
    first = await ca.barrier("loop-late", parties, timeout=0.3, me="a")
    late = await cw.barrier("loop-late", parties, timeout=5, me="w")
    assert (first.state, late.state, late.round) == ("timed_out", "timed_out", 1)
    results = await asyncio.gather(ca.barrier("loop-late", parties, timeout=5, me="a"),
                                   cw.barrier("loop-late", parties, timeout=5, me="w"))  # fmt: skip
    assert [(r.round, r.state) for r in results] == [(2, "released")] * 2


async def test_rounds_repeat(peers: list[lockstep.Coordinator]) -> None:
    parties = ["a", "b"]
    for expected in (1, 2, 3):
        results = await asyncio.gather(*(c.barrier("loop", parties, timeout=5, me=p) for c, p in zip(peers, parties)))
        assert [(r.round, r.state) for r in results] == [(expected, "released")] * 2


async def test_broken_when_a_party_dies_without_arriving(peers: list[lockstep.Coordinator]) -> None:
    """w registers as an agent, then crashes (stops heartbeating): broken(dead=[w]) long
    before the 20 s timeout, as soon as its ttl says it is dead."""
    parties = ["a", "b", "w"]
    agent = await peers[2].agent("w", ttl=0.6, interval=0.2)
    waiting = [
        asyncio.create_task(peers[0].barrier("crash", parties, timeout=20, me="a")),
        asyncio.create_task(peers[1].barrier("crash", parties, timeout=20, me="b")),
    ]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    agent.abandon()  # what a crash does: no more heartbeats, no deregistration
    a, b = await asyncio.gather(*waiting)
    assert time.monotonic() - started < 3.0
    for r in (a, b):
        assert r.state == "broken" and r.dead == ("w",) and r.missing == ("w",) and r.arrived == ("a", "b")


async def test_broken_when_a_party_leaves_without_arriving(peers: list[lockstep.Coordinator]) -> None:
    parties = ["a", "w"]
    agent = await peers[1].agent("w", ttl=30, interval=5)
    waiter = asyncio.create_task(peers[0].barrier("left", parties, timeout=20, me="a"))
    await asyncio.sleep(0.4)  # seen registered
    await agent.leave()
    result = await asyncio.wait_for(waiter, 5)
    assert result.state == "broken" and result.dead == ("w",)


async def test_an_agent_that_arrived_may_leave(peers: list[lockstep.Coordinator]) -> None:
    parties = ["a", "w"]
    async with peers[1].agent("w", ttl=30, interval=5) as agent:
        mine = asyncio.create_task(peers[1].barrier("ok", parties, timeout=5, me=agent))
        await asyncio.sleep(0.2)
        result = await peers[0].barrier("ok", parties, timeout=5, me="a")
    assert result.state == "released" and (await mine).state == "released"


async def test_parties_must_agree_and_include_me(peers: list[lockstep.Coordinator]) -> None:
    with pytest.raises(InvalidInputError, match="not one of the barrier's parties"):
        await peers[0].barrier("x", ["a", "b"], timeout=1, me="z")
    with pytest.raises(InvalidInputError, match="parties"):
        await peers[0].barrier("x", "ab", timeout=1, me="a")
    with pytest.raises(InvalidNameError):
        await peers[0].barrier("bad name", ["a"], timeout=1, me="a")
    with pytest.raises(InvalidInputError, match="timeout"):
        await peers[0].barrier("x", ["a"], timeout=0, me="a")
    first = asyncio.create_task(peers[0].barrier("mismatch", ["a", "b"], timeout=2, me="a"))
    await asyncio.sleep(0.1)
    with pytest.raises(InvalidInputError, match="another list of parties"):
        await peers[1].barrier("mismatch", ["a", "b", "c"], timeout=2, me="b")
    first.cancel()


async def test_a_single_party_barrier_releases_at_once(peers: list[lockstep.Coordinator]) -> None:
    result = await peers[0].barrier("solo", ["a"], timeout=1, me="a")
    assert result.state == "released" and result.waited < 0.5
