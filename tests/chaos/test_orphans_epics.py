"""Ten epics of 5 sprints x 10 agents in a row: memory stays flat (seed Assumption 3).

Each epic, every sprint registers 10 agents that write owned state; 3 of each sprint's
agents crash (stop heartbeating, never deregister) and the rest leave; in epic 5 one
whole sprint process is killed with ``kill -9`` instead. The orphan detector then cleans
up, and memory is read. Cross-process on the file and Redis drivers (a sprint is a
worker process), in-process on the memory driver (a sprint is a coordinator).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

import pytest

import lockstep
from lockstep.cfn import OrphanDetector
from lockstep.membership import Agent
from tests.chaos.test_orphans_kill import comparable, settle
from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url

pytestmark = pytest.mark.slow

EPICS, SPRINTS, AGENTS, CRASHED = 10, 5, 10, 3
KILL_EPIC = 4
TTL, INTERVAL = 0.25, 0.06


class Sprint(Protocol):
    async def join(self, epic: str) -> list[str]: ...
    async def crash(self, count: int) -> list[str]: ...
    async def leave(self) -> None: ...
    async def kill(self) -> None: ...
    async def close(self) -> None: ...


class ProcessSprint:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @classmethod
    async def start(cls, url: str, namespace: str, prefix: str, log_dir: Path) -> ProcessSprint:
        worker = await Worker.start(
            "agent_worker", "sprint", "--url", url, "--namespace", namespace, "--prefix", prefix,
            "--agents", str(AGENTS), "--state-bytes", "2048", "--ttl", str(TTL), "--interval", str(INTERVAL),
            log_dir=log_dir,
        )  # fmt: skip
        return cls(worker)

    async def join(self, epic: str) -> list[str]:
        self.worker.send(f"join {epic}")
        return list((await self.worker.expect("ready", timeout=30))["agents"])

    async def crash(self, count: int) -> list[str]:
        self.worker.send(f"crash {count}")
        return list((await self.worker.expect("crashed"))["agents"])

    async def leave(self) -> None:
        self.worker.send("leave")
        await self.worker.expect("left")

    async def kill(self) -> None:
        await self.worker.kill()

    async def close(self) -> None:
        await stop_all([self.worker])


class InProcessSprint:
    def __init__(self, coord: lockstep.Coordinator, prefix: str) -> None:
        self.coord, self.prefix = coord, prefix
        self.agents: list[Agent] = []

    @classmethod
    async def start(cls, url: str, namespace: str, prefix: str, log_dir: Path) -> InProcessSprint:
        return cls(await lockstep.connect(url, namespace=namespace), prefix)

    async def join(self, epic: str) -> list[str]:
        self.agents = list(await asyncio.gather(*(
            self.coord.agent(f"{epic}-{self.prefix}-{i}", ttl=TTL, interval=INTERVAL) for i in range(AGENTS)
        )))  # fmt: skip
        for agent in self.agents:
            await agent.put("state-0", b"s" * 2048)
        return [a.id for a in self.agents]

    async def crash(self, count: int) -> list[str]:
        crashed, self.agents = self.agents[:count], self.agents[count:]
        for agent in crashed:
            agent.abandon()
        return [a.id for a in crashed]

    async def leave(self) -> None:
        for agent in self.agents:
            await agent.leave()
        self.agents = []

    async def kill(self) -> None:  # a process cannot die in-process: every agent stops at once
        await self.crash(len(self.agents))

    async def close(self) -> None:
        await self.coord.close()


@pytest.fixture(params=["file", "redis", "memory"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_ten_epics_in_a_row_keep_memory_flat(
    driver: str, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = driver_url(driver, request, tmp_path)
    kind = InProcessSprint if driver == "memory" else ProcessSprint
    async with lockstep.connect(url, namespace=namespace, timeout=10) as coord:
        await settle(coord)
        detector = OrphanDetector(coord, threshold=TTL)
        baseline = await coord.memory_usage()
        sprints: list[Sprint] = list(await asyncio.gather(
            *(kind.start(url, namespace, f"s{k}", tmp_path) for k in range(SPRINTS))
        ))  # fmt: skip
        readings: list[int] = []
        try:
            for epic in range(EPICS):
                joined = await asyncio.gather(*(s.join(f"e{epic}") for s in sprints))
                if epic == KILL_EPIC:
                    await sprints[0].kill()
                    orphans = list(joined[0])
                    rest = sprints[1:]
                else:
                    orphans, rest = [], sprints
                for crashed in await asyncio.gather(*(s.crash(CRASHED) for s in rest)):
                    orphans += crashed
                await asyncio.sleep(TTL + 0.05)  # the sprints work on; the crashed stay silent
                await asyncio.gather(*(s.leave() for s in rest))
                result = await detector.detect_and_cleanup_orphans()
                assert sorted(result.agents) == sorted(orphans), f"epic {epic}"
                assert await coord.members() == []
                usage = await coord.memory_usage()
                log = await coord._membership_manager().store.lifecycle(1000, timeout=5)
                log_bytes = sum(len(entry) + 16 for entry in log)  # entries and their bookkeeping
                assert usage.namespace_bytes <= baseline.namespace_bytes + log_bytes + 1024, f"epic {epic}"
                readings.append(comparable(usage))
                if epic == KILL_EPIC:
                    sprints[0] = await kind.start(url, namespace, "s0-again", tmp_path)
        finally:
            for sprint in sprints:
                await sprint.close()
    per_epic = (readings[-1] - readings[0]) / (EPICS - 1)
    print(f"{driver}: backend after each epic (bytes): {readings}; {per_epic:+.0f} B per epic")
    assert per_epic < 5 * 2**20  # the seed's bound
    # Flat: what remains is the bounded history of reapings (the lifecycle log and, on durable
    # drivers, the agent:lifecycle channel's log, 1000 entries each, about 0.5 KB per reaped
    # agent until full) and allocator noise; nothing of the agents themselves.
    assert per_epic < 16 * 1024
