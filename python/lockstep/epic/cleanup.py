"""Leaving the backend as the run found it.

Always: the run's ``interface_ready`` logs and its wake-up channel. When the run owns
its namespace (the runner made it up, or a check row lends it a private one): every
agent record and the incarnation counter (:func:`lockstep.reaping.reset`), and the
test lock and the ports it leased, once nobody holds them.

Fences are deliberately permanent (a resource's fence must never go backwards), so only
a namespace the run owns, and that ends with it, may forget them:
``coord.purge_lease`` does, on every driver, and refuses a resource still held or waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..cfn.coordination import INTERFACE_READY
from ..errors import LockstepError
from ..reaping import reset
from ..wakeups import WAKE_CHANNEL
from .sprint import TEST_LOCK

if TYPE_CHECKING:
    from ..coordinator import Coordinator
    from .runner import SprintRecord

__all__ = ["clean_up"]


def _leased(records: Iterable[SprintRecord]) -> list[tuple[str, str]]:
    found = {("lock", TEST_LOCK)}
    for record in records:
        for event in record.events:
            if event["event"] == "ports":
                found.update(("port", str(p)) for p in event["ports"])
    return sorted(found)


async def clean_up(coord: Coordinator, records: Iterable[SprintRecord], *, owns_namespace: bool) -> None:
    """See the module docstring; failures are ignored (nothing depends on the leftovers)."""
    records = list(records)
    with contextlib.suppress(LockstepError):
        for record in records:
            await coord.signals().forget(record.id, INTERFACE_READY)
        await coord.messaging.purge([WAKE_CHANNEL])
    if not owns_namespace:
        return
    with contextlib.suppress(LockstepError):
        await reset(coord, timeout=coord.timeout, keep_counter=False)
    with contextlib.suppress(LockstepError):
        for kind, name in _leased(records):
            await coord.purge_lease(name, kind=kind)  # refused (False) while still held
