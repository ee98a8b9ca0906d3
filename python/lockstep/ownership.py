"""What an agent owns, and the hooks that record it.

An agent owns its scratch keys (``agent.put``) and the leases granted while it runs.
The backend keeps an **ownership index** per agent (see
:mod:`lockstep.drivers.member_store`), so a sweep deletes exactly what a dead agent
owned and frees its leases by token, without scanning anything.

The lease machinery records leases through two calls, made where a lease is granted
and where it is released::

    from lockstep import ownership
    await ownership.lease_granted(coord, kind, names, token)   # after the grant
    await ownership.lease_released(coord, token)               # after the release

``lease_granted`` records the lease as owned by the agent of the current task
(:func:`owner_of_current_task`, set inside ``async with coord.agent(...)`` and inherited
by tasks started there); outside an agent it does nothing. It raises
:class:`~lockstep.errors.Reaped` when that agent was reaped: the caller should release
the lease it was just granted and let the error propagate. ``lease_released`` forgets
the lease (idempotent, never raises for a reaped agent).

When a sweep reaps an agent, :func:`free_leases` releases each lease it owned through
the driver's lease store (idempotent release by token). When the reaped agent's own
process learns it (its next heartbeat), :func:`stop_local_leases` marks those leases
lost so its renewer stops renewing them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .drivers.base import Capability
from .drivers.member_store import OwnedLease
from .errors import LockstepError

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .agent import Agent

__all__ = ["free_leases", "lease_granted", "lease_released", "owner_of_current_task", "stop_local_leases"]

log = logging.getLogger("lockstep.membership")

CURRENT_AGENT: ContextVar[Agent | None] = ContextVar("lockstep_current_agent", default=None)


def owner_of_current_task() -> Agent | None:
    """The agent whose ``async with coord.agent(...)`` block the current task runs in."""
    return CURRENT_AGENT.get()


async def lease_granted(
    coord: Coordinator, kind: str, names: Sequence[str], token: str, *, timeout: float | None = None
) -> None:
    """Record a just-granted lease as owned by the current task's agent (if any, of ``coord``)."""
    agent = owner_of_current_task()
    if agent is None or agent.coord is not coord:
        return
    await agent.own_lease(kind, names, token, timeout=timeout)


async def lease_released(coord: Coordinator, token: str, *, timeout: float | None = None) -> None:
    """Forget a released lease in its owner's index (whichever agent of ``coord`` owns it)."""
    membership = coord._membership
    agent = None if membership is None else membership.owner_of_lease(token)
    if agent is not None:
        await agent.disown_lease(token, timeout=timeout)


async def free_leases(
    coord: Coordinator, leases: Iterable[OwnedLease], *, timeout: float
) -> tuple[list[str], list[str]]:
    """Release leases of reaped agents by token: (freed, left to their TTL), as descriptions.

    Release by token is idempotent, so a lease already released, expired or freed by
    another reaper is simply reported freed (it is free either way).
    """
    leases = list(leases)
    if not leases:
        return [], []
    if Capability.LOCKS not in coord.capabilities:
        return [], [f"{lease.describe()} (no lease store on this driver)" for lease in leases]
    store = coord._lease_manager().store
    freed: list[str] = []
    left: list[str] = []
    for lease in leases:
        try:
            await store.release(lease.token, lease.kind, lease.names, timeout=timeout)
            freed.append(lease.describe())
        except LockstepError as exc:
            log.warning("could not free %s of a reaped agent; it is left to its TTL: %s", lease.describe(), exc)
            left.append(f"{lease.describe()} ({type(exc).__name__}: {exc})")
    return freed, left


def stop_local_leases(coord: Coordinator, tokens: Iterable[str], reason: str) -> int:
    """Mark this coordinator's leases with these tokens lost (their renewals stop)."""
    manager = coord._leases
    if manager is None:
        return 0
    stopped = 0
    for token in tokens:
        if token in manager.leases:
            manager.lose(token, reason)
            stopped += 1
    return stopped
