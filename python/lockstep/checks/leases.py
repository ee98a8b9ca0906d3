"""Rows for the seed's Assumption 2: the test lock serializes sprints, and nothing collides.

* 10 sprints, each a coordinator of its own, race for the test lock
  (:class:`~lockstep.cfn.TestLockCoordinator`) and "run tests" for 20 ms: the windows
  are compared pairwise, as the seed does, and the hand-over gaps measured;
* 10 sprints lease 2 ports each at once (``coord.ports``), three times, and listen on
  them: no EADDRINUSE, no port handed to two sprints;
* a real process holding the lock (ttl 1 s) is killed with SIGKILL while a waiter is
  queued: the waiter has the lock within the TTL (on the file driver at once: the dead
  holder's ``flock`` is gone);
* 10 sprints claim overlapping files at once (:class:`~lockstep.cfn.FileConflictDetector`),
  five rounds: no two granted claims share a file, and every refusal names a sprint
  that really holds the file.

Each row works in the check's private namespace and purges the resources it leased
(``coord.purge_lease``: fence counters), so the backend is left as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable

from ..cfn.leases import ClaimResult, FileConflictDetector, TestLockCoordinator
from ..coordinator import Coordinator
from ..errors import LockstepError
from . import CheckContext, CheckResult, check
from .stats import ms, percentile

SPRINTS = 10
TEST_RUN = 0.02  # s a sprint "runs tests" under the lock
PORT_ROUNDS, PORTS_EACH = 3, 2
CRASH_TTL = 1.0  # s: the crashed holder's lease
CRASH_SLACK = 0.1  # s past the TTL allowed for the waiter's wake-up and scheduling
CLAIM_ROUNDS, CLAIM_FILES, CLAIM_EACH = 5, 12, 3


@contextlib.asynccontextmanager
async def sprints(ctx: CheckContext, count: int = SPRINTS) -> AsyncIterator[list[Coordinator]]:
    """``count`` coordinators, one per sprint, as separate processes would have."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(ctx.connect(member=f"sprint-{i}")) for i in range(count)]


async def forget_fences(coord: Coordinator, resources: Iterable[tuple[str, str]]) -> None:
    """Forget the fences of the row's idle resources (``coord.purge_lease``): the check's
    namespace is private and ends with the row."""
    with contextlib.suppress(LockstepError):
        for kind, name in resources:
            await coord.purge_lease(name, kind=kind)


def overlapping_pairs(windows: list[tuple[float, float]]) -> int:
    """Pairs of windows that overlap (the seed's test: start1 < end2 and start2 < end1)."""
    return sum(
        1
        for i, (s1, e1) in enumerate(windows)
        for s2, e2 in windows[i + 1 :]
        if s1 < e2 and s2 < e1
    )


@check(
    "test-lock-serial",
    title="test lock serializes 10 sprints (seed: no overlapping test windows)",
    source="Assumption 2: test lock serialization",
    target="0 overlapping execution windows among 10 sprints",
)
async def test_lock_serial(ctx: CheckContext) -> CheckResult:
    lock_name = "check-test-lock"
    windows: list[tuple[float, float]] = []
    async with sprints(ctx) as coords:

        async def sprint(i: int) -> None:
            test_lock = TestLockCoordinator(coords[i], name=lock_name, ttl=5.0)
            if not await test_lock.wait_for_test_slot(f"sprint-{i}", 10.0):
                return
            try:
                start = time.monotonic()
                await asyncio.sleep(TEST_RUN)
                windows.append((start, time.monotonic()))
            finally:
                await test_lock.release_test_lock(f"sprint-{i}")

        started = time.monotonic()
        await asyncio.gather(*(sprint(i) for i in range(SPRINTS)))
        took = time.monotonic() - started
        await forget_fences(coords[0], [("lock", lock_name)])
    windows.sort()
    overlaps = overlapping_pairs(windows)
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(windows)] or [0.0]
    return CheckResult(
        passed=overlaps == 0 and len(windows) == SPRINTS,
        measured=f"{overlaps} overlapping windows of {len(windows)}; all done in {took:.2f} s "
        f"(hand-over p50 {ms(percentile(gaps, 50))}, max {ms(max(gaps))})",
        detail="" if len(windows) == SPRINTS else f"only {len(windows)} of {SPRINTS} sprints got the lock",
        figures={"overlaps": float(overlaps), "seconds": took, "handover_max_s": max(gaps)},
    )


