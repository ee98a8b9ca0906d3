"""A lease worker for the chaos tests: one process, one coordinator, JSON lines on stdout.

    python -m tests.chaos.workers.lease_worker MODE --url URL --namespace NS --member M ...

Modes: ``rounds`` (acquire, hold, release N times), ``hold`` (acquire once and hold,
renewed, until killed), ``paused`` (acquire, wait for a line on stdin, then try a
fenced write and report whether the lease was seen lost). Every event is one JSON
line with ``t`` = ``time.monotonic()`` (CLOCK_MONOTONIC: comparable across the
processes of one host).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import lockstep
from lockstep.errors import LeaseLost


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "t": time.monotonic(), "pid": os.getpid(), **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def take(coord: lockstep.Coordinator, args: argparse.Namespace) -> lockstep.leases.Lease:
    if args.slots > 1:
        return await coord.semaphore(args.name, args.slots, ttl=args.ttl, wait=args.wait)
    return await coord.lock(args.name, ttl=args.ttl, wait=args.wait)


async def rounds(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    for _ in range(args.rounds):
        lease = await take(coord, args)
        emit("acquired", fence=lease.fence, deadline=lease.deadline)
        if args.write:
            await lease.fenced_set("last", str(lease.fence).encode())
        await asyncio.sleep(args.hold)
        sent = time.monotonic()  # believed held until the release is sent
        # said BEFORE the release: killed after it but before "released", the round must not
        # count as held until the kill (the next holder may already have it by then)
        emit("releasing", fence=lease.fence, sent=sent)
        ok = await lease.release()
        emit("released", fence=lease.fence, sent=sent, ok=ok)
    emit("done")


async def hold(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    lease = await take(coord, args)
    emit("acquired", fence=lease.fence, deadline=lease.deadline)
    await lease.lost
    emit("lost", fence=lease.fence, reason=lease.lost.reason)


async def paused(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    lease = await take(coord, args)
    emit("acquired", fence=lease.fence, deadline=lease.deadline)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    emit("resumed", deadline=lease.deadline)
    try:
        await lease.fenced_set("result", b"paused holder")
        emit("write", ok=True)
    except LeaseLost as exc:
        emit("write", ok=False, error=str(exc))
    await asyncio.wait_for(lease.lost, 2.0)
    emit("state", lost=lease.lost.is_set(), reason=lease.lost.reason, deadline=lease.deadline)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["rounds", "hold", "paused"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--member", required=True)
    parser.add_argument("--name", default="chaos")
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hold", type=float, default=0.005)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    async with lockstep.connect(args.url, namespace=args.namespace, member=args.member, timeout=5.0) as coord:
        emit("ready")
        await {"rounds": rounds, "hold": hold, "paused": paused}[args.mode](coord, args)


if __name__ == "__main__":
    asyncio.run(main())
