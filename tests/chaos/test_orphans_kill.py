"""The seed's orphan test with real processes, and RELIABILITY.md scenario 2 for membership.

20 agent processes each write owned state; 10 are killed with ``kill -9``;
``detect_and_cleanup_orphans()`` (the seed's 120 s threshold) reports exactly those 10,
found dead by their pid and start time rather than by waiting; every key they owned is
gone; once the survivors leave, memory is back within 64 KB of the baseline. On the file
and Redis drivers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import lockstep
from lockstep.cfn import OrphanDetector
from lockstep.drivers.member_store import MemoryUsage
from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

PROCESSES, KILLED, KEYS, STATE_BYTES = 20, 10, 4, 1024


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(str(request.param), request, tmp_path)


def sprint_args(url: str, namespace: str, prefix: str) -> list[str]:
    return ["sprint", "--url", url, "--namespace", namespace, "--prefix", prefix, "--join", "seed",
            "--keys", str(KEYS), "--state-bytes", str(STATE_BYTES), "--ttl", "60", "--interval", "20"]  # fmt: skip


async def settle(coord: lockstep.Coordinator) -> None:
    """Run every membership operation once before the baseline: the first run of each Lua
    script costs Redis about 100 KB, once per server lifetime (not per agent); on SQLite
    the first use creates the tables."""
    warm = await coord.agent("warm-up", ttl=0.05, interval=0.01)
    await warm.put("k", b"v")
    await warm.heartbeat()
    warm.abandon()
    await asyncio.sleep(0.1)
    assert (await coord.sweep()).agents == ["warm-up"]
    async with coord.agent("warm-up", ttl=5, interval=1):
        await coord.members()
    await coord.memory_usage()


def comparable(usage: MemoryUsage) -> int:
    """Backend bytes without the client output and AOF buffers, which come and go with traffic."""
    buffers = int(usage.detail.get("mem_clients_normal", 0)) + int(usage.detail.get("mem_aof_buffer", 0))
    return usage.backend_bytes - buffers


async def test_kill_9_half_of_20_agent_processes(
    shared_url: str, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with lockstep.connect(shared_url, namespace=namespace, timeout=10) as coord:
        await settle(coord)
        baseline = await coord.memory_usage()
        log_before = await coord._membership_manager().store.lifecycle(100, timeout=5)
        workers = list(await asyncio.gather(*(
            Worker.start("agent_worker", *sprint_args(shared_url, namespace, f"w{i}"), log_dir=tmp_path)
            for i in range(PROCESSES)
        )))  # fmt: skip
        try:
            owned = {w.pid: list((await w.expect("ready", timeout=60))["agents"]) for w in workers}
            assert len(await coord.members()) == PROCESSES
            grown = await coord.memory_usage()
            assert grown.namespace_bytes - baseline.namespace_bytes >= PROCESSES * KEYS * STATE_BYTES

            killed, survivors = workers[::2], workers[1::2]
            for w in killed:
                await w.kill()
            expected = sorted(a for w in killed for a in owned[w.pid])

            result = await OrphanDetector(coord).detect_and_cleanup_orphans()
            assert result.orphans_cleaned == KILLED
            assert sorted(result.agents) == expected
            assert result.keys_deleted == KILLED * KEYS
            assert {r.reason for r in result.report.reaped} == {"process gone"}
            for agent in expected:  # scenario 2: the killed agents' keys are all gone
                for k in range(KEYS):
                    assert await coord.get(f"state-{k}", agent=agent) is None
            assert (await OrphanDetector(coord).detect_and_cleanup_orphans()).orphans_cleaned == 0

            for w in survivors:
                w.send("leave")
                await w.expect("left")
                w.send("exit")
            for w in survivors:
                assert await asyncio.wait_for(w.proc.wait(), 20) == 0, w.stderr()
        finally:
            await stop_all(workers)

        assert await coord.members() == []
        after = await coord.memory_usage()
        log = await coord._membership_manager().store.lifecycle(100, timeout=5)
        assert len(log) == len(log_before) + KILLED
        log_bytes = sum(len(entry) for entry in log[:KILLED])
        # The namespace holds nothing but its lifecycle log (and, on Redis, the incarnation counter).
        assert after.namespace_bytes - baseline.namespace_bytes <= log_bytes + 256
        print(f"{coord.driver.name}: namespace {baseline.namespace_bytes} -> peak {grown.namespace_bytes} -> "
              f"{after.namespace_bytes} B; backend {comparable(baseline)} -> {comparable(after)} B")
        assert comparable(after) - comparable(baseline) < 64 * 1024, (baseline, after)
        if coord.driver.name.startswith("redis"):
            server: RedisServer = request.getfixturevalue("redis_server")
            left = sorted(k.decode() for k in server.client().scan_iter(match=f"ls:{namespace}:*"))
            assert left == [f"ls:{namespace}:{{meta}}:agents:seq", f"ls:{namespace}:{{meta}}:lifecycle"]
