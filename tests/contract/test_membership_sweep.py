"""Sweeping: exactly the dead reaped, once, with what they owned; on every driver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator

import pytest

import lockstep
from lockstep import ownership, procinfo
from lockstep.drivers.member_store import Registration
from lockstep.errors import Reaped


@pytest.fixture
async def peer(url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    async with lockstep.connect(url, namespace=namespace, timeout=5.0) as c:
        yield c


async def crashed(coord: lockstep.Coordinator, agent_id: str, *, ttl: float = 0.3, keys: int = 1) -> int:
    """Register an agent that writes owned state, then stops heartbeating without leaving."""
    agent = await coord.agent(agent_id, ttl=ttl, interval=ttl / 3)
    for i in range(keys):
        await agent.put(f"k{i}", b"x" * 100)
    agent.abandon()
    return agent.incarnation


async def test_sweep_reaps_exactly_the_silent_and_deletes_what_they_owned(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    for i in range(3):
        await crashed(coord, f"dead-{i}", keys=2)
    async with coord.agent("alive-1", ttl=0.8, interval=0.1) as a, coord.agent("alive-2", ttl=5, interval=1) as b:
        await a.put("mine", b"1")
        await asyncio.sleep(0.45)
        report = await peer.sweep()
        assert sorted(report.agents) == ["dead-0", "dead-1", "dead-2"]
        assert {r.reason for r in report.reaped} == {"stale"}
        assert all(r.age is not None and r.age > 0.3 for r in report.reaped)
        assert report.keys_deleted == 6
        for i in range(3):
            assert await peer.get("k0", agent=f"dead-{i}") is None
        assert sorted(m.agent_id for m in await peer.members()) == ["alive-1", "alive-2"]
        assert await a.get("mine") == b"1"
        assert (await peer.sweep()).reaped == []  # idempotent
        assert (await coord.sweep()).reaped == []
        del b


async def test_an_explicit_threshold_overrides_each_agents_ttl(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    await crashed(coord, "slow-ttl", ttl=60)
    await asyncio.sleep(0.3)
    assert (await peer.sweep()).reaped == []  # its own ttl has not passed
    assert (await peer.sweep(threshold=100)).reaped == []
    assert (await peer.sweep(threshold=0.2)).agents == ["slow-ttl"]


async def test_a_fresh_agent_is_never_reaped(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    async with coord.agent("fresh", ttl=0.8, interval=0.08) as me:
        for _ in range(25):  # 1.25 s of sweeps: past its ttl, so only its heartbeats keep it
            assert (await peer.sweep()).reaped == []
            await asyncio.sleep(0.05)
        assert not me.reaped.is_set()


async def test_two_reapers_at_once_reap_each_agent_exactly_once(
    url: str, namespace: str, coord: lockstep.Coordinator
) -> None:
    for i in range(12):
        await crashed(coord, f"dead-{i}")
    await asyncio.sleep(0.4)
    async with lockstep.connect(url, namespace=namespace) as a, lockstep.connect(url, namespace=namespace) as b:
        one, two = await asyncio.gather(a.sweep(), b.sweep())
    assert sorted(one.agents + two.agents) == sorted(f"dead-{i}" for i in range(12))
    assert not set(one.agents) & set(two.agents)
    assert one.keys_deleted + two.keys_deleted == 12
    assert await coord.members() == []
    log = [json.loads(e) for e in await coord._membership_manager().store.lifecycle(100, timeout=2)]
    assert sorted(e["agent"] for e in log) == sorted(f"dead-{i}" for i in range(12))
    assert {e["event"] for e in log} == {"reaped"}


async def test_sweep_frees_the_leases_a_dead_agent_owned(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    async with coord.agent("holder", ttl=0.3, interval=0.1) as me:
        lease = await coord.lock("shared-thing", ttl=30, wait=0)
        await ownership.lease_granted(coord, "lock", ["shared-thing"], lease.token)
        assert (await peer.members())[0].owned_leases == 1
        coord._membership_manager().heart.remove(me)  # stalled: no heartbeats, lease renewals go on
        await asyncio.sleep(0.45)
        report = await peer.sweep()
        assert report.agents == ["holder"]
        assert report.leases_freed == ["lock:shared-thing"] and report.leases_left == []
        async with peer.lock("shared-thing", ttl=5, wait=0) as taken:  # free at once, not at its TTL
            assert taken.fence > lease.fence
        # The reaped agent learns it at its next heartbeat, and its lease stops with it.
        me.next_beat = 0
        coord._membership_manager().heart.add(me)
        async with asyncio.timeout(2):
            await me.reaped
            await lease.lost
        with pytest.raises(Reaped):
            await ownership.lease_granted(coord, "lock", ["other"], "token-after-reap")
        with pytest.raises(Reaped):
            await me.leave()
        me.abandon()  # already left the registry; keep the block's exit quiet


async def test_released_leases_are_forgotten(coord: lockstep.Coordinator) -> None:
    async with coord.agent("holder", ttl=5, interval=1):
        async with coord.lock("thing", ttl=5, wait=0) as lease:
            await ownership.lease_granted(coord, "lock", ["thing"], lease.token)
            assert (await coord.members())[0].owned_leases == 1
        await ownership.lease_released(coord, lease.token)
        assert (await coord.members())[0].owned_leases == 0
        assert ownership.owner_of_current_task() is not None
    assert ownership.owner_of_current_task() is None


async def test_leaving_releases_leases_still_owned(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    async with coord.agent("holder", ttl=5, interval=1):
        lease = await coord.lock("kept", ttl=30, wait=0)
        await ownership.lease_granted(coord, "lock", ["kept"], lease.token)
    async with asyncio.timeout(3):
        async with peer.lock("kept", ttl=5, wait=2):
            pass
    assert lease.released


def spawn_sleeper() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(["sleep", "30"])
    start = procinfo.start_ticks(proc.pid)
    assert start is not None
    return proc, start


def registration(agent: str, pid: int, start: str) -> Registration:
    return Registration(agent, 60.0, 20.0, b"{}", procinfo.hostname(), procinfo.host_id(), pid, start, "test")


async def test_a_dead_local_process_is_reaped_at_once(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    store = coord._membership_manager().store
    killed, killed_start = spawn_sleeper()
    zombie, zombie_start = spawn_sleeper()
    alive, alive_start = spawn_sleeper()
    try:
        for agent, pid, start in (("killed", killed.pid, killed_start), ("zombie", zombie.pid, zombie_start),
                                  ("alive", alive.pid, alive_start)):  # fmt: skip
            assert isinstance(await store.register(registration(agent, pid, start), timeout=2), int)
        # The same pid with another start time is another process: the recorded one is dead.
        assert isinstance(await store.register(registration("reused", os.getpid(), "1"), timeout=2), int)
        killed.kill()
        killed.wait()
        zombie.kill()  # not waited for: a zombie, which is dead
        await asyncio.sleep(0.05)
        members = {m.agent_id: m for m in await peer.members()}
        assert members["killed"].process_alive is False and not members["killed"].alive
        assert members["alive"].process_alive is True and members["alive"].alive
        report = await peer.sweep()  # ttl is 60 s: only the process check can reap them
        assert sorted(report.agents) == ["killed", "reused", "zombie"]
        assert {r.reason for r in report.reaped} == {"process gone"}
        assert [m.agent_id for m in await peer.members()] == ["alive"]
    finally:
        for proc in (killed, zombie, alive):
            proc.kill()
            proc.wait()


async def test_memory_usage_returns_to_baseline_after_cleanup(coord: lockstep.Coordinator) -> None:
    before = await coord.memory_usage()
    for i in range(5):
        await crashed(coord, f"dead-{i}", keys=4)
    grown = await coord.memory_usage()
    assert grown.keys >= before.keys + 5 * 5  # a record and four owned keys each (+ indexes on Redis)
    assert grown.namespace_bytes > before.namespace_bytes + 5 * 4 * 100
    assert grown.backend_bytes >= before.backend_bytes
    await asyncio.sleep(0.4)
    assert len((await coord.sweep()).reaped) == 5
    after = await coord.memory_usage()
    assert after.keys <= before.keys + 2  # at most the counter and the lifecycle log
    log_bytes = sum(len(e) for e in await coord._membership_manager().store.lifecycle(100, timeout=2))
    assert after.namespace_bytes - before.namespace_bytes <= log_bytes + 512


async def test_reset_removes_every_agent_and_the_indexes(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    from lockstep.reaping import reset

    await crashed(coord, "dead")
    live = await coord.agent("live", ttl=5, interval=1)
    await live.put("k", b"v")
    await asyncio.sleep(0.4)
    await peer.sweep()
    report, dropped = await reset(peer, timeout=5)
    assert report.agents == ["live"] and report.keys_deleted == 1
    assert dropped >= 1  # at least the lifecycle log
    assert await peer.members() == []
    assert await peer._membership_manager().store.lifecycle(10, timeout=2) == []
    with pytest.raises(Reaped):
        await live.heartbeat()
    async with coord.agent("live", ttl=5, interval=1) as again:
        assert again.incarnation > live.incarnation  # incarnations are never reused
