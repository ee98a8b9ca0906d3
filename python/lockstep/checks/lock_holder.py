"""A process that takes a lock and holds it until killed, for the crashed-holder check row.

    python -m lockstep.checks.lock_holder [--url URL] --namespace NS --name LOCK --ttl S

Prints one line, ``held <fence>``, once the lock is held, then sleeps (its renewer
keeps the lease alive) until it is killed. Exit status 1, with the error on stderr,
if the lock cannot be taken within ``--wait`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..coordinator import connect
from ..errors import LockstepError


async def hold(args: argparse.Namespace) -> int:
    try:
        async with connect(args.url, namespace=args.namespace, member="crash-holder") as coord:
            lease = await coord.lock(args.name, ttl=args.ttl, wait=args.wait)
            print(f"held {lease.fence}", flush=True)
            await asyncio.Event().wait()  # until killed
    except LockstepError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lockstep.checks.lock_holder")
    p.add_argument("--url", default=None, help="default: resolved as by lockstep.connect()")
    p.add_argument("--namespace", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--ttl", type=float, required=True)
    p.add_argument("--wait", type=float, default=10.0)
    return asyncio.run(hold(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
