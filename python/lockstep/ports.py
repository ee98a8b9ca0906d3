"""Port leases: TCP ports unique across every process on the backend, bindable on this host.

    async with coord.ports(2) as lease:
        lease.ports                    # e.g. [23117, 23118]: bind them now
        lease.fence; lease.lost        # as for any lease

Each port is a resource of kind ``port`` (name: the port number) taken through the
ordinary lease machinery, all ports of a request in one all-or-nothing grant, fenced
and renewed like a lock, freed when the holder dies (by its TTL, or at once on the file
driver). Before a port is asked for it is probe-bound on ``127.0.0.1`` and ``0.0.0.0``
(no ``SO_REUSEADDR``): a port that some process on this host uses, lockstep-aware or
not, is skipped and another one tried. The probes stay bound while the lease is asked
for (so one request never picks a port twice) and are closed before the lease is
handed out, so the caller can bind at once.

**The default range, 20000-29999**, lies below Linux's ephemeral range (32768-60999,
``net.ipv4.ip_local_port_range``), from which the kernel picks ports for outgoing
connections and ``bind(port=0)`` at any moment: a leased port there could be taken by
an unrelated connection between the lease and the caller's bind. It also lies above
the usual defaults of development servers and databases (3000, 5000, 5432, 6379, 8000,
8080, 9000, ...). A port in it that something else does use (MongoDB's 27017, say) fails
its probe and is skipped.

**Waiting.** Ports are picked, not queued for: a port leased by another process is
skipped for another one. Only when no ``count`` ports of the range can be had does the
request wait (polling, 50 ms backing off to 0.5 s) for up to ``wait`` seconds, then raise
:class:`~lockstep.errors.LockTimeout` naming the holders met. IPv4 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import ClaimConflict, InvalidInputError, LockTimeout
from .lease_views import LeaseView, ViewRequest
from .leases import Lease, check_ttl, check_wait
from .leases import request as lease_request

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ["DEFAULT_PORT_RANGE", "MAX_PORTS", "PortLease", "PortsRequest", "check_port_range", "probe_port"]

DEFAULT_PORT_RANGE = (20000, 29999)
MAX_PORTS = 1024  #: most ports one request may lease
LOWEST_PORT = 1024  # below it a bind needs privileges: every probe would fail
PROBE_ADDRESSES = ("127.0.0.1", "0.0.0.0")  # probed, never listened on
POLL_FIRST, POLL_MAX = 0.05, 0.5  # s between passes over an exhausted range


class PortLease(LeaseView):
    """Leased ports (:attr:`ports`, ascending) and the controls of their lease."""

    def __init__(self, lease: Lease, ports: list[int]) -> None:
        super().__init__(lease)
        self.ports = ports

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else ("released" if self.released else "held")
        return f"<PortLease {self.ports} fence={self.fence} {state}>"


def check_port_range(port_range: object) -> tuple[int, int]:
    """``(lo, hi)``, both included, within 1024-65535; InvalidInputError naming the problem."""
    if not isinstance(port_range, tuple | list) or len(port_range) != 2:
        raise InvalidInputError(f"port range must be a pair (lo, hi), got {port_range!r}")
    lo, hi = port_range
    for end in (lo, hi):
        if isinstance(end, bool) or not isinstance(end, int):
            raise InvalidInputError(f"port range ends must be whole numbers, got {port_range!r}")
    if not LOWEST_PORT <= lo <= hi <= 65535:
        raise InvalidInputError(
            f"port range {lo}-{hi} must satisfy {LOWEST_PORT} <= lo <= hi <= 65535 "
            f"(ports below {LOWEST_PORT} need privileges to bind)"
        )
    return lo, hi


def check_count(count: object, port_range: tuple[int, int]) -> int:
    lo, hi = port_range
    size = hi - lo + 1
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PORTS:
        raise InvalidInputError(f"port count must be a whole number from 1 to {MAX_PORTS}, got {count!r}")
    if count > size:
        raise InvalidInputError(f"cannot lease {count} ports from {lo}-{hi}: the range has only {size}")
    return count


def probe_port(port: int) -> socket.socket | None:
    """Bind ``port`` on every probe address; the last socket stays bound (the caller closes
    it), or None if any bind failed: the port is in use on this host."""
    held: socket.socket | None = None
    try:
        for address in PROBE_ADDRESSES:
            if held is not None:
                held.close()
            held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.bind((address, port))
    except OSError:
        if held is not None:
            held.close()
        return None
    return held


def _walk(lo: int, hi: int) -> Iterator[int]:
    """Every port of the range once, from a random start (so concurrent requests spread)."""
    size = hi - lo + 1
    start = random.randrange(size)
    for i in range(size):
        yield lo + (start + i) % size


class PortsRequest(ViewRequest[PortLease]):
    """``await`` it for a held :class:`PortLease`, or ``async with`` it."""

    def __init__(self, coord: Coordinator, count: object, *, port_range: object, ttl: object, wait: object) -> None:
        self._coord = coord
        self.range = check_port_range(port_range)
        self.count = check_count(count, self.range)
        self.ttl, self.wait = check_ttl(ttl), check_wait(wait)

    def __repr__(self) -> str:
        lo, hi = self.range
        return f"<PortsRequest {self.count} in {lo}-{hi} ttl={self.ttl:g} wait={self.wait:g}>"

    async def _acquire(self) -> PortLease:
        deadline = time.monotonic() + self.wait
        pause = POLL_FIRST
        holders: set[str] = set()
        while True:
            found = await self._one_pass(holders)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                lo, hi = self.range
                raise LockTimeout(
                    f"{self.count} port(s) in {lo}-{hi}", sorted(holders), self.wait,
                    "every other port of the range is leased or in use on this host",
                )  # fmt: skip
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    async def _one_pass(self, holders: set[str]) -> PortLease | None:
        """Walk the range once: probe, lease what passed, replace what others hold."""
        probes: dict[int, socket.socket] = {}
        try:
            for port in _walk(*self.range):
                probe = probe_port(port)
                if probe is None:
                    continue
                probes[port] = probe
                if len(probes) < self.count:
                    continue
                chosen = sorted(probes)
                try:
                    lease = await lease_request(
                        self._coord, "port", [str(p) for p in chosen], ttl=self.ttl, wait=0, claim_errors=True
                    )
                except ClaimConflict as conflict:
                    holders.update(conflict.conflicts.values())
                    for name in conflict.conflicts:
                        probes.pop(int(name)).close()
                    continue
                return PortLease(lease, chosen)
            return None
        finally:
            for probe in probes.values():
                with contextlib.suppress(OSError):
                    probe.close()
