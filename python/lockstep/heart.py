"""The heartbeat pump: ONE task per coordinator, whatever the number of its agents.

It sleeps until the earliest agent is due, then heartbeats every agent due within a
quarter of the shortest interval in one round trip (so agents with similar
intervals share it), and goes back to sleep. As in tooz's ``Heart``, the time a
heartbeat took is taken off the wait, a heartbeat slower than an interval is logged,
and stopping does not wait for a sleep to end. Unlike it, a failure is retried
sooner rather than later (a quarter interval, at most 1 s): the agent's ttl is
running. An agent the backend no longer knows is reported reaped to the
:class:`~lockstep.membership.Membership` and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agent import Agent
    from .membership import Membership

__all__ = ["Heart"]

log = logging.getLogger("lockstep.membership")

MIN_CALL = 0.05  # s: the shortest deadline a heartbeat is given
RETRY_MAX = 1.0  # s: the longest wait before retrying a failed heartbeat


class Heart:
    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.agents: dict[int, Agent] = {}
        self.beats = 0  #: round trips sent
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, agent: Agent) -> None:
        self.agents[id(agent)] = agent
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lockstep-heart")

    def remove(self, agent: Agent) -> None:
        if self.agents.pop(id(agent), None) is not None:
            self._wake.set()

    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.agents.clear()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while self.agents:
            agents = list(self.agents.values())
            now = time.monotonic()
            first = min(a.next_beat for a in agents)
            if first > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(first - now):
                        await self._wake.wait()
                continue
            shortest = min(a.interval for a in agents)
            due = [a for a in agents if a.next_beat <= now + shortest / 4]
            await self._beat(due, shortest)

    async def _beat(self, due: list[Agent], shortest: float) -> None:
        coord = self.membership.coord
        sent = time.monotonic()
        try:
            oks = await self.membership.store.heartbeat(
                [(a.id, a.incarnation) for a in due], timeout=max(MIN_CALL, min(coord.timeout, shortest))
            )
        except Exception as exc:  # the pump must outlive any failure: the agents' ttls are running
            log.warning("heartbeat of %d agent(s) failed, retrying soon: %s", len(due), exc)
            retry = time.monotonic() + min(shortest / 4, RETRY_MAX)
            for agent in due:
                agent.next_beat = retry
            return
        self.beats += 1
        took = time.monotonic() - sent
        if took > shortest:
            log.warning("a heartbeat took %.2f s, longer than the shortest interval (%.2f s); agents risk being "
                        "declared dead", took, shortest)  # fmt: skip
        for agent, ok in zip(due, oks, strict=True):
            if id(agent) not in self.agents:
                continue  # left or abandoned while the heartbeat was in flight
            if ok:
                agent.confirmed(sent)
            else:
                self.membership.on_reaped(agent, "its heartbeat was refused: this incarnation is no longer registered")
