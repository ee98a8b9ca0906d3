"""Agents: registration, incarnations, heartbeats, owned scratch state; on every driver."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

import lockstep
from lockstep.errors import ClaimConflict, InvalidInputError, InvalidNameError, Reaped


@pytest.fixture
async def peer(url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    """A second coordinator on the same backend and namespace (another process, in effect)."""
    async with lockstep.connect(url, namespace=namespace, timeout=5.0) as c:
        yield c


async def test_members_lists_a_registered_agent(coord: lockstep.Coordinator) -> None:
    async with coord.agent("agent-1", ttl=5, interval=1, meta={"sprint": 3}) as me:
        await me.put("progress", b"42%")
        (info,) = await coord.members()
    assert info.agent_id == "agent-1"
    assert info.incarnation == me.incarnation >= 1
    assert info.meta == {"sprint": 3}
    assert info.pid == os.getpid() and info.local and info.process_alive is True
    assert info.alive and 0 <= info.age < 1.0 and info.ttl == 5 and info.interval == 1
    assert info.owned_keys == 1 and info.owned_leases == 0
    assert abs(info.last_heartbeat - await coord.time()) < 2.0
    assert await coord.members() == []


async def test_incarnation_increases_each_time_the_same_id_registers(coord: lockstep.Coordinator) -> None:
    seen = []
    for _ in range(3):
        async with coord.agent("agent-1", ttl=5, interval=1) as me:
            seen.append(me.incarnation)
    assert seen == sorted(seen) and len(set(seen)) == 3


async def test_leaving_deletes_exactly_what_the_agent_owned(coord: lockstep.Coordinator) -> None:
    other_key = coord.keys.key("test", "not-owned")
    await coord.driver.set(other_key, b"keep", timeout=2)
    async with coord.agent("agent-1", ttl=5, interval=1) as me:
        await me.put("a", b"1")
        await me.put("b", "text")
        keys = [me.key("a"), me.key("b")]
        assert await coord.driver.mget(keys, timeout=2) == [b"1", b"text"]
    assert await coord.driver.mget(keys, timeout=2) == [None, None]
    assert await coord.driver.get(other_key, timeout=2) == b"keep"
    assert await coord.members() == []


async def test_put_get_delete_and_ttl(coord: lockstep.Coordinator) -> None:
    async with coord.agent("agent-1", ttl=5, interval=1) as me:
        await me.put("short", b"x", ttl=0.2)
        await me.put("long", b"y")
        assert await me.get("short") == b"x"
        assert await coord.get("long") == b"y"  # the current task's agent
        assert (await coord.members())[0].owned_keys == 2
        await asyncio.sleep(0.35)
        assert await me.get("short") is None
        await me.put("other", b"z")  # prunes the expired entry from the ownership index
        assert (await coord.members())[0].owned_keys == 2
        assert await me.delete("long") is True
        assert await me.delete("long") is False
        assert await me.get("long") is None


async def test_another_coordinator_reads_an_agents_scratch_state(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    async with coord.agent("agent-1", ttl=5, interval=1) as me:
        await me.put("result", b"done")
        assert await peer.get("result", agent="agent-1") == b"done"
        assert await peer.get("missing", agent="agent-1") is None


async def test_a_live_agent_id_cannot_be_registered_twice(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    async with coord.agent("agent-1", ttl=5, interval=1):
        with pytest.raises(ClaimConflict) as info:
            async with peer.agent("agent-1", ttl=5, interval=1):
                pass
        assert "agent:agent-1" in info.value.conflicts
        assert f"pid {os.getpid()}" in str(info.value)
        with pytest.raises(ClaimConflict):
            await coord.agent("agent-1", ttl=5, interval=1)


async def test_heartbeats_keep_an_agent_alive_past_its_ttl(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    async with coord.agent("agent-1", ttl=0.6, interval=0.1) as me:
        await me.put("k", b"v")
        for _ in range(5):
            await asyncio.sleep(0.2)
            assert (await peer.sweep()).reaped == []
        (info,) = await peer.members()
        assert info.alive and info.age < 0.6
        assert await me.get("k") == b"v"


async def test_one_heartbeat_round_trip_per_interval_for_all_agents(coord: lockstep.Coordinator) -> None:
    agents = [await coord.agent(f"agent-{i}", ttl=2, interval=0.15) for i in range(20)]
    heart = coord._membership_manager().heart
    before = heart.beats
    await asyncio.sleep(0.6)
    sent = heart.beats - before
    assert 2 <= sent <= 6, sent  # ~4 intervals, one batch each (not 20 per interval)
    members = await coord.members()
    assert len(members) == 20 and all(m.alive for m in members)
    for agent in agents:
        await agent.leave()
    assert not heart.is_alive() or not heart.agents


async def test_bad_input_is_refused_with_a_typed_error(coord: lockstep.Coordinator) -> None:
    with pytest.raises(InvalidNameError):
        coord.agent("bad name with spaces")
    with pytest.raises(InvalidInputError, match="interval"):
        coord.agent("a", ttl=1, interval=1)
    with pytest.raises(InvalidInputError, match="ttl"):
        coord.agent("a", ttl=-1, interval=0.1)
    with pytest.raises(InvalidInputError, match="meta"):
        coord.agent("a", meta={"x": object()})
    with pytest.raises(InvalidInputError, match="threshold"):
        await coord.sweep(threshold=0)
    with pytest.raises(InvalidInputError, match="needs an agent"):
        await coord.put("k", b"v")
    async with coord.agent("a", ttl=5, interval=1) as me:
        with pytest.raises(InvalidInputError, match="bytes or str"):
            await me.put("k", 12)  # type: ignore[arg-type]
        with pytest.raises(InvalidNameError):
            await me.put("bad key{", b"v")
        with pytest.raises(InvalidInputError, match="ttl"):
            await me.put("k", b"v", ttl=0)


async def test_a_reaped_agent_gets_reaped_and_writes_nothing(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    with pytest.raises(Reaped):
        async with coord.agent("agent-1", ttl=0.3, interval=0.25) as me:
            await me.put("before", b"1")
            coord._membership_manager().heart.remove(me)  # a stalled heart: no more heartbeats
            await asyncio.sleep(0.5)
            report = await peer.sweep()
            assert report.agents == ["agent-1"] and report.keys_deleted == 1
            with pytest.raises(Reaped):
                await me.heartbeat()
            assert me.reaped.is_set()
            with pytest.raises(Reaped):
                await me.put("after", b"2")
    assert await peer.get("after", agent="agent-1") is None
    assert await peer.get("before", agent="agent-1") is None


async def test_a_reaped_agent_learns_it_at_its_next_heartbeat(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    me = await coord.agent("agent-1", ttl=0.3, interval=0.25)
    heart = coord._membership_manager().heart
    heart.remove(me)
    await asyncio.sleep(0.45)
    assert (await peer.sweep()).agents == ["agent-1"]
    me.next_beat = 0  # due now
    heart.add(me)
    async with asyncio.timeout(2):
        await me.reaped
    assert "refused" in (me.reaped.reason or "")
    with pytest.raises(Reaped):
        await me.leave()


async def test_registering_over_a_stale_record_reaps_it_first(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    old = await coord.agent("agent-1", ttl=0.3, interval=0.1)
    await old.put("k", b"old")
    old.abandon()
    await asyncio.sleep(0.45)
    async with peer.agent("agent-1", ttl=5, interval=1) as new:
        assert new.incarnation > old.incarnation
        assert await new.get("k") is None  # the predecessor's state went with it
    lifecycle = await peer._membership_manager().store.lifecycle(5, timeout=2)
    assert any(b'"agent-1"' in entry and b'"stale"' in entry for entry in lifecycle)
