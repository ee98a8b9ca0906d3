"""An agent and the request that registers it: ``coord.agent(...)`` (see :mod:`lockstep.membership`).

An :class:`Agent` owns scratch values (:meth:`Agent.put`) and leases
(:meth:`Agent.own_lease`); every write it makes is checked on the backend against its
incarnation, so once reaped it raises :class:`~lockstep.errors.Reaped` and writes
nothing. ``agent.reaped`` is set (awaitable, like ``lease.lost``) as soon as this
process learns it was reaped: at its next heartbeat, write or leave.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import ownership
from .drivers.member_store import MemberStore, OwnedLease
from .errors import InvalidInputError, LockstepError, Reaped
from .names import validate_name
from .tripwire import Tripwire

if TYPE_CHECKING:
    from contextvars import Token

    from .coordinator import Coordinator
    from .membership import Membership

__all__ = ["Agent", "AgentRequest", "ReapedSignal", "check_seconds"]

log = logging.getLogger("lockstep.membership")


class ReapedSignal(Tripwire):
    """``agent.reaped``: awaitable (returns once the agent is known reaped), ``is_set()``, ``reason``."""

    __slots__ = ()
    tripped_word = "reaped"
    armed_word = "not reaped"


class Agent:
    """A registered agent; see the module docstring."""

    def __init__(self, membership: Membership, agent_id: str, incarnation: int, ttl: float, interval: float,
                 meta: dict[str, Any]) -> None:  # fmt: skip
        self._membership = membership
        self.id = agent_id
        self.incarnation = incarnation
        self.ttl = ttl
        self.interval = interval
        self.meta = meta
        self.reaped = ReapedSignal()
        self.left = False
        self.abandoned = False
        self.lease_tokens: set[str] = set()
        now = time.monotonic()
        self.next_beat = now + interval  #: monotonic time of the next heartbeat
        self.confirmed_at = now  #: monotonic send time of the last heartbeat the backend accepted

    @property
    def coord(self) -> Coordinator:
        return self._membership.coord

    @property
    def store(self) -> MemberStore:
        return self._membership.store

    def __repr__(self) -> str:
        state = "reaped" if self.reaped.is_set() else ("left" if self.left else "registered")
        return f"<Agent {self.id!r} incarnation={self.incarnation} {state}>"

    def check(self) -> None:
        """Raise Reaped if this agent is known to have been reaped."""
        if self.reaped.is_set():
            raise Reaped(f"agent {self.id!r} (incarnation {self.incarnation}) was reaped: {self.reaped.reason}")
        if self.left or self.abandoned:
            raise InvalidInputError(f"agent {self.id!r} has {'left' if self.left else 'been abandoned'}")

    def key(self, name: str) -> str:
        """The backend key of scratch entry ``name`` (``ls:NS:{agent:ID}:kv:NAME``)."""
        return self.coord.keys.key("agent", self.id, "kv", validate_name(name, what="key"))

    def _deadline(self, timeout: float | None) -> float:
        return self.coord._deadline(timeout)

    def _gone(self, what: str) -> Reaped:
        self._membership.on_reaped(self, f"the backend refused {what}: this incarnation is no longer registered")
        return Reaped(f"agent {self.id!r} (incarnation {self.incarnation}) was reaped: {self.reaped.reason}")

    # -- scratch state ---------------------------------------------------------------
    async def put(
        self, key: str, value: bytes | str, *, ttl: float | None = None, timeout: float | None = None
    ) -> None:
        """Store an owned scratch value (deleted when this agent leaves or is reaped).

        Checked on the backend against this incarnation: once reaped, it raises Reaped
        and writes nothing. ``ttl`` (seconds) makes the value expire earlier.
        """
        self.check()
        full = self.key(key)
        data = value.encode() if isinstance(value, str) else value
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInputError(f"a scratch value must be bytes or str, got {type(value).__name__}")
        seconds = None if ttl is None else check_seconds(ttl, "ttl")
        written = await self.store.put(
            self.id, self.incarnation, full, bytes(data), seconds, timeout=self._deadline(timeout)
        )
        if not written:
            raise self._gone(f"a write to {key!r}")

    async def get(self, key: str, *, timeout: float | None = None) -> bytes | None:
        """Read one of this agent's scratch values (None if absent or expired)."""
        self.check()
        return await self.coord.driver.get(self.key(key), timeout=self._deadline(timeout))

    async def delete(self, key: str, *, timeout: float | None = None) -> bool:
        """Delete one of this agent's scratch values; whether it existed."""
        self.check()
        existed = await self.store.delete_owned(
            self.id, self.incarnation, self.key(key), timeout=self._deadline(timeout)
        )
        if existed is None:
            raise self._gone(f"deleting {key!r}")
        return existed

    # -- liveness ------------------------------------------------------------------------
    async def heartbeat(self, *, timeout: float | None = None) -> None:
        """Heartbeat now (the background task does it every ``interval``); Reaped if reaped."""
        self.check()
        sent = time.monotonic()
        (ok,) = await self.store.heartbeat([(self.id, self.incarnation)], timeout=self._deadline(timeout))
        if not ok:
            raise self._gone("a heartbeat")
        self.confirmed(sent)

    def confirmed(self, sent_at: float) -> None:
        self.confirmed_at = max(self.confirmed_at, sent_at)
        self.next_beat = sent_at + self.interval

    def abandon(self) -> None:
        """Stop heartbeating and forget this agent locally, WITHOUT deregistering: what a
        crash does. For drills and tests; a sweep will reap it after its ttl."""
        if not (self.left or self.abandoned):
            self.abandoned = True
            self._membership.forget(self)

    async def leave(self, *, timeout: float | None = None) -> None:
        """Deregister: delete what it owns, free its leases. Reaped if it was reaped first."""
        await self._membership.leave(self, timeout=self._deadline(timeout))

    # -- leases (see lockstep.ownership) -------------------------------------------------
    async def own_lease(self, kind: str, names: Sequence[str], token: str, *, timeout: float | None = None) -> None:
        """Record a lease as this agent's: a sweep that reaps the agent frees it. Reaped if reaped."""
        self.check()
        lease = OwnedLease(token, kind, tuple(names))
        self.lease_tokens.add(token)
        if not await self.store.own_lease(self.id, self.incarnation, lease, timeout=self._deadline(timeout)):
            raise self._gone(f"recording lease {lease.describe()}")

    async def disown_lease(self, token: str, *, timeout: float | None = None) -> None:
        """Forget a lease that was released (idempotent)."""
        self.lease_tokens.discard(token)
        if not self.reaped.is_set():
            await self.store.disown_lease(self.id, token, timeout=self._deadline(timeout))


