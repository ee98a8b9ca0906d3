"""Sweeping: dead agents found, claimed once, cleaned up exactly, announced.

``coord.sweep()`` does, in order:

1. **Dead local processes.** For every process of this host with agents registered
   (the process index, not a scan), :func:`lockstep.procinfo.is_alive` compares the
   recorded pid *and* start time with ``/proc``: a process that is gone (or a pid now
   used by another process) has its agents reaped at once, without waiting for the
   threshold.
2. **Silent agents.** Agents whose last heartbeat is older than ``threshold`` (default:
   each agent's own ttl), read from the stale end of the heartbeat order in batches of
   :data:`BATCH`, so the work is proportional to the dead, not to the living.

Each claim is one atomic step on the backend that re-checks staleness on the backend's
clock, removes the record, deletes exactly the keys the agent's ownership index names
and logs a ``reaped`` entry in the namespace's lifecycle log: two reapers at once split
the dead between them, each reaped exactly once, and a fresh agent is never touched.
Then (:func:`settle`) each reaped agent's leases are released by token through the
lease store, and each reaping is announced on channel ``agent:lifecycle`` when the
driver has pub/sub. Sweeping again finds nothing more to do: it is idempotent.

``reset`` (``lockstep sweep --reset``) removes every agent of the namespace, alive or
not, the same way, then drops the namespace's membership indexes and lifecycle log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ownership, procinfo
from .drivers.base import Capability
from .drivers.member_store import LOG_CAP, Claimed
from .errors import InvalidInputError

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ["BATCH", "LIFECYCLE_CHANNEL", "ReapedAgent", "SweepReport", "reset", "settle", "sweep"]

log = logging.getLogger("lockstep.membership")

BATCH = 500  #: agents claimed per round trip
LIFECYCLE_CHANNEL = "agent:lifecycle"
LOG_TTL = 7 * 24 * 3600.0  #: seconds the lifecycle channel's entries are kept on durable drivers


@dataclass(frozen=True)
class ReapedAgent:
    agent_id: str
    incarnation: int
    reason: str  #: "stale", "process gone", "reset"
    age: float | None  #: seconds since its last heartbeat when reaped
    keys_deleted: int
    leases: tuple[str, ...]  #: "kind:name,..." of each lease it owned


@dataclass
class SweepReport:
    """What a sweep did. ``agents`` lists the reaped agent ids."""

    reaped: list[ReapedAgent] = field(default_factory=list)
    leases_freed: list[str] = field(default_factory=list)
    leases_left: list[str] = field(default_factory=list)  #: not freed: left to their TTL, with why
    keys_deleted: int = 0
    announced: int = 0  #: lifecycle messages published on agent:lifecycle
    announce_note: str = ""  #: where the announcements went
    errors: list[str] = field(default_factory=list)

    @property
    def agents(self) -> list[str]:
        return [r.agent_id for r in self.reaped]

    def merge(self, other: SweepReport) -> None:
        self.reaped += other.reaped
        self.leases_freed += other.leases_freed
        self.leases_left += other.leases_left
        self.keys_deleted += other.keys_deleted
        self.announced += other.announced
        self.announce_note = other.announce_note or self.announce_note
        self.errors += other.errors


def check_threshold(threshold: object) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
        math.isfinite(threshold) and threshold > 0
    ):
        raise InvalidInputError(
            f"threshold must be None (each agent's ttl) or a positive number of seconds, got {threshold!r}"
        )
    return float(threshold)


async def sweep(coord: Coordinator, *, threshold: float | None, timeout: float) -> SweepReport:
    """See the module docstring; ``timeout`` bounds each backend call."""
    threshold = check_threshold(threshold)
    store = coord._membership_manager().store
    reaper = coord.member
    claimed: list[Claimed] = []
    here = procinfo.host_id()
    if here:
        for pid, start in await store.local_processes(here, timeout=timeout):
            if procinfo.is_alive(pid, start) is False:
                claimed += await store.reap_process(here, pid, start, reaper, timeout=timeout)
    while True:
        batch = await store.reap_stale(threshold, BATCH, reaper, timeout=timeout)
        claimed += batch
        if len(batch) < BATCH:
            break
    return await settle(coord, claimed, timeout=timeout)


async def settle(
    coord: Coordinator, claimed: Sequence[Claimed], *, timeout: float, announce: bool = True
) -> SweepReport:
    """After claims: tell our own agents, free their leases, announce them; the report."""
    report = SweepReport()
    if not claimed:
        return report
    membership = coord._membership
    for c in claimed:
        report.reaped.append(ReapedAgent(c.agent, c.incarnation, c.reason, c.age, c.keys_deleted,
                                         tuple(lease.describe() for lease in c.leases)))  # fmt: skip
        report.keys_deleted += c.keys_deleted
        mine = None if membership is None else membership.agents.get(c.agent)
        if mine is not None and mine.incarnation == c.incarnation:
            membership.on_reaped(mine, f"reaped by this coordinator's sweep ({c.reason})")  # type: ignore[union-attr]
    freed, left = await ownership.free_leases(coord, [lease for c in claimed for lease in c.leases], timeout=timeout)
    report.leases_freed, report.leases_left = freed, left
    if announce:
        await _announce(coord, claimed, report, timeout=timeout)
    return report


async def _announce(coord: Coordinator, claimed: Sequence[Claimed], report: SweepReport, *, timeout: float) -> None:
    """Publish one lifecycle message per reaped agent, when the driver has pub/sub.

    The lifecycle log (written atomically with each claim) has them in any case.
    """
    publish_many: Any = getattr(coord, "publish_many", None)
    if Capability.PUBSUB not in coord.capabilities or publish_many is None:
        report.announce_note = f"lifecycle log only ({coord.driver.name} has no pub/sub)"
        return
    events = [
        {"event": "reaped", "agent": c.agent, "incarnation": c.incarnation, "reason": c.reason,
         "reaper": coord.member, "keys_deleted": c.keys_deleted, "leases": [lease.describe() for lease in c.leases]}
        for c in claimed
    ]  # fmt: skip
    try:
        _bound_retention(coord)
        await publish_many(LIFECYCLE_CHANNEL, events, timeout=timeout)
    except Exception as exc:  # the reaping is done and logged; a failed announcement must not hide it
        log.warning("announcing %d reaping(s) on %s failed: %s", len(events), LIFECYCLE_CHANNEL, exc)
        report.errors.append(f"announcing on {LIFECYCLE_CHANNEL} failed (the lifecycle log has them): {exc}")
        report.announce_note = "lifecycle log only (publishing failed)"
        return
    report.announced = len(events)
    report.announce_note = f"published on {LIFECYCLE_CHANNEL} and in the lifecycle log"


def _bound_retention(coord: Coordinator) -> None:
    """Keep the channel's log (on durable drivers) as bounded as the lifecycle log, unless the
    user bound the channel already: announcements must not grow the backend without end."""
    messaging = coord.messaging
    if LIFECYCLE_CHANNEL not in getattr(messaging, "_bindings", {}):
        coord.bind_channel(LIFECYCLE_CHANNEL, max_len=LOG_CAP, max_age=LOG_TTL)


async def reset(coord: Coordinator, *, timeout: float, keep_counter: bool = True) -> tuple[SweepReport, int]:
    """Remove every agent of the namespace and its owned keys and leases, then drop the
    namespace's membership indexes and lifecycle log (and the incarnation counter unless
    ``keep_counter``: only for a namespace never used again, like `lockstep check`'s).

    Returns the report and how many index keys (or rows) were dropped.
    """
    store = coord._membership_manager().store
    report = SweepReport()
    for _ in range(3):  # agents registering during the reset are taken on the next pass
        records = await store.members(timeout=timeout)
        if not records:
            break
        claimed = []
        for rec in records:
            found = await store.reap_agent(rec.agent, rec.incarnation, "reset", coord.member, timeout=timeout)
            if found is not None:
                claimed.append(found)
        report.merge(await settle(coord, claimed, timeout=timeout, announce=False))
    dropped = await store.drop_indexes(timeout=timeout, keep_counter=keep_counter)
    return report, dropped
