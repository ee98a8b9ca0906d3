"""The seed's assumptions 4 and 6 through lockstep.cfn, on every driver (time-scaled).

* circular wait: two coordinators wait for each other's ACKs; both come back empty by
  their deadline (the seed: 30 s; here 1 s);
* productive waiting: the seed's four tasks (5, 3, 4, 2 s) while a dependency resolves
  after 10 s, scaled by 1/10: at least half the work done during the wait, and the whole
  in under 1.5 s (the seed's 15 s), not wait + work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import lockstep
import pytest
from lockstep.cfn import BlockingCoordinationManager, SprintCoordinator
from lockstep.errors import InvalidInputError, SignatureError, WaitTimeout

SCALE = 0.1
SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
async def peer(url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    async with lockstep.connect(url, namespace=namespace, member="peer", timeout=5.0) as c:
        yield c


async def test_circular_wait_times_out_empty_on_both_sides(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    one = BlockingCoordinationManager(coord, "sprint-1")
    two = BlockingCoordinationManager(peer, "sprint-2")
    started = time.monotonic()
    result1, result2 = await asyncio.gather(
        one.wait_for_acks(["sprint-2"], "signal-1", 30 * SCALE / 3),
        two.wait_for_acks(["sprint-1"], "signal-2", 30 * SCALE / 3),
    )
    took = time.monotonic() - started
    assert result1 == {} and result2 == {}
    assert 1.0 <= took < 1.0 + 0.5 * SCALE * 3  # the seed: < 35 s for a 30 s timeout


async def test_circular_wait_with_signals_sent_still_ends_by_the_deadline(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    one = BlockingCoordinationManager(coord, "sprint-1")
    two = BlockingCoordinationManager(peer, "sprint-2")
    await one.send_signal("signal-1", to=["sprint-2"])
    await two.send_signal("signal-2", to=["sprint-1"])
    started = time.monotonic()
    result1, result2 = await asyncio.gather(
        one.wait_for_acks(["sprint-2"], "signal-1", 0.5), two.wait_for_acks(["sprint-1"], "signal-2", 0.5)
    )
    assert result1 == {} and result2 == {} and time.monotonic() - started < 0.65


async def test_signal_ack_and_wait(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    lead = BlockingCoordinationManager(coord, "coordinator-a", secret=SECRET)
    follower_b = BlockingCoordinationManager(peer, "coordinator-b", secret=SECRET)
    follower_c = BlockingCoordinationManager(peer, "coordinator-c", secret=SECRET)
    sig = await lead.send_signal("phase-done", to=["coordinator-b", "coordinator-c"], data={"phase": 2})
    waiting = asyncio.create_task(lead.wait_for_acks(["coordinator-b", "coordinator-c"], "phase-done", 5))
    received = await follower_b.receive("phase-done", "coordinator-a")
    assert received.data == {"to": ["coordinator-b", "coordinator-c"], "data": {"phase": 2}}
    await follower_b.acknowledge("phase-done", "coordinator-a")
    await follower_c.acknowledge("phase-done", "coordinator-a")
    acks = await waiting
    assert set(acks) == {"coordinator-b", "coordinator-c"}
    assert all(a.signed and a.generation == sig.generation for a in acks.values())


async def test_acks_signed_with_another_secret_are_not_counted(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    wrong = b"not-the-shared-secret-at-all-!!!"
    lead = BlockingCoordinationManager(coord, "a", secret=SECRET)
    impostor = BlockingCoordinationManager(peer, "b", secret=wrong)
    await lead.send_signal("go", to="b")
    with pytest.raises(SignatureError, match="forged signal"):  # it cannot verify the lead's signal either
        await impostor.acknowledge("go", "a")
    # read without verifying, then ACKed with the wrong secret: not counted
    signal = await peer.signals().latest("a", "go")
    assert signal is not None
    await peer.signals(secret=wrong).ack(signal, by="b")
    assert await lead.wait_for_acks(["b"], "go", 0.3) == {}


async def test_acknowledge_refuses_a_signal_meant_for_others(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    await BlockingCoordinationManager(coord, "a").send_signal("go", to=["b"])
    with pytest.raises(InvalidInputError, match="not 'c'"):
        await BlockingCoordinationManager(peer, "c").acknowledge("go", "a")
    with pytest.raises(WaitTimeout):
        await BlockingCoordinationManager(peer, "c").acknowledge("never-sent", "a", timeout=0.2)


async def test_productive_waiting_does_half_the_work_during_the_wait(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    sprint = SprintCoordinator(coord, "sprint-dependent", dependencies=["sprint-provider"])
    work = [
        {"type": "framework", "file": "base-classes.ts", "estimated": 5.0},
        {"type": "utils", "file": "helpers.ts", "estimated": 3.0},
        {"type": "mocks", "file": "api-mocks.ts", "estimated": 4.0},
        {"type": "tests", "file": "fixtures.ts", "estimated": 2.0},
    ]
    done: list[str] = []

    async def run(task: dict[str, Any]) -> None:
        await asyncio.sleep(task["estimated"] * SCALE)
        done.append(task["file"])

    async def provider() -> None:
        await asyncio.sleep(10 * SCALE)
        await SprintCoordinator(peer, "sprint-provider").signal_interface_ready({"interface": "AuthAPI"})

    started = time.monotonic()
    providing = asyncio.create_task(provider())
    result = await sprint.wait_for_dependencies_with_productive_work(work, run, timeout=60 * SCALE)
    duration = time.monotonic() - started
    await providing
    assert result.resolved and result.pending == []
    assert len(result.completed) >= 2  # at least 50% of the work during the wait
    assert duration < 15 * SCALE  # close to max(wait, work), not wait + work (24 s)
    # It returned once the dependency resolved, after finishing the task in hand: 5 + 3 + 4 s.
    assert [t["file"] for t in result.completed] == done == ["base-classes.ts", "helpers.ts", "api-mocks.ts"]
    assert [t["file"] for t in result.remaining] == ["fixtures.ts"]
    assert result.resolved_after is not None and 10 * SCALE <= result.resolved_after < 11 * SCALE
    assert result.interfaces["sprint-provider"].data == {"interface": "AuthAPI"}
    assert await sprint.integrate_dependency("sprint-provider") == {"interface": "AuthAPI"}


async def test_productive_waiting_out_of_work_waits_then_times_out(coord: lockstep.Coordinator) -> None:
    sprint = SprintCoordinator(coord, "s2", dependencies=["s1"])

    async def run(task: float) -> None:
        await asyncio.sleep(task)

    started = time.monotonic()
    result = await sprint.wait_for_dependencies_with_productive_work([0.05, 0.05], run, timeout=0.5)
    assert not result.resolved and result.pending == ["s1"] and len(result.completed) == 2
    assert result.remaining == [] and 0.5 <= time.monotonic() - started < 0.65


async def test_productive_waiting_with_resolved_dependencies_does_no_work(coord: lockstep.Coordinator) -> None:
    await SprintCoordinator(coord, "s1").signal_interface_ready({"file": "a.ts"})
    sprint = SprintCoordinator(coord, "s2", dependencies=["s1"])
    ran: list[int] = []

    async def run(task: int) -> None:
        ran.append(task)

    result = await sprint.wait_for_dependencies_with_productive_work([1, 2, 3], run, timeout=5)
    assert result.resolved and result.remaining == [1, 2, 3] and ran == []
    assert await sprint.integrate_dependency("s1") == {"file": "a.ts"}
    with pytest.raises(WaitTimeout):
        await sprint.integrate_dependency("never", timeout=0.2)
    with pytest.raises(InvalidInputError, match="itself"):
        SprintCoordinator(coord, "x", dependencies=["x"])
