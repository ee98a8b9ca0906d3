"""A sprint for the seed's test-lock test: rounds of (2 ports, bind them, test lock, run).

    python -m tests.chaos.workers.sprint_worker --url URL --namespace NS --sprint ID --rounds N

Emits ``ready`` and waits for ``go`` on stdin, so every sprint starts at once. Each round
leases ports (``coord.ports``) and listens on them at once (so up to every sprint's ports
are bound side by side), then waits for the test slot
(:class:`lockstep.cfn.TestLockCoordinator`), "runs tests" for ``--hold`` s, and lets go.
Events (JSON lines, ``t`` = ``time.monotonic()``, comparable across the host's processes):
``ports`` (the ports and whether each bind failed with EADDRINUSE), ``window`` (start and
end of the run under the lock), ``released_ports``, ``done``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import lockstep
from lockstep.cfn import TestLockCoordinator
from lockstep.checks.leases import listen_on

from tests.chaos.workers.lease_worker import emit


async def rounds(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    test_lock = TestLockCoordinator(coord, ttl=5.0)
    for n in range(args.rounds):
        lease = await coord.ports(args.ports, ttl=5.0, wait=10.0)
        socks = [listen_on(p) for p in lease.ports]
        emit("ports", round=n, ports=lease.ports, in_use=[p for p, s in zip(lease.ports, socks) if s is None])
        if not await test_lock.wait_for_test_slot(args.sprint, 60.0):
            emit("no_slot", round=n)
            return
        start = time.monotonic()
        await asyncio.sleep(args.hold)
        end = time.monotonic()
        await test_lock.release_test_lock(args.sprint)
        emit("window", round=n, start=start, end=end)
        sent = time.monotonic()  # the ports are ours until their release is sent
        for s in socks:
            if s is not None:
                s.close()
        await lease.release()
        emit("released_ports", round=n, ports=lease.ports, sent=sent)
    emit("done")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--sprint", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ports", type=int, default=2)
    parser.add_argument("--hold", type=float, default=0.02)
    args = parser.parse_args()
    async with lockstep.connect(args.url, namespace=args.namespace, member=args.sprint, timeout=5.0) as coord:
        emit("ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await rounds(coord, args)


if __name__ == "__main__":
    asyncio.run(main())
