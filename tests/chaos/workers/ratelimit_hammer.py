"""A rate-limit worker for scenario 15: many threads hammering one limit key through a
small blocking facade; one JSON line on stdout when done.

    python -m tests.chaos.workers.ratelimit_hammer --url URL --namespace NS --name N \\
        --algorithm gcra --rate 50/2s --threads 25 [--start-at T0 --until T1]

Without ``--start-at``, the worker prints ``{"event": "ready"}`` once connected and reads
``T0 T1`` from a line on stdin, so a test can start many workers and only then fix the
start (a busy box may take seconds to start two dozen interpreters).

The process runs one coordinator on an event loop of its own thread; each of the
``--threads`` threads calls the limiter through :class:`BlockingLimiter` (what a sync
script would use: ``run_coroutine_threadsafe`` and wait), so 25 threads really do ask
at the same time. Threads wait until ``--start-at`` (Unix seconds), then ask for one
unit at a time until ``--until``; a refusal is slept off for exactly its ``retry_after``,
so every refused thread knocks again at the moment the store said a unit frees up: the
whole crowd at once (the hardest case for atomicity), and with the least lag (a unit
admitted late is lost for good under GCRA with burst 1, so lag would eat into the
scenario's lower bound). With ``--early``, a refusal is slept off for a random 50-100 %
of its ``retry_after`` instead: many more requests (through the fault proxy, requests
are what the faults hit), each refused until the unit really frees up.

Every admission is reported by ``Decision.at``, the deciding clock (Redis ``TIME``,
the host clock on SQLite), so the checker counts per aligned window exactly as the
store decided. Errors (fail closed: a lost reply, a timeout) are counted by kind and
never admitted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from typing import Any

import lockstep
from lockstep import Decision, RateLimiter


class BlockingLimiter:
    """A limiter driven from any thread: its coroutines run on one loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limiter: RateLimiter) -> None:
        self.loop = loop
        self.limiter = limiter

    def acquire(self, key: str) -> Decision:
        return asyncio.run_coroutine_threadsafe(self.limiter.acquire(key), self.loop).result()


def hammer(limiter: BlockingLimiter, args: argparse.Namespace, admitted: list[float], errors: Counter[str]) -> int:
    time.sleep(max(0.0, args.start_at - time.time()))
    count = 0
    while (now := time.time()) < args.until:
        count += 1
        try:
            decision = limiter.acquire("k")
        except lockstep.BackendError as exc:
            errors[type(exc).__name__] += 1
            continue
        if decision.allowed:
            admitted.append(decision.at)
        else:
            wait = decision.retry_after * (random.uniform(0.5, 1.0) if args.early else 1.0)
            time.sleep(max(0.0, min(wait, args.until - now)))
    return count


async def open_coordinator(args: argparse.Namespace) -> lockstep.Coordinator:
    """Connect, trying again while the proxy loses the handshake's replies (connecting is idempotent)."""
    give_up = time.monotonic() + 10
    while True:
        coord = lockstep.connect(args.url, namespace=args.namespace, timeout=args.timeout)
        try:
            return await coord.open()
        except lockstep.BackendError:
            if time.monotonic() > give_up:
                raise


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--url", "--namespace", "--name", "--algorithm", "--rate"):
        parser.add_argument(name, required=True)
    parser.add_argument("--threads", type=int, default=25)
    parser.add_argument("--start-at", type=float)
    parser.add_argument("--until", type=float)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--early", action="store_true", help="knock again before retry_after")
    args = parser.parse_args()
    # 26 threads share this process's GIL; at the default 5 ms switch interval a thread woken
    # when a unit frees up can wait that long for it, and under GCRA a late unit is lost for
    # good. The scenario measures the store, not the GIL's hand-over.
    sys.setswitchinterval(0.0005)

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="loop", daemon=True).start()
    coord = asyncio.run_coroutine_threadsafe(open_coordinator(args), loop).result()
    limiter = BlockingLimiter(loop, coord.rate_limit(args.name, args.rate, algorithm=args.algorithm))
    if args.start_at is None:
        sys.stdout.write(json.dumps({"event": "ready", "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        args.start_at, args.until = (float(v) for v in sys.stdin.readline().split())

    admitted: list[float] = []
    errors: Counter[str] = Counter()
    requests: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            mine: Counter[str] = Counter()
            count = hammer(limiter, args, admitted, mine)
            with lock:
                errors.update(mine)
                requests.append(count)
        except BaseException as exc:  # noqa: BLE001 - reported, so the test fails with the reason
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, name=f"hammer-{i}") for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    asyncio.run_coroutine_threadsafe(coord.close(), loop).result()
    report: dict[str, Any] = {
        "event": "done",
        "pid": os.getpid(),
        "admitted": admitted,
        "errors": dict(errors),
        "requests": sum(requests),
        "failures": failures,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
