"""Is that process still alive? Local process identity from ``/proc``, pid reuse included.

An agent registers with its pid *and* its process start time (field 22 of
``/proc/PID/stat``: clock ticks since boot), so a sweep on the same host can tell a
dead agent at once, without waiting for its heartbeat to go stale, and a pid the
kernel has since handed to another process is never mistaken for it: the start time
would differ.

"The same host" must mean the same kernel *and* the same pid namespace: two
containers on one machine share a boot id but not their pids. :func:`host_id` is the
kernel's boot id plus the inode of this process's pid namespace; a record whose host
id differs is never judged by pid.

Every answer is three-valued where it matters: ``is_alive`` returns ``None`` when it
cannot tell (no ``/proc``, ``hidepid``), and ``None`` never counts as dead.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass

__all__ = ["ProcessId", "boot_time", "current", "host_id", "hostname", "is_alive", "start_ticks", "started_at"]

PROC = "/proc"
DEAD_STATES = frozenset("ZX")  # zombie (killed, not yet waited for) and dead


@dataclass(frozen=True)
class ProcessId:
    """One process for as long as it lives: its pid and its start time in clock ticks since boot."""

    pid: int
    start: str  #: decimal ticks (a string, so "" can mean unknown without a sentinel number)

    def __str__(self) -> str:
        return f"{self.pid}:{self.start}"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None if unreadable or absent."""
    text = _read(f"{PROC}/{pid}/stat")
    if text is None:
        return None
    # Field 2 is the command name in parentheses and may itself contain spaces and ')'.
    _, sep, rest = text.rpartition(")")
    if not sep:
        return None
    fields = rest.split()
    return fields if len(fields) >= 20 else None


def start_ticks(pid: int) -> str | None:
    """The start time of a running process (clock ticks since boot), or None if it is not running."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    fields = _stat_fields(pid)
    if fields is None or fields[0] in DEAD_STATES:
        return None
    return fields[19]  # field 22 of the full line


def proc_available() -> bool:
    return os.path.isdir(f"{PROC}/self") and _stat_fields(os.getpid()) is not None


def is_alive(pid: int, start: str) -> bool | None:
    """True if that very process runs; False if it provably does not; None if unknowable here.

    A zombie counts as dead (it was killed and only waits for its parent to reap it), and
    a running pid with another start time is another process: the recorded one is dead.
    """
    if not proc_available() or not start:
        return None
    if os.path.exists(f"{PROC}/{pid}"):
        fields = _stat_fields(pid)
        if fields is None:
            return None  # exists but unreadable (hidepid): cannot tell
        return fields[0] not in DEAD_STATES and fields[19] == start
    return False


def current() -> ProcessId:
    """This process (cached per pid, so a forked child gets its own)."""
    return _current(os.getpid())


@functools.cache
def _current(pid: int) -> ProcessId:
    return ProcessId(pid, start_ticks(pid) or "")


@functools.cache
def host_id() -> str:
    """This kernel and pid namespace: ``<boot id>/<pid namespace inode>``, or "" if unknown."""
    boot = (_read(f"{PROC}/sys/kernel/random/boot_id") or "").strip()
    try:
        pidns = os.readlink(f"{PROC}/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        pidns = ""
    inode = pidns.partition("[")[2].rstrip("]")
    if not boot or not inode:
        return ""
    return f"{boot}/{inode}"


@functools.cache
def hostname() -> str:
    return socket.gethostname()


@functools.cache
def boot_time() -> float | None:
    """When the kernel booted, Unix seconds (``btime`` of /proc/stat)."""
    for line in (_read(f"{PROC}/stat") or "").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return None


def started_at(start: str) -> float | None:
    """Unix seconds at which a process with these start ticks began, when known."""
    btime = boot_time()
    if btime is None or not start.isdigit():
        return None
    return btime + int(start) / os.sysconf("SC_CLK_TCK")
