"""``lockstep lock NAME -- CMD ARGS...``: run CMD while holding a fenced, renewed lock.

    lockstep lock test --wait 600 -- pytest -x
    lockstep lock e2e --ports 2 --url redis://localhost:6379/0 -- ./run-e2e.sh

Acquires lock NAME (waiting up to ``--wait`` s, first come first served), leases
``--ports`` N TCP ports, then runs CMD in its own process group with these variables
added to its environment:

    LOCKSTEP_LOCK   the lock's name          LOCKSTEP_FENCE  the lock's fence token
    LOCKSTEP_PORTS  the leased ports, comma-separated (only with --ports)

While CMD runs the coordinator's renewer renews the leases, and SIGINT, SIGTERM and
SIGHUP sent to ``lockstep`` are forwarded to CMD's process group. If a lease is lost
(renewals failed until its deadline, or another holder took it over), CMD's process
group gets SIGTERM, then SIGKILL after ``--grace`` s, and ``lockstep`` exits 76.
Otherwise the leases are released and the exit status is CMD's (128 + N if signal N
ended it). On a terminal, CMD's group is made its foreground while CMD runs (CMD can
read it; Ctrl-C goes to CMD directly).

Exit status: CMD's own; 2 usage, configuration or backend error; 75 the lock (or the
ports) could not be had within ``--wait`` (the message names the holder); 76 a lease
was lost while CMD ran (the message says why); 126/127 CMD could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, Self

from .coordinator import Coordinator, connect
from .errors import BackendError, ClaimConflict, LeaseLost, LockTimeout

__all__ = ["EXIT_BUSY", "EXIT_LEASE_LOST", "add_parsers", "run", "split_command"]

EXIT_BUSY = 75  # EX_TEMPFAIL: try again later
EXIT_LEASE_LOST = 76
EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND = 126, 127
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _seconds(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive number of seconds, got 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "lock", help="run a command while holding a lock (and leased ports)",
        usage="lockstep lock NAME [--url URL] [--ttl S] [--wait S] [--ports N] [--grace S] -- CMD [ARGS ...]",
        description="\n\n".join(__doc__.split("\n\n")[2:5]).replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"exit status: CMD's; 2 usage/backend error; {EXIT_BUSY} lock not acquired within --wait; "
        f"{EXIT_LEASE_LOST} lease lost while CMD ran; {EXIT_CANNOT_EXECUTE}/{EXIT_NOT_FOUND} CMD not runnable",
    )  # fmt: skip
    p.add_argument("name", help="the lock's name")
    p.add_argument("--url", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    p.add_argument("--namespace", help="namespace (default: $LOCKSTEP_NAMESPACE, config, 'default')")
    p.add_argument("--ttl", type=_positive_seconds, default=30.0, help="lease TTL in seconds (default 30)")
    p.add_argument("--wait", type=_seconds, default=600.0,
                   help="wait this long for the lock, 0 tries once (default 600)")  # fmt: skip
    p.add_argument("--ports", type=_count, default=0, metavar="N", help="lease N free TCP ports (LOCKSTEP_PORTS)")
    p.add_argument("--grace", type=_seconds, default=10.0,
                   help="after a lost lease, seconds between SIGTERM and SIGKILL (default 10)")  # fmt: skip


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """For ``lock``, split the arguments at the first ``--``: (lockstep's, CMD) — argparse
    alone would read CMD's options as its own. Other commands: (argv, None)."""
    args = list(argv)
    if not args or args[0] != "lock":
        return args, None
    if "--" not in args:
        return args, []
    cut = args.index("--")
    return args[:cut], args[cut + 1 :]


def run(args: argparse.Namespace, command: list[str]) -> int:
    """Run ``lockstep lock``; errors are turned into exit statuses by ``cli.main``."""
    return asyncio.run(_lock(args, command))


def _say(message: str) -> None:
    print(f"lockstep lock: {message}", file=sys.stderr, flush=True)


class SignalRelay:
    """SIGINT/SIGTERM/SIGHUP: cancel the acquisition first; once CMD runs, forward to its group."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.received: list[int] = []
        self._cancel: asyncio.Future[Any] | None = None
        self._group: int | None = None

    def __enter__(self) -> Self:
        for sig in FORWARDED:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in FORWARDED:
            self._loop.remove_signal_handler(sig)

    def cancel_on_signal(self, future: asyncio.Future[Any]) -> None:
        self._cancel = future

    def forward_to(self, group: int) -> None:
        self._cancel, self._group = None, group

    def _on_signal(self, sig: int) -> None:
        self.received.append(sig)
        if self._group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # CMD's group is gone
                os.killpg(self._group, sig)
        elif self._cancel is not None:
            self._cancel.cancel()


async def _acquire(coord: Coordinator, stack: contextlib.AsyncExitStack, args: argparse.Namespace) -> list[Any]:
    """The lock, then the ports, each held on ``stack``; the ports get what is left of --wait."""
    started = time.monotonic()
    leases: list[Any] = [await stack.enter_async_context(coord.lock(args.name, ttl=args.ttl, wait=args.wait))]
    if args.ports:
        left = max(0.0, args.wait - (time.monotonic() - started))
        ports = coord.ports(args.ports, ttl=args.ttl, wait=left)
        leases.append(await stack.enter_async_context(ports))
    return leases


def _child_env(name: str, leases: list[Any]) -> dict[str, str]:
    env = dict(os.environ, LOCKSTEP_LOCK=name, LOCKSTEP_FENCE=str(leases[0].fence))
    env.pop("LOCKSTEP_PORTS", None)  # never pass on an outer run's ports as ours
    if len(leases) > 1:
        env["LOCKSTEP_PORTS"] = ",".join(str(p) for p in leases[1].ports)
    return env


async def _lock(args: argparse.Namespace, command: list[str]) -> int:
    coord = connect(args.url, namespace=args.namespace)
    loop = asyncio.get_running_loop()
    with SignalRelay(loop) as relay:
        async with coord, contextlib.AsyncExitStack() as stack:
            acquiring = asyncio.ensure_future(_acquire(coord, stack, args))
            relay.cancel_on_signal(acquiring)
            try:
                leases = await acquiring
            except (LockTimeout, ClaimConflict) as exc:
                _say(f"{exc} (exit {EXIT_BUSY}; `lockstep status` shows who holds what)")
                return EXIT_BUSY
            except asyncio.CancelledError:
                if not relay.received:
                    raise
                _say(f"interrupted by signal {relay.received[0]} while waiting for lock {args.name!r}")
                return 128 + relay.received[0]
            status = await _run_holding(command, leases, args, relay)
            lost = [lease for lease in leases if lease.lost.is_set()]
            if status is not None and lost:
                _say(f"{command[0]} ended (status {status}), but {_describe(lost[0])} was lost before it did: "
                     f"{lost[0].lost.reason}; exit {EXIT_LEASE_LOST}")  # fmt: skip
            try:
                await stack.aclose()
            except LeaseLost:
                pass  # reported above
            except BackendError as exc:
                _say(f"release not confirmed yet ({exc}); it is retried until the lease's TTL passes")
            if lost or status is None:
                return EXIT_LEASE_LOST
            return status


def _describe(lease: Any) -> str:
    if hasattr(lease, "ports"):
        return f"the lease on port(s) {', '.join(map(str, lease.ports))}"
    return f"{lease.kind} {lease.name!r} (fence {lease.fence})"


async def _run_holding(
    command: list[str], leases: list[Any], args: argparse.Namespace, relay: SignalRelay
) -> int | None:
    """Run CMD until it exits (its status) or a lease is lost (None, CMD stopped)."""
    try:
        proc = await asyncio.create_subprocess_exec(*command, env=_child_env(args.name, leases), process_group=0)
    except FileNotFoundError as exc:
        _say(f"cannot run {command[0]!r}: {exc.strerror}")
        return EXIT_NOT_FOUND
    except OSError as exc:
        _say(f"cannot run {command[0]!r}: {exc.strerror or exc}")
        return EXIT_CANNOT_EXECUTE
    relay.forward_to(proc.pid)
    exited = asyncio.ensure_future(proc.wait())
    watches = [asyncio.ensure_future(_lost(lease)) for lease in leases]
    terminal = _hand_terminal_to(proc.pid)
    try:
        await asyncio.wait([exited, *watches], return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            code = exited.result()
            return 128 - code if code < 0 else code
        lease = next(lease for lease in leases if lease.lost.is_set())
        _say(f"lost {_describe(lease)} while {command[0]} ran: {lease.lost.reason}; stopping it "
             f"(SIGTERM, SIGKILL after {args.grace:g} s); exit {EXIT_LEASE_LOST}")  # fmt: skip
        await _stop_group(proc.pid, exited, args.grace)
        return None
    finally:
        for watch in watches:
            watch.cancel()
        if terminal is not None:
            _take_terminal_back(terminal)


def _hand_terminal_to(group: int) -> int | None:
    """Make CMD's group the terminal's foreground (so it can read it, and Ctrl-C reaches
    it directly) when ``lockstep`` is in the foreground; returns the terminal's fd."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
            return None
        os.tcsetpgrp(fd, group)
    except (OSError, ValueError, AttributeError):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGCONT)  # had it read the terminal before, it was stopped
    return fd


def _take_terminal_back(fd: int) -> None:
    # A background group may only take the terminal with SIGTTOU blocked.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, os.getpgrp())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


async def _lost(lease: Any) -> None:
    await lease.lost


async def _stop_group(group: int, leader_exited: asyncio.Future[int], grace: float) -> None:
    """SIGTERM the process group; SIGKILL what is left of it once ``grace`` s have passed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    await asyncio.wait([leader_exited], timeout=grace)
    while time.monotonic() < deadline and _group_alive(group):
        await asyncio.sleep(0.05)  # the leader is gone; its children may still be exiting
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    await leader_exited


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
