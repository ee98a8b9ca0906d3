"""One sprint of an epic, run on lockstep's primitives.

The sprint registers as an agent (heartbeats: a killed sprint is noticed and its leases
freed), does its prep work while its dependencies are pending (productive waiting,
:class:`~lockstep.cfn.SprintCoordinator`), then its phases in order. A test phase runs
under the test lock (``coord.lock("test")``) with freshly leased ports
(``coord.ports(n)``) exported as ``$LOCKSTEP_PORTS``. After its
interface phase it signals ``interface_ready``, which its dependents are waiting for.

Everything that happens is reported through ``emit(event, **fields)`` with ``t`` from
``time.monotonic()`` (one clock for every process of a host), so the runner can draw
the timeline and sum up the waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cfn.coordination import SprintCoordinator
from ..errors import LockstepError, LockTimeout
from .plan import Phase, SprintSpec

if TYPE_CHECKING:
    from ..coordinator import Coordinator
    from ..ports import PortLease

__all__ = ["Emit", "SprintFailed", "SprintOptions", "run_sprint"]

Emit = Callable[..., None]
TEST_LOCK = "test"
OUTPUT_TAIL = 2000  # bytes of a failed command's output kept for the report


class SprintFailed(Exception):
    """The sprint cannot go on; the message says why."""


@dataclass(frozen=True)
class SprintOptions:
    time_scale: float  #: real seconds per simulated minute
    dep_wait: float  #: seconds to wait for the dependencies' interfaces
    lock_wait: float  #: seconds to wait for the test lock
    agent_ttl: float = 10.0
    heartbeat: float = 1.0
    lease_ttl: float = 5.0  #: a killed holder's test lock is free after this at the latest


async def lease_ports(coord: Coordinator, count: int, *, ttl: float, wait: float) -> PortLease | None:
    """``count`` ports leased to this sprint (unique on the backend, free on this host), or
    None for none; SprintFailed when the port range has none free within ``wait``."""
    if count == 0:
        return None
    try:
        return await coord.ports(count, ttl=ttl, wait=wait)
    except LockTimeout as exc:
        raise SprintFailed(f"could not lease {count} port(s): {exc}") from exc


class _Runner:
    def __init__(self, coord: Coordinator, spec: SprintSpec, opts: SprintOptions, emit: Emit) -> None:
        self.coord = coord
        self.spec = spec
        self.opts = opts
        self.emit = emit

    async def work(self, phase: Phase, *, ports: list[int] = (), during_wait: bool = False, prep: bool = False) -> None:  # type: ignore[assignment]
        what = "prep" if prep else "phase"
        self.emit(f"{what}_start", phase=phase.name, kind="prep" if prep else phase.kind, during_wait=during_wait)
        if phase.run is None:
            await asyncio.sleep(phase.minutes * self.opts.time_scale)
        else:
            await self.command(phase, ports)
        self.emit(f"{what}_end", phase=phase.name, kind="prep" if prep else phase.kind, during_wait=during_wait)

    async def command(self, phase: Phase, ports: list[int]) -> None:
        assert phase.run is not None
        env = {**os.environ, "LOCKSTEP_SPRINT": self.spec.id, "LOCKSTEP_PHASE": phase.name,
               "LOCKSTEP_PORTS": ",".join(map(str, ports))}  # fmt: skip
        proc = await asyncio.create_subprocess_shell(
            phase.run, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        limit = None if phase.timeout_minutes is None else phase.timeout_minutes * 60
        try:
            async with asyncio.timeout(limit):
                output, _ = await proc.communicate()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the command's whole process group, by its id
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise SprintFailed(f"phase {phase.name!r}: `{phase.run}` ran past {phase.timeout_minutes:g} min") from None
            raise
        if proc.returncode != 0:
            tail = output[-OUTPUT_TAIL:].decode("utf-8", "replace").strip()
            raise SprintFailed(f"phase {phase.name!r}: `{phase.run}` exited with {proc.returncode}: {tail}")

    async def test_phase(self, phase: Phase) -> None:
        # Ports first: they are never queued for (a taken one is skipped), and leasing them
        # while still queued for the lock keeps that round trip off the test lock's hand-over.
        ports_lease = await lease_ports(self.coord, phase.ports, ttl=self.opts.lease_ttl, wait=self.opts.lock_wait)
        ports = [] if ports_lease is None else ports_lease.ports
        try:
            self.emit("lock_wait", phase=phase.name)
            asked = time.monotonic()
            async with self.coord.lock(TEST_LOCK, ttl=self.opts.lease_ttl, wait=self.opts.lock_wait) as lock:
                self.emit("lock_acquired", phase=phase.name, fence=lock.fence, waited=time.monotonic() - asked)
                self.emit("ports", phase=phase.name, ports=ports)
                await self.work(phase, ports=ports)
        except LockstepError as exc:
            raise SprintFailed(f"phase {phase.name!r}: test lock: {exc}") from exc
        finally:
            if ports_lease is not None:
                with contextlib.suppress(LockstepError):
                    await ports_lease.release()
        self.emit("lock_released", phase=phase.name)

    async def dependencies(self, sprint: SprintCoordinator) -> list[Phase]:
        """Prep work while the dependencies are pending; returns the prep still to do."""
        if not self.spec.depends_on:
            return list(self.spec.prep)
        self.emit("wait_start", deps=list(self.spec.depends_on))

        async def run(task: Phase) -> None:
            await self.work(task, during_wait=True, prep=True)

        result = await sprint.wait_for_dependencies_with_productive_work(self.spec.prep, run, self.opts.dep_wait)
        if not result.resolved:
            raise SprintFailed(
                f"dependencies {', '.join(result.pending)} did not publish their interface within "
                f"{self.opts.dep_wait:g} s"
            )
        interfaces = {d: await sprint.integrate_dependency(d) for d in self.spec.depends_on}
        self.emit("deps_resolved", waited=result.waited, done_while_waiting=len(result.completed),
                  interfaces=sorted(interfaces))  # fmt: skip
        return list(result.remaining)

    async def run(self) -> None:
        sprint = SprintCoordinator(self.coord, self.spec.id, self.spec.depends_on)
        self.emit("started")
        for task in await self.dependencies(sprint):
            await self.work(task, prep=True)
        announcing: asyncio.Future[None] | None = None
        try:
            for index, phase in enumerate(self.spec.phases):
                if phase.test:
                    await self.test_phase(phase)
                else:
                    await self.work(phase)
                if index == self.spec.interface_index:
                    # Dependents wait for this; the next phase need not: both go at once.
                    announcing = asyncio.ensure_future(self.announce(sprint, phase))
            if announcing is not None:
                await announcing
        finally:
            if announcing is not None and not announcing.done():
                announcing.cancel()
        self.emit("done")

    async def announce(self, sprint: SprintCoordinator, phase: Phase) -> None:
        sig = await sprint.signal_interface_ready({"sprint": self.spec.id, "after": phase.name})
        self.emit("interface", generation=sig.generation)


async def run_sprint(
    coord: Coordinator, spec: SprintSpec, opts: SprintOptions, emit: Emit,
    ready: Callable[[], Awaitable[bool]] | None = None,
) -> bool:  # fmt: skip
    """Run one sprint as agent ``spec.id`` on ``coord``; raises SprintFailed saying why it stopped.

    The agent registers (and heartbeats) first; then ``ready()``, if given, is awaited:
    it returns whether to run at all (the runner's go). Returns whether the sprint ran."""
    async with coord.agent(spec.id, ttl=opts.agent_ttl, interval=opts.heartbeat, meta={"epic_sprint": spec.id}):
        if ready is not None and not await ready():
            return False
        try:
            await _Runner(coord, spec, opts, emit).run()
        except SprintFailed as exc:
            emit("failed", reason=str(exc))
            raise
        except LockstepError as exc:
            emit("failed", reason=f"{type(exc).__name__}: {exc}")
            raise SprintFailed(f"{type(exc).__name__}: {exc}") from exc
    return True


def dump_spec(spec: SprintSpec) -> dict[str, Any]:
    """A SprintSpec as plain data (for a worker process's command line)."""
    from dataclasses import asdict

    return asdict(spec)


def load_spec(data: dict[str, Any]) -> SprintSpec:
    return SprintSpec(
        id=data["id"],
        depends_on=tuple(data["depends_on"]),
        prep=tuple(Phase(**p) for p in data["prep"]),
        phases=tuple(Phase(**p) for p in data["phases"]),
    )
