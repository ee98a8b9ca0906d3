"""Running an epic: start sprints as their dependencies allow, watch them, report.

Sprints run as worker processes (``workers="process"``, the default on drivers shared
across processes) or as tasks of this process (``"inline"``: ``memory://``, quick
checks). Every worker is started and connected before the clock starts, so the
makespan measures the epic, not Python's start-up.

**Scheduling.** At most ``max_parallel`` sprints run at once. A sprint may start once
every dependency has *started* (it then does its prep work while waiting for their
interfaces); among those, the one with the longest chain of work after it goes first.
Since a sprint only ever waits for sprints already running, every wait ends: the
scheduler cannot fill its slots with sprints waiting on sprints that never start.

**Failures.** A sprint that fails, or whose process dies (``kill -9``), is reported
with the reason; its dependents are stopped (they could only time out), the others
run on. After a death the runner sweeps membership at once, so the dead sprint's
agent is reaped and its leases (the test lock, its ports) are freed, and reports who
holds the test lock afterwards. An epic-wide deadline ends everything that still runs:
an epic never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..coordinator import connect
from ..errors import LockstepError, WaitError
from ..graph import analyze
from .cleanup import clean_up
from .plan import Bounds, EpicPlan, bounds
from .sprint import TEST_LOCK, SprintFailed, SprintOptions, dump_spec, run_sprint

__all__ = ["EpicResult", "EpicRunner", "SprintRecord"]

TERMINAL = ("done", "failed", "died", "cancelled")
READY_WAIT = 60.0  # s for every worker to start and connect
STOP_GRACE = 5.0  # s between SIGTERM and SIGKILL for a worker being stopped


@dataclass
class SprintRecord:
    id: str
    state: str = "pending"  #: pending, running, then done, failed, died or cancelled
    reason: str = ""
    pid: int | None = None
    started: float | None = None  #: seconds after the epic's start
    ended: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  #: each with "at": seconds after the start


@dataclass
class EpicResult:
    plan: EpicPlan
    bounds: Bounds
    time_scale: float  #: real seconds per simulated minute
    max_parallel: int
    workers: str
    url: str
    namespace: str
    setup_seconds: float
    makespan_seconds: float
    sprints: dict[str, SprintRecord]
    test_lock_holders: list[str] | None = None  #: after the run (None: could not ask)
    reaped: list[str] = field(default_factory=list)  #: agents swept after a sprint died
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return all(r.state == "done" for r in self.sprints.values())

    def minutes(self, seconds: float) -> float:
        return seconds / self.time_scale


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class _Worker:
    """One sprint's process or task, and how to start or stop it."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None
        self.go = asyncio.Event()
        self.stop_requested = False

    def start(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(b"go\n")
        self.go.set()

    def stop(self, *, hard: bool = False) -> None:
        self.stop_requested = True
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        if self.task is not None and not self.task.done():
            self.task.cancel()


class EpicRunner:
    """Runs one plan; see the module docstring. ``on_event(record, event)`` sees every event."""

    def __init__(
        self,
        plan: EpicPlan,
        *,
        url: str | None = None,
        time_scale: float | None = None,
        max_parallel: int | None = None,
        workers: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        on_event: Callable[[SprintRecord, dict[str, Any]], None] | None = None,
        call_timeout: float = 5.0,
        owns_namespace: bool | None = None,
        lease_ttl: float = 5.0,
    ) -> None:
        self.plan = plan
        self.url = url
        self.scale = plan.time_scale if time_scale is None else time_scale
        self.max_parallel = plan.max_parallel if max_parallel is None else max_parallel
        self.namespace = namespace or f"epic-{uuid.uuid4().hex[:10]}"
        #: the run leaves nothing behind in a namespace it owns (see lockstep.epic.cleanup)
        self.owns_namespace = namespace is None if owns_namespace is None else owns_namespace
        self.bounds = bounds(plan, max_parallel=self.max_parallel)
        self.timeout = timeout if timeout is not None else max(60.0, 3 * self.bounds.baseline * self.scale) + 30
        self.on_event = on_event
        self.call_timeout = call_timeout
        probe = connect(url, namespace=self.namespace)
        self.display_url = probe.settings.display_url
        self.workers_mode = workers or ("inline" if probe.driver.name == "memory" else "process")
        if self.workers_mode not in ("process", "inline"):
            raise ValueError(f"workers must be 'process' or 'inline', got {workers!r}")
        self.records = {s.id: SprintRecord(s.id) for s in plan.sprints}
        self.workers = {s.id: _Worker() for s in plan.sprints}
        self.priority = analyze({s.id: s.depends_on for s in plan.sprints}, {s.id: s.minutes for s in plan.sprints}).tail
        self.order = [s.id for s in plan.sprints]
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.t0: float | None = None
        self.opts = SprintOptions(time_scale=self.scale, dep_wait=self.timeout, lock_wait=self.timeout,
                                  lease_ttl=lease_ttl)  # fmt: skip

    # -- workers ----------------------------------------------------------------------------
    async def _spawn(self, sid: str) -> None:
        spec = self.plan.sprint(sid)
        args = ["--url", self.display_url if self.url is None else self.url, "--namespace", self.namespace,
                "--spec", json.dumps(dump_spec(spec)), "--time-scale", repr(self.scale),
                "--dep-wait", repr(self.opts.dep_wait), "--lock-wait", repr(self.opts.lock_wait),
                "--call-timeout", repr(self.call_timeout), "--lease-ttl", repr(self.opts.lease_ttl)]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lockstep.epic.worker", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = self.workers[sid]
        worker.proc = proc
        self.records[sid].pid = proc.pid
        worker.task = asyncio.ensure_future(self._read(sid, proc))

    async def _read(self, sid: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.ensure_future(proc.stderr.read())
        async for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                self.events.put_nowait((sid, event))
        code = await proc.wait()
        tail = (await errors)[-1000:].decode("utf-8", "replace").strip()
        self.events.put_nowait((sid, {"event": "exit", "t": time.monotonic(), "code": code, "stderr": tail}))

    async def _inline(self, sid: str) -> None:
        spec, worker = self.plan.sprint(sid), self.workers[sid]

        def emit(event: str, **fields: Any) -> None:
            self.events.put_nowait((sid, {"event": event, "t": time.monotonic(), **fields}))

        code = 0
        try:
            async with connect(self.url, namespace=self.namespace, member=sid, timeout=self.call_timeout) as coord:

                async def ready() -> bool:
                    emit("ready")
                    await worker.go.wait()
                    return True

                await run_sprint(coord, spec, self.opts, emit, ready)
        except SprintFailed:
            code = 1
        except asyncio.CancelledError:
            emit("failed", reason="stopped by the runner")
            code = -int(signal.SIGTERM)
        except Exception as exc:  # reported like a crashed process, never swallowed
            emit("failed", reason=f"{type(exc).__name__}: {exc}")
            code = 1
        self.events.put_nowait((sid, {"event": "exit", "t": time.monotonic(), "code": code}))

    # -- scheduling -------------------------------------------------------------------------
    def _running(self) -> int:
        return sum(r.state == "running" for r in self.records.values())

    def _schedule(self) -> None:
        while self._running() < self.max_parallel:
            ready = [
                sid for sid in self.order
                if self.records[sid].state == "pending"
                and all(self.records[d].state in ("running", "done") for d in self.plan.sprint(sid).depends_on)
            ]  # fmt: skip
            if not ready:
                return
            sid = max(ready, key=lambda s: (self.priority[s], -self.order.index(s)))
            record = self.records[sid]
            record.state = "running"
            record.started = time.monotonic() - (self.t0 or time.monotonic())
            self.workers[sid].start()

    def _dependents(self, sid: str) -> list[str]:
        found: list[str] = []
        frontier = [sid]
        while frontier:
            current = frontier.pop()
            for s in self.plan.sprints:
                if current in s.depends_on and s.id not in found:
                    found.append(s.id)
                    frontier.append(s.id)
        return found

    def _finish(self, sid: str, state: str, reason: str, at: float) -> None:
        record = self.records[sid]
        if record.state in TERMINAL:
            return
        record.state, record.reason, record.ended = state, reason, at
        if state == "done":
            return
        for dep in self._dependents(sid):
            if self.records[dep].state not in TERMINAL:
                self._finish(dep, "cancelled", f"dependency {sid} {state}", at)
                self.workers[dep].stop()

    def _handle(self, sid: str, event: dict[str, Any]) -> bool:
        """Apply one event; True when a sprint died (the caller then sweeps)."""
        assert self.t0 is not None
        at = float(event.get("t", time.monotonic())) - self.t0
        event["at"] = at
        record = self.records[sid]
        record.events.append(event)
        kind = event["event"]
        died = False
        if kind == "done":
            self._finish(sid, "done", "", at)
        elif kind == "failed" and record.state not in TERMINAL:
            self._finish(sid, "failed", str(event.get("reason", "")), at)
        elif kind == "exit" and record.state not in TERMINAL:
            detail = describe_exit(event.get("code"))
            if event.get("stderr"):
                detail += f"; stderr: {event['stderr'][-300:]}"
            self._finish(sid, "died", f"process {detail}", at)
            died = True
        if self.on_event is not None:
            self.on_event(record, event)
        return died

    # -- the run ------------------------------------------------------------------------------
    async def _setup(self) -> None:
        for s in self.plan.sprints:
            if self.workers_mode == "process":
                await self._spawn(s.id)
            else:
                self.workers[s.id].task = asyncio.ensure_future(self._inline(s.id))
        pending = set(self.records)
        early: list[tuple[str, dict[str, Any]]] = []
        try:
            async with asyncio.timeout(READY_WAIT):
                while pending:
                    sid, event = await self.events.get()
                    if event["event"] == "ready":
                        pending.discard(sid)
                    elif event["event"] in ("exit", "failed"):
                        early.append((sid, event))
                        pending.discard(sid)
        except TimeoutError:
            raise WaitError(
                f"sprint worker(s) {', '.join(sorted(pending))} did not start and connect within {READY_WAIT:g} s"
            ) from None
        self.t0 = time.monotonic()
        for sid, event in early:  # workers that could not even start: died before the epic began
            self._handle(sid, event)

    async def run(self) -> EpicResult:
        setup_started = time.monotonic()
        reaped: list[str] = []
        timed_out = False
        holders: list[str] | None = None
        async with connect(self.url, namespace=self.namespace, timeout=self.call_timeout) as coord:
            try:
                await self._setup()
                assert self.t0 is not None
                setup = self.t0 - setup_started
                deadline = self.t0 + self.timeout
                self._schedule()
                while any(r.state not in TERMINAL for r in self.records.values()):
                    try:
                        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                            sid, event = await self.events.get()
                    except TimeoutError:
                        timed_out = True
                        break
                    if self._handle(sid, event):
                        with contextlib.suppress(LockstepError):
                            reaped += (await coord.sweep()).agents  # frees the dead sprint's leases now
                    self._schedule()
                end = time.monotonic() - self.t0
                if timed_out:
                    for sid, record in self.records.items():
                        if record.state not in TERMINAL:
                            self._finish(sid, "failed", f"the epic ran past its {self.timeout:g} s deadline", end)
                            self.workers[sid].stop(hard=True)
            finally:
                await self._teardown()
            with contextlib.suppress(LockstepError):
                if any(r.state in ("died", "failed", "cancelled") for r in self.records.values()):
                    reaped += (await coord.sweep()).agents
                holders = [h.owner for h in await coord.lease_holders(TEST_LOCK)]
            await clean_up(coord, self.records.values(), owns_namespace=self.owns_namespace)
        ended = [r.ended for r in self.records.values() if r.ended is not None]
        return EpicResult(
            plan=self.plan, bounds=self.bounds, time_scale=self.scale, max_parallel=self.max_parallel,
            workers=self.workers_mode, url=self.display_url, namespace=self.namespace, setup_seconds=setup,
            makespan_seconds=max(ended, default=end), sprints=self.records, test_lock_holders=holders,
            reaped=reaped, timed_out=timed_out,
        )  # fmt: skip

    async def _teardown(self) -> None:
        """Stop whatever still runs and wait for every worker, SIGKILL after a grace period."""
        for worker in self.workers.values():
            if worker.proc is not None and worker.proc.returncode is None and worker.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    worker.proc.stdin.close()  # an idle worker reads EOF and leaves
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        if not tasks:
            return
        _, slow = await asyncio.wait(tasks, timeout=STOP_GRACE)
        for worker in self.workers.values():
            if worker.task in slow:
                worker.stop(hard=True)
        if slow:
            await asyncio.wait(slow, timeout=STOP_GRACE)