class AgentRequest:
    """``coord.agent(...)``: ``async with`` it (registered, owner of the current task, left on
    exit) or ``await`` it for an Agent to ``leave()`` yourself.

    Leaving ``async with`` after the agent was reaped raises Reaped (unless the body
    already raised), so the block can tell its work was not covered to the end.
    """

    def __init__(self, membership: Membership, agent_id: str, *, ttl: float, interval: float,
                 meta: dict[str, Any]) -> None:  # fmt: skip
        self._membership = membership
        self.agent_id, self.ttl, self.interval, self.meta = agent_id, ttl, interval, meta
        self._agent: Agent | None = None
        self._token: Token[Agent | None] | None = None

    def __repr__(self) -> str:
        return f"<AgentRequest {self.agent_id!r} ttl={self.ttl:g} interval={self.interval:g}>"

    async def _join(self) -> Agent:
        m = self._membership
        return await m.join(self.agent_id, ttl=self.ttl, interval=self.interval, meta=self.meta,
                            timeout=m.coord.timeout)  # fmt: skip

    def __await__(self) -> Generator[Any, None, Agent]:
        return self._join().__await__()

    async def __aenter__(self) -> Agent:
        if self._agent is not None:
            raise InvalidInputError(f"{self!r} is already in an `async with`; make a new request")
        self._agent = await self._join()
        self._token = ownership.CURRENT_AGENT.set(self._agent)
        return self._agent

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        agent, self._agent = self._agent, None
        if self._token is not None:
            ownership.CURRENT_AGENT.reset(self._token)
            self._token = None
        if agent is None or agent.abandoned:
            return
        try:
            await agent.leave()
        except Reaped:
            if exc_type is None:
                raise
        except LockstepError as error:
            if exc_type is None:
                raise
            log.warning("agent %r could not deregister cleanly: %s", agent.id, error)


def check_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)
