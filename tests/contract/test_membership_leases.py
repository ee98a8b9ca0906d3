"""An agent owns the leases it takes: reaping the agent frees them at once, by token."""

from __future__ import annotations

import asyncio

import lockstep


async def test_sweep_frees_a_dead_agents_lock(coord: lockstep.Coordinator, url: str, namespace: str) -> None:
    async with coord.agent("holder", ttl=0.4, interval=0.1) as me:
        lease = await coord.lock("owned-lock", ttl=30, wait=0)
        members = {m.agent_id: m for m in await coord.members()}
        assert members["holder"].owned_leases == 1
        me.abandon()  # crash: heartbeats stop, nothing is cleaned up by the agent
        await asyncio.sleep(0.6)
        async with lockstep.connect(url, namespace=namespace) as reaper:
            report = await reaper.sweep()
            assert report.agents == ["holder"]
            assert report.leases_freed
            # the lock's TTL (30 s) is far away: only the sweep can have freed it
            other = await reaper.lock("owned-lock", ttl=5, wait=0)
            assert other.fence > lease.fence
            await other.release()


async def test_released_lease_leaves_the_owners_index(coord: lockstep.Coordinator) -> None:
    async with coord.agent("tidy", ttl=5, interval=1):
        lease = await coord.lock("tidy-lock", ttl=5, wait=0)
        assert {m.agent_id: m for m in await coord.members()}["tidy"].owned_leases == 1
        await lease.release()
        assert {m.agent_id: m for m in await coord.members()}["tidy"].owned_leases == 0
