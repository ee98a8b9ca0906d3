"""Agents that are noticed when they die: registration, heartbeats, scratch state.

    async with coord.agent("agent-7", ttl=120, interval=30, meta={"sprint": 3}) as me:
        await me.put("progress", b"42%")        # owned: deleted when the agent is reaped
        me.reaped                                # awaitable; set if a sweep declared it dead
    await coord.members(); await coord.sweep()

``coord.agent()`` returns an :class:`AgentRequest`: ``async with`` it (registered on
enter, deregistered on exit, deleting what it owns), or ``await`` it for an
:class:`Agent` you ``leave()`` yourself. Each registration gets a new **incarnation**
(it strictly increases each time the same agent id registers). One heartbeat task per
coordinator (:mod:`lockstep.heart`) refreshes all its agents, batched in one round
trip. Guarantees (RELIABILITY.md promise 2): an agent is declared dead no earlier than
``ttl`` after its last heartbeat, judged on the backend's clock (Redis ``TIME``), and
no later than ``ttl`` + the sweep interval; a reaped agent's next heartbeat, ``put`` or
``leave`` raises :class:`~lockstep.errors.Reaped`, its writes are refused by the backend
(checked against its incarnation), and its leases are marked lost. An agent on this
host also records its pid and process start time, so a sweep reaps it at once when
its process is gone (:mod:`lockstep.procinfo`). The agent object is in
:mod:`lockstep.agent`, the heartbeat task in :mod:`lockstep.heart`, sweeping in
:mod:`lockstep.reaping`, ownership hooks in :mod:`lockstep.ownership`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import ownership, procinfo
from .agent import Agent, AgentRequest, ReapedSignal, check_seconds
from .drivers.member_store import MemberRecord, MemberStore, Reason, Registration
from .errors import ClaimConflict, InvalidInputError, LockstepError, Reaped
from .heart import Heart
from .names import validate_name

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ["Agent", "AgentRequest", "MemberInfo", "Membership", "ReapedSignal", "check_meta"]

log = logging.getLogger("lockstep.membership")

MAX_META_BYTES = 8192


@dataclass(frozen=True)
class MemberInfo:
    """One registered agent, as ``coord.members()`` lists it."""

    agent_id: str
    incarnation: int
    alive: bool  #: heard from within its ttl (and, on this host, its process runs)
    last_heartbeat: float  #: Unix seconds, on the backend's clock
    age: float  #: seconds since the last heartbeat, on the backend's clock
    ttl: float
    interval: float
    meta: dict[str, Any]
    host: str
    pid: int
    local: bool  #: registered from this host (same kernel and pid namespace)
    process_alive: bool | None  #: local agents: does its process run? (None: not local or unknowable)
    registered_at: float
    owned_keys: int
    owned_leases: int
    session: str


class Membership:
    """The membership machinery of one coordinator: its store, its agents, its heart."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.agents: dict[str, Agent] = {}
        self.heart = Heart(self)
        self._store: MemberStore | None = None
        self.closed = False

    @property
    def store(self) -> MemberStore:
        if self._store is None:
            self._store = self.coord.driver.member_store(self.coord.keys)
        return self._store

    def owner_of_lease(self, token: str) -> Agent | None:
        return next((a for a in self.agents.values() if token in a.lease_tokens), None)

    # -- joining and leaving ---------------------------------------------------------
    def request(self, agent_id: str, *, ttl: float, interval: float, meta: Mapping[str, Any] | None) -> AgentRequest:
        validate_name(agent_id, what="agent")
        ttl = check_seconds(ttl, "ttl")
        interval = check_seconds(interval, "interval")
        if interval >= ttl:
            raise InvalidInputError(
                f"interval ({interval:g} s) must be shorter than ttl ({ttl:g} s), or the agent would be "
                "declared dead between two heartbeats; a third of the ttl is a good choice"
            )
        return AgentRequest(self, agent_id, ttl=ttl, interval=interval, meta=check_meta(meta))

    async def join(self, agent_id: str, *, ttl: float, interval: float, meta: dict[str, Any], timeout: float) -> Agent:
        if self.closed:
            raise InvalidInputError("the coordinator is closed")
        if agent_id in self.agents:
            raise ClaimConflict({f"agent:{agent_id}": f"this coordinator ({self.coord.member})"})
        me = procinfo.current()
        reg = Registration(agent_id, ttl, interval, json.dumps(meta, separators=(",", ":")).encode(),
                           procinfo.hostname(), procinfo.host_id(), me.pid, me.start, self.coord.member)  # fmt: skip
        for _ in range(3):
            sent = time.monotonic()
            got = await self.store.register(reg, timeout=timeout)
            if isinstance(got, int):
                agent = Agent(self, agent_id, got, ttl, interval, meta)
                agent.confirmed(sent)
                self.agents[agent_id] = agent
                self.heart.add(agent)
                return agent
            reason = self._provably_dead(got)
            if reason is None:
                raise ClaimConflict({f"agent:{agent_id}": describe(got)})
            from .reaping import settle  # the predecessor is dead: reap it, then register

            claimed = await self.store.reap_agent(
                got.agent, got.incarnation, reason, self.coord.member, timeout=timeout
            )
            if claimed is not None:
                await settle(self.coord, [claimed], timeout=timeout)
        raise ClaimConflict({f"agent:{agent_id}": "registered again by another process while we cleaned up"})

    def _provably_dead(self, rec: MemberRecord) -> Reason | None:
        if rec.age > rec.ttl:
            return "stale"
        if rec.hostid and rec.hostid == procinfo.host_id() and procinfo.is_alive(rec.pid, rec.start) is False:
            return "process gone"
        return None

    async def leave(self, agent: Agent, *, timeout: float) -> None:
        if agent.left:
            return
        agent.check()
        self.forget(agent)
        agent.left = True
        claimed = await self.store.deregister(agent.id, agent.incarnation, timeout=timeout)
        if claimed is None:
            self.on_reaped(agent, "it was no longer registered when it left")
            raise Reaped(f"agent {agent.id!r} (incarnation {agent.incarnation}) was reaped before it left")
        manager = self.coord._leases
        leftover = []
        for lease in claimed.leases:
            held = None if manager is None else manager.leases.get(lease.token)
            if held is not None and manager is not None:
                manager.begin_release(held)  # our own lease object releases itself and stops renewing
            else:
                leftover.append(lease)
        if leftover:
            await ownership.free_leases(self.coord, leftover, timeout=timeout)

    def forget(self, agent: Agent) -> None:
        if self.agents.get(agent.id) is agent:
            del self.agents[agent.id]
        self.heart.remove(agent)

    def on_reaped(self, agent: Agent, reason: str) -> None:
        """The backend says this agent is reaped: signal it, stop beating it, stop its leases."""
        agent.reaped.fire(reason)
        self.forget(agent)
        stopped = ownership.stop_local_leases(self.coord, agent.lease_tokens, f"agent {agent.id!r} was reaped")
        log.warning("agent %r (incarnation %d) was reaped: %s; %d lease(s) stopped",
                    agent.id, agent.incarnation, reason, stopped)  # fmt: skip

    # -- views -------------------------------------------------------------------------
    async def members(self, *, timeout: float) -> list[MemberInfo]:
        here = procinfo.host_id()
        out = []
        for r in await self.store.members(timeout=timeout):
            local = bool(here) and r.hostid == here
            process_alive = procinfo.is_alive(r.pid, r.start) if local else None
            out.append(MemberInfo(
                agent_id=r.agent, incarnation=r.incarnation, alive=r.age <= r.ttl and process_alive is not False,
                last_heartbeat=r.last_beat, age=r.age, ttl=r.ttl, interval=r.interval, meta=_meta(r.meta),
                host=r.host, pid=r.pid, local=local, process_alive=process_alive, registered_at=r.registered_at,
                owned_keys=r.owned_keys, owned_leases=r.owned_leases, session=r.session,
            ))  # fmt: skip
        return out

    async def close(self) -> None:
        """Leave every agent still registered (bounded by the coordinator's timeout)."""
        if self.closed:
            return
        self.closed = True
        for agent in list(self.agents.values()):
            try:
                await agent.leave()
            except LockstepError as exc:
                log.warning("agent %r could not leave on close: %s", agent.id, exc)
        await self.heart.stop()
        if self._store is not None:
            await self._store.close()


def describe(rec: MemberRecord) -> str:
    return (f"{rec.host} pid {rec.pid} (incarnation {rec.incarnation}, last heartbeat {rec.age:.1f} s ago, "
            f"ttl {rec.ttl:g} s)")  # fmt: skip


def _meta(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"_raw": raw.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"_value": value}


def check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"meta must be a mapping (a dict of JSON values), got {type(meta).__name__}")
    try:
        raw = json.dumps(dict(meta), separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"meta must hold JSON values only: {exc}") from None
    if len(raw) > MAX_META_BYTES:
        raise InvalidInputError(f"meta is {len(raw)} bytes as JSON; the limit is {MAX_META_BYTES}")
    return dict(meta)