def listen_on(port: int) -> socket.socket | None:
    """Listen on ``port`` like a test server; None on EADDRINUSE."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    return sock


@check(
    "port-conflicts",
    title=f"port leases: 10 sprints x {PORTS_EACH} ports at once, bound (seed: 0 port conflicts)",
    source="Assumption 2: test lock serialization (port conflicts)",
    target="0 EADDRINUSE and 0 ports leased twice",
)
async def port_conflicts(ctx: CheckContext) -> CheckResult:
    in_use = conflicts = leased = duplicates = 0
    seen: set[int] = set()
    async with sprints(ctx) as coords:
        started = time.monotonic()
        for _ in range(PORT_ROUNDS):
            leases = await asyncio.gather(*(c.ports(PORTS_EACH, ttl=5.0, wait=5.0) for c in coords))
            ports = [p for lease in leases for p in lease.ports]
            leased += len(ports)
            duplicates += len(ports) - len(set(ports))
            socks = [listen_on(p) for p in ports]
            conflicts += sum(1 for s in socks if s is None)
            in_use = max(in_use, len(ports))
            for s in socks:
                if s is not None:
                    s.close()
            await asyncio.gather(*(lease.release() for lease in leases))
            seen.update(ports)
        took = time.monotonic() - started
        await forget_fences(coords[0], [("port", str(p)) for p in sorted(seen)])
    return CheckResult(
        passed=conflicts == 0 and duplicates == 0,
        measured=f"{conflicts} EADDRINUSE, {duplicates} ports leased twice; {leased} leased "
        f"({in_use} held at once) in {took:.2f} s",
        figures={"eaddrinuse": float(conflicts), "duplicates": float(duplicates), "seconds": took},
    )


@check(
    "crashed-holder",
    title=f"crashed holder's lock released within its TTL (kill -9 of a real process, ttl {CRASH_TTL:g} s)",
    source="Assumption 2: test lock serialization (a sprint dies holding the lock)",
    target=f"a queued waiter holds the lock within the TTL (+{CRASH_SLACK * 1000:.0f} ms to wake)",
    requires=("cross_process",),
)
async def crashed_holder(ctx: CheckContext) -> CheckResult:
    lock_name = "check-crash-lock"
    url = [] if ctx.url is None else ["--url", ctx.url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lockstep.checks.lock_holder", *url, "--namespace", ctx.namespace,
        "--name", lock_name, "--ttl", repr(CRASH_TTL),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15.0)).decode().strip()
        if not line.startswith("held "):
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            return CheckResult(passed=False, measured="the holder process never held the lock", detail=err[-500:])
        dead_fence = int(line.split()[1])
        async with ctx.connect(member="survivor") as coord:
            waiting = asyncio.ensure_future(coord.lock(lock_name, ttl=5.0, wait=CRASH_TTL * 5))
            await asyncio.sleep(0.2)  # queued behind the holder
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await proc.wait()
            lease = await waiting
            gap = time.monotonic() - killed
            fence = lease.fence
            await lease.release()
            await forget_fences(coord, [("lock", lock_name)])
    finally:
        if proc.returncode is None:
            proc.kill()  # this row's own child, by its handle
            await proc.wait()
    return CheckResult(
        passed=gap <= CRASH_TTL + CRASH_SLACK and fence > dead_fence,
        measured=f"re-acquired {ms(gap)} after kill -9 (ttl {CRASH_TTL * 1000:.0f} ms); fence {dead_fence} -> {fence}",
        figures={"seconds": gap, "ttl": CRASH_TTL},
    )


def _judge_round(results: list[ClaimResult]) -> tuple[int, int, int]:
    """(refusals naming a real holder, refusals that did not, files granted to two sprints)."""
    owner: dict[str, str] = {}
    missed = 0
    for i, result in enumerate(results):
        for path in result.granted:
            missed += path in owner
            owner[path] = f"sprint-{i}"
    right = wrong = 0
    for i, result in enumerate(results):
        if result.ok:
            continue
        named_right = all(owner.get(p) == who for p, who in result.conflicts.items())
        right, wrong = (right + 1, wrong) if named_right and result.conflicts else (right, wrong + 1)
    return right, wrong, missed


@check(
    "claim-conflicts",
    title=f"concurrent file claims: 10 sprints x {CLAIM_EACH} of {CLAIM_FILES} files, {CLAIM_ROUNDS} rounds",
    source="Assumption 2: test lock serialization (file conflicts)",
    target="100% of conflicts detected, each naming the holding sprint; 0 files granted twice",
)
async def claim_conflicts(ctx: CheckContext) -> CheckResult:
    rng = random.Random(2)
    files = [f"src/module_{i}.py" for i in range(CLAIM_FILES)]
    right = wrong = missed = granted = 0
    async with sprints(ctx) as coords:
        detectors = [FileConflictDetector(c, f"sprint-{i}", root="/check", ttl=5.0) for i, c in enumerate(coords)]
        started = time.monotonic()
        for _ in range(CLAIM_ROUNDS):
            wants = [rng.sample(files, CLAIM_EACH) for _ in detectors]
            results = await asyncio.gather(*(d.claim(w) for d, w in zip(detectors, wants)))
            r, w, m = _judge_round(list(results))
            right, wrong, missed = right + r, wrong + w, missed + m
            granted += sum(1 for res in results if res.ok)
            for d in detectors:
                await d.release()
        took = time.monotonic() - started
        await forget_fences(coords[0], [("claim", f) for f in files])
    conflicts = right + wrong + missed
    share = 100.0 * right / conflicts if conflicts else 0.0
    return CheckResult(
        passed=conflicts > 0 and wrong == 0 and missed == 0,
        measured=f"{share:.0f}% of {conflicts} conflicts detected with the right holder, {missed} missed; "
        f"{granted} of {CLAIM_ROUNDS * SPRINTS} claims granted, in {took:.2f} s",
        figures={"detected_share": share, "conflicts": float(conflicts), "missed": float(missed), "seconds": took},
    )
