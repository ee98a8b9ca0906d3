"""Rows for the seed's Assumption 3: orphans are caught, and memory stays flat.

Time-scaled: the seed's 120 s threshold and 60 s check interval become a 1 s ttl
(threshold) and a 0.5 s sweep interval (``--full``: 5 s and 2.5 s), so the promise
"cleaned no later than threshold + interval after the last heartbeat" is measured,
not waited out. A killed agent is simulated in-process by :meth:`Agent.abandon`:
its heartbeats stop and it never deregisters, as after ``kill -9`` (the chaos tests
kill real processes). Each row removes what it wrote (a reset of its private
namespace) before it returns.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..cfn.membership import MemoryTracker, OrphanDetector
from ..coordinator import Coordinator
from ..membership import Agent
from ..reaping import reset
from . import CheckContext, CheckResult, check

AGENTS = 20
KILLED_SHARE = 0.3
STATE_BYTES = 100 * 1024  # owned scratch state per agent in the memory row
EPICS, SPRINTS, AGENTS_PER_SPRINT = 10, 5, 10
MB = 2**20


def mb(n: float) -> str:
    return f"{n / MB:.2f} MB"


@dataclass(frozen=True)
class Scale:
    ttl: float  # the threshold, time-scaled
    sweep_every: float

    @property
    def interval(self) -> float:
        return self.ttl / 4


def scale(ctx: CheckContext) -> Scale:
    return Scale(5.0, 2.5) if ctx.full else Scale(1.0, 0.5)


async def start_agents(coord: Coordinator, prefix: str, count: int, s: Scale, state: bytes) -> list[Agent]:
    agents = await asyncio.gather(*(coord.agent(f"{prefix}-{i}", ttl=s.ttl, interval=s.interval) for i in range(count)))
    await asyncio.gather(*(a.put("state", state) for a in agents))
    return list(agents)


async def clean_up(coord: Coordinator) -> None:
    await reset(coord, timeout=coord.timeout, keep_counter=False)


@check(
    "orphans",
    title="orphaned agents cleaned up in time",
    source="Assumption 3: orphan detection catches all memory leaks",
    target=f"{KILLED_SHARE:.0%} of {AGENTS} agents killed; all cleaned within threshold + interval "
    "of their last heartbeat",
)
async def orphans_cleaned_in_time(ctx: CheckContext) -> CheckResult:
    s = scale(ctx)
    killed_count = round(AGENTS * KILLED_SHARE)
    async with ctx.connect() as coord, ctx.connect() as reaper:
        try:
            agents = await start_agents(coord, "agent", AGENTS, s, b"x" * 1024)
            detector = OrphanDetector(reaper, threshold=s.ttl, interval=s.sweep_every)
            detector.start()
            killed = agents[::3][:killed_count]
            for agent in killed:
                agent.abandon()
            last_beat = {a.id: a.confirmed_at for a in killed}
            cleaned_at: dict[str, float] = {}
            give_up = time.monotonic() + 3 * (s.ttl + s.sweep_every)
            while len(cleaned_at) < killed_count and time.monotonic() < give_up:
                present = {m.agent_id for m in await reaper.members()}
                now = time.monotonic()
                for agent_id in last_beat:
                    if agent_id not in present:
                        cleaned_at.setdefault(agent_id, now)
                await asyncio.sleep(0.02)
            await detector.stop()
            reaped = sorted(a for r in detector.history for a in r.agents)
            living_ok = all(not a.reaped.is_set() for a in agents if a not in killed)
        finally:
            await clean_up(reaper)
    delays = [cleaned_at[a] - last_beat[a] for a in cleaned_at]
    worst = max(delays, default=float("inf"))
    earliest = min(delays, default=0.0)
    bound = s.ttl + s.sweep_every
    passed = (len(cleaned_at) == killed_count and reaped == sorted(last_beat) and worst <= bound + 0.1
              and earliest >= s.ttl and living_ok)  # fmt: skip
    return CheckResult(
        passed=passed,
        measured=f"{len(cleaned_at)}/{killed_count} cleaned, {earliest:.2f}-{worst:.2f} s after the last heartbeat "
                 f"(bound {bound:g} s)",  # fmt: skip
        detail=f"threshold {s.ttl:g} s, sweep every {s.sweep_every:g} s; reaped exactly the killed: "
               f"{reaped == sorted(last_beat)}; no living agent reaped: {living_ok}",  # fmt: skip
        figures={"cleaned": len(cleaned_at), "killed": killed_count, "worst_s": worst, "earliest_s": earliest},
    )


@check(
    "orphan-memory",
    title="memory back to baseline after cleanup",
    source="Assumption 3: orphan detection catches all memory leaks",
    target="within 10 MB of the baseline",
)
async def memory_back_after_cleanup(ctx: CheckContext) -> CheckResult:
    s = scale(ctx)
    async with ctx.connect() as coord:
        try:
            tracker = MemoryTracker(coord)
            baseline = await tracker.record_baseline()
            agents = await start_agents(coord, "agent", AGENTS, s, b"m" * STATE_BYTES)
            for agent in agents[::2]:
                agent.abandon()
            peak = await tracker.get_total_memory_usage()
            await asyncio.sleep(s.ttl + 0.05)
            for agent in agents[1::2]:
                await agent.leave()
            result = await OrphanDetector(coord, threshold=s.ttl).detect_and_cleanup_orphans()
            leak = await tracker.check_for_memory_leak()
            left = await coord.members()
        finally:
            await clean_up(coord)
    passed = leak.growth < 10 * MB and result.orphans_cleaned == AGENTS // 2 and not left
    return CheckResult(
        passed=passed,
        measured=f"{mb(leak.growth)} growth after cleanup (peak {mb(peak - baseline)} above the baseline)",
        detail=f"{AGENTS} agents x {STATE_BYTES // 1024} KB owned state, half crashed; "
               f"{result.orphans_cleaned} orphans and {result.keys_deleted} keys cleaned",  # fmt: skip
        figures={"growth_bytes": leak.growth, "peak_growth_bytes": peak - baseline, "baseline_bytes": baseline},
    )


@check(
    "epic-memory",
    title="memory flat over 10 epics",
    source="Assumption 3: long-running epic test",
    target=f"growth under 5 MB per epic over {EPICS} epics of {SPRINTS} sprints x {AGENTS_PER_SPRINT} agents",
    deadline=30.0,
)
async def memory_flat_over_epics(ctx: CheckContext) -> CheckResult:
    s = scale(ctx)
    epic = Scale(s.ttl / 4, s.sweep_every)
    readings: list[int] = []
    cleaned = 0
    async with ctx.connect() as coord:
        try:
            tracker = MemoryTracker(coord)
            detector = OrphanDetector(coord, threshold=epic.ttl)
            for n in range(EPICS):
                agents = await start_agents(coord, f"e{n}", SPRINTS * AGENTS_PER_SPRINT, epic, b"s" * 2048)
                crashed = agents[::3]  # about 30% crash mid-epic
                for agent in crashed:
                    agent.abandon()
                await asyncio.sleep(epic.ttl + 0.05)  # the sprints work on
                for agent in agents:
                    if agent not in crashed:
                        await agent.leave()
                cleaned += (await detector.detect_and_cleanup_orphans()).orphans_cleaned
                readings.append(await tracker.get_total_memory_usage())
            left = await coord.members()
        finally:
            await clean_up(coord)
    per_epic = (readings[-1] - readings[0]) / (EPICS - 1)
    expected = EPICS * len(range(0, SPRINTS * AGENTS_PER_SPRINT, 3))
    passed = per_epic < 5 * MB and cleaned == expected and not left
    return CheckResult(
        passed=passed,
        measured=f"{mb(per_epic)} per epic (after epic 1: {mb(readings[0])}, after epic {EPICS}: {mb(readings[-1])})",
        detail=f"{cleaned}/{expected} crashed agents cleaned; readings after each epic's cleanup",
        figures={"growth_per_epic_bytes": per_epic, "first_bytes": readings[0], "last_bytes": readings[-1]},
    )
