"""What ``lockstep status`` shows, gathered once as plain data (printed as tables or JSON).

:func:`collect` reads, for one namespace: its agents (``coord.members()``), every busy
lease resource with its holders and queue (``coord.leases()``), the consumer groups of
its channels with their pending counts (``coord.consumer_groups()``), its signal logs
with their newest generation (``coord.signals().logs()``), the backend's memory and the
latest reapings. Every part comes from an index or a table of the
namespace, never from a scan of the backend's keyspace. A part the driver does not
offer is ``None``, with a note saying why, so ``--json`` readers can tell "none" from
"not available".
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .drivers.base import Capability
from .errors import CapabilityError

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .drivers.lease_store import ResourceLeases
    from .membership import MemberInfo

__all__ = ["collect"]

RECENT = 5  # lifecycle entries shown


async def collect(coord: Coordinator) -> dict[str, Any]:
    """The namespace's state as JSON-ready data (see the module docstring)."""
    store = coord._membership_manager().store
    members = await coord.members()
    owners = await _lease_owners(coord, members)
    usage = await coord.memory_usage()
    report: dict[str, Any] = {
        "url": coord.settings.display_url,
        "namespace": coord.namespace,
        "driver": coord.driver.name,
        "clock": store.clock,
        "at": round(time.time(), 3),
        "agents": [_agent(m) for m in members],
        "leases": None,
        "queues": None,
        "signals": None,
        "notes": {},
        "memory": {
            "backend_bytes": usage.backend_bytes,
            "namespace_bytes": usage.namespace_bytes,
            "keys": usage.keys,
            "how": str(usage.detail.get("how", "")),
        },
        "reapings": [json.loads(e) for e in await store.lifecycle(RECENT, timeout=coord.timeout)],
    }
    if Capability.LOCKS in coord.capabilities:
        report["leases"] = [_resource(r, owners) for r in await coord.leases()]
    else:
        report["notes"]["leases"] = f"the {coord.driver.name} driver has no leases"
    if coord.messaging.store.durable and Capability.DURABLE_MESSAGES in coord.capabilities:
        report["queues"] = [asdict(g) for g in await coord.consumer_groups()]
    else:
        report["notes"]["queues"] = (
            f"the {coord.driver.name} driver's messaging is pub/sub: no consumer groups or pending entries"
            + (f" ({coord.messaging.store.durable_hint})" if coord.messaging.store.durable_hint else "")
        )
    try:
        report["signals"] = [asdict(s) for s in await coord.signals().logs()]
    except CapabilityError as e:
        report["notes"]["signals"] = str(e)
    return report


async def _lease_owners(coord: Coordinator, members: list[MemberInfo]) -> dict[str, str]:
    """Lease token -> the agent that owns it, from the agents' ownership indexes."""
    if Capability.LOCKS not in coord.capabilities:
        return {}
    store = coord._membership_manager().store
    owners = {}
    for m in members:
        if m.owned_leases:
            for lease in await store.leases(m.agent_id, timeout=coord.timeout):
                owners[lease.token] = m.agent_id
    return owners


def _agent(m: MemberInfo) -> dict[str, Any]:
    state = "alive" if m.alive else ("process gone" if m.process_alive is False else "silent")
    process = {True: "running", False: "gone", None: "-" if not m.local else "unknown"}[m.process_alive]
    return {
        "agent": m.agent_id, "incarnation": m.incarnation, "state": state, "alive": m.alive,
        "age": round(m.age, 3), "ttl": m.ttl, "host": m.host, "pid": m.pid, "process": process,
        "owned_keys": m.owned_keys, "owned_leases": m.owned_leases, "meta": m.meta,
    }  # fmt: skip


def _resource(r: ResourceLeases, owners: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "name": r.name,
        "slots": r.slots,
        "fence": r.fence,
        "holders": [
            {"owner": h.owner, "agent": owners.get(h.token), "token": h.token, "fence": h.fence,
             "expires_in": round(h.expires_in, 3)}
            for h in r.holders
        ],  # fmt: skip
        "waiters": [
            {"owner": w.owner, "ticket": w.ticket, "expires_in": round(w.expires_in, 3)} for w in r.waiters
        ],
    }
