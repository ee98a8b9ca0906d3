"""The seed's coordination classes (assumptions 4 and 6), built on signals, ACKs and graphs.

* :class:`BlockingCoordinationManager`: the "holding pattern": send a signal, wait for
  ACKs with a timeout. ``wait_for_acks`` returns the valid ACKs it got by its deadline
  (maybe none) and never raises for a timeout, so two coordinators waiting on each
  other both come back empty by their deadlines instead of deadlocking.
* :class:`DependencyAnalyzer`: waves and the critical path; a cycle raises
  :class:`~lockstep.errors.CircularDependencyError` ("Circular dependency detected: ...").
* :class:`SprintCoordinator`: publishes a sprint's interface and waits for its
  dependencies' interfaces while doing productive work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import InvalidInputError, LockstepError, WaitTimeout
from ..graph import Plan, analyze
from ..names import validate_name
from ..signals import Signal, check_timeout

if TYPE_CHECKING:
    from ..acks import Ack
    from ..coordinator import Coordinator

__all__ = [
    "BlockingCoordinationManager",
    "DependencyAnalyzer",
    "ProductiveWaitResult",
    "SprintCoordinator",
]

log = logging.getLogger("lockstep.cfn")

T = TypeVar("T")
INTERFACE_READY = "interface_ready"


class BlockingCoordinationManager:
    """Signals with ACKs between coordinators; see the module docstring.

    A signal ``signal_id`` of this coordinator lives in its own log (target
    ``coordinator_id``), carrying ``{"to": [...], "data": ...}``; the recipients
    acknowledge it by id. With ``secret`` every ACK is HMAC-SHA256 signed and only
    validly signed ACKs are counted (forged or replayed ones are logged and ignored).
    """

    def __init__(self, coord: Coordinator, coordinator_id: str, *, secret: bytes | str | None = None) -> None:
        self.coord = coord
        self.coordinator_id = validate_name(coordinator_id, what="coordinator")
        self.signals = coord.signals(secret=secret) if secret is not None else coord.signals()

    def _timeout(self, timeout: float | None) -> float:
        return self.coord.timeout if timeout is None else check_timeout(timeout)

    async def send_signal(
        self, signal_id: str, to: str | Iterable[str] = (), data: Any = None, *, timeout: float | None = None
    ) -> Signal:
        """Send ``signal_id`` (with ``data``) for the coordinators ``to`` to acknowledge."""
        recipients = [to] if isinstance(to, str) else list(to)
        for r in recipients:
            validate_name(r, what="coordinator")
        body = {"to": recipients, "data": data}
        return await self.signals.signal(self.coordinator_id, signal_id, body, timeout=self._timeout(timeout))

    async def receive(self, signal_id: str, from_id: str, *, timeout: float | None = None) -> Signal:
        """The newest ``signal_id`` from ``from_id`` (waiting up to ``timeout``; WaitTimeout)."""
        return await self.signals.wait_signal(from_id, signal_id, timeout=self._timeout(timeout))

    async def acknowledge(self, signal_id: str, from_id: str, *, timeout: float | None = None) -> Ack:
        """Acknowledge ``from_id``'s newest ``signal_id`` as this coordinator (waiting up to
        ``timeout`` for it to exist; WaitTimeout if it never does)."""
        deadline = time.monotonic() + self._timeout(timeout)
        sig = await self.receive(signal_id, from_id, timeout=self._timeout(timeout))
        to = sig.data.get("to") if isinstance(sig.data, dict) else None
        if isinstance(to, list) and to and self.coordinator_id not in to:
            raise InvalidInputError(
                f"signal {signal_id!r} of {from_id!r} is for {', '.join(map(str, to))}, not {self.coordinator_id!r}"
            )
        left = max(0.001, deadline - time.monotonic())
        return await self.signals.ack(sig, by=self.coordinator_id, timeout=left)

    async def wait_for_acks(self, coordinator_ids: Sequence[str], signal_id: str, timeout: float) -> dict[str, Ack]:
        """The valid ACKs of this coordinator's newest ``signal_id`` from ``coordinator_ids``,
        waiting until all came or ``timeout`` passed: partial or empty then, never an error.
        A signal not sent yet is waited for within the same deadline."""
        started = time.monotonic()
        deadline = started + check_timeout(timeout)
        try:
            sig = await self.signals.wait_signal(self.coordinator_id, signal_id, timeout=timeout)
        except WaitTimeout:
            return {}
        left = deadline - time.monotonic()
        if left <= 0:
            left = 0.001  # one look, then give up
        result = await self.signals.wait_acks(sig, list(coordinator_ids), timeout=left)
        for party, error in result.rejected.items():
            log.warning("%s: ignored an ACK from %s: %s", self.coordinator_id, party, error)
        return result.acked


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, Mapping) and name in item:
            return item[name]
        if not isinstance(item, Mapping) and hasattr(item, name):
            return getattr(item, name)
    return None


class DependencyAnalyzer:
    """``analyze(sprints)``: waves and the critical path of sprints with dependencies.

    Accepts the seed's shape ``{"sprints": [{"id": ..., "dependencies": [...]}]}``, a list
    of such dicts, or objects with ``id`` and ``dependencies`` (``depends_on`` too); an
    optional ``duration`` (``minutes``, ``estimated_time``) weighs the critical path.
    """

    def analyze(self, sprints: Any) -> Plan:
        items = sprints.get("sprints") if isinstance(sprints, Mapping) else sprints
        if items is None or isinstance(items, str | bytes) or not isinstance(items, Iterable):
            raise InvalidInputError("analyze() takes {'sprints': [...]} or a list of sprints with an id each")
        graph: dict[str, list[str]] = {}
        durations: dict[str, float] = {}
        for item in items:
            ident = _field(item, "id", "sprint_id")
            if not isinstance(ident, str) or not ident:
                raise InvalidInputError(f"every sprint needs a non-empty string id, got {item!r}")
            if ident in graph:
                raise InvalidInputError(f"sprint {ident!r} is listed twice")
            deps = _field(item, "dependencies", "depends_on") or []
            if isinstance(deps, str) or not isinstance(deps, Iterable):
                raise InvalidInputError(f"the dependencies of {ident!r} must be a list of ids, got {deps!r}")
            graph[ident] = list(deps)
            duration = _field(item, "duration", "minutes", "estimated_time", "estimatedTime")
            if duration is not None:
                durations[ident] = duration
        return analyze(graph, durations)


@dataclass
class ProductiveWaitResult(Generic[T]):
    """What :meth:`SprintCoordinator.wait_for_dependencies_with_productive_work` did."""

    resolved: bool  #: every dependency published its interface in time
    completed: list[T]  #: tasks run to the end, in order
    remaining: list[T]  #: tasks not started, handed back
    interfaces: dict[str, Signal] = field(default_factory=dict)  #: dependency -> its interface signal
    pending: list[str] = field(default_factory=list)  #: dependencies still unresolved (timed out)
    waited: float = 0.0  #: seconds from the call to its return
    resolved_after: float | None = None  #: seconds from the call until the last dependency resolved
    work_seconds: float = 0.0  #: seconds spent running tasks


class SprintCoordinator:
    """One sprint: its interface signal and its dependencies' (signal ``interface_ready``)."""

    def __init__(self, coord: Coordinator, sprint_id: str, dependencies: Iterable[str] = ()) -> None:
        self.coord = coord
        self.sprint_id = validate_name(sprint_id, what="sprint")
        self.dependencies = [validate_name(d, what="dependency") for d in dict.fromkeys(dependencies)]
        if self.sprint_id in self.dependencies:
            raise InvalidInputError(f"sprint {sprint_id!r} cannot depend on itself")
        self.integrated: dict[str, Any] = {}

    async def signal_interface_ready(self, data: Any = None, *, timeout: float | None = None) -> Signal:
        """Publish this sprint's interface (durable: dependents that start later still see it)."""
        return await self.coord.signal(self.sprint_id, INTERFACE_READY, data, timeout=timeout)

    async def wait_for_dependencies_with_productive_work(
        self, tasks: Iterable[T], run: Callable[[T], Awaitable[Any]], timeout: float
    ) -> ProductiveWaitResult[T]:
        """Run ``tasks`` one at a time (``await run(task)``) while dependencies are pending;
        once all have published their interface, finish the task in hand and return, handing
        back the tasks not started. Out of tasks, just wait. A task in hand is never cut
        short, not even by the timeout (``resolved`` is then False, ``pending`` says who)."""
        started = time.monotonic()
        deadline = started + check_timeout(timeout)
        queue = list(tasks)
        interfaces: dict[str, Signal] = {}
        all_in = asyncio.Event()
        resolved_at: list[float] = []

        async def watch(dep: str) -> None:
            sig = await self.coord.wait_signal(dep, INTERFACE_READY, timeout=max(0.001, deadline - time.monotonic()))
            interfaces[dep] = sig
            if len(interfaces) == len(self.dependencies):
                resolved_at.append(time.monotonic())
                all_in.set()

        for dep in self.dependencies:  # those already published: no work needed for them
            with contextlib.suppress(LockstepError):
                found = await self.coord.signals().latest(
                    dep, INTERFACE_READY, timeout=max(0.001, min(self.coord.timeout, deadline - time.monotonic()))
                )
                if found is not None:
                    interfaces[dep] = found
        if len(interfaces) == len(self.dependencies):
            resolved_at.append(time.monotonic())
            all_in.set()
        watchers = [asyncio.create_task(watch(d)) for d in self.dependencies if d not in interfaces]
        done_watching = asyncio.ensure_future(asyncio.gather(*watchers, return_exceptions=True))
        completed: list[T] = []
        work = 0.0
        try:
            while queue and not all_in.is_set() and time.monotonic() < deadline:
                task = queue.pop(0)
                began = time.monotonic()
                await run(task)
                work += time.monotonic() - began
                completed.append(task)
            if not all_in.is_set():
                outcomes = await done_watching  # each watcher ends by the deadline
                errors = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, WaitTimeout)]
                if errors:
                    raise errors[0]
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        return ProductiveWaitResult(
            resolved=all_in.is_set(),
            completed=completed,
            remaining=queue,
            interfaces=dict(interfaces),
            pending=[d for d in self.dependencies if d not in interfaces],
            waited=time.monotonic() - started,
            resolved_after=(resolved_at[0] - started) if resolved_at else None,
            work_seconds=work,
        )

    async def integrate_dependency(self, dep_id: str, *, timeout: float | None = None) -> Any:
        """The interface ``dep_id`` published (its ``interface_ready`` data), waiting up to
        ``timeout`` (default: the coordinator's) for it; WaitTimeout if it never came."""
        validate_name(dep_id, what="dependency")
        wait = self.coord.timeout if timeout is None else check_timeout(timeout)
        sig = await self.coord.wait_signal(dep_id, INTERFACE_READY, timeout=wait)
        self.integrated[dep_id] = sig.data
        return sig.data
