"""One sprint in its own process: ``python -m lockstep.epic.worker --url ... --spec JSON``.

Protocol with the runner (:mod:`lockstep.epic.runner`): the worker connects, emits
``{"event": "ready"}`` and waits for a line on stdin: ``go`` runs the sprint, anything
else (or EOF) ends the process without running it. Every event is one JSON line on
stdout. Exit status: 0 done, 1 failed (a ``failed`` event says why), 2 bad arguments.
SIGTERM ends the sprint cleanly: its agent leaves and its leases are released.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from ..coordinator import connect
from ..errors import LockstepError
from .sprint import SprintFailed, SprintOptions, load_spec, run_sprint


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), "pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


async def _read_line() -> str:
    """One line of stdin, read by the event loop (no thread left blocked on it at exit)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return (await reader.readline()).decode("utf-8", "replace").strip()


async def main_async(args: argparse.Namespace) -> int:
    spec = load_spec(json.loads(args.spec))
    opts = SprintOptions(time_scale=args.time_scale, dep_wait=args.dep_wait, lock_wait=args.lock_wait,
                         agent_ttl=args.agent_ttl, heartbeat=args.heartbeat, lease_ttl=args.lease_ttl)  # fmt: skip
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        async with connect(args.url, namespace=args.namespace, member=spec.id, timeout=args.call_timeout) as coord:

            async def ready() -> bool:
                emit("ready")
                return await _read_line() == "go"

            await run_sprint(coord, spec, opts, emit, ready)
    except SprintFailed:
        return 1
    except asyncio.CancelledError:
        emit("failed", reason="stopped by the runner (SIGTERM)")
        return 1
    except LockstepError as exc:
        emit("failed", reason=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lockstep.epic.worker")
    p.add_argument("--url", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--spec", required=True, help="the sprint, as JSON")
    p.add_argument("--time-scale", type=float, required=True)
    p.add_argument("--dep-wait", type=float, required=True)
    p.add_argument("--lock-wait", type=float, required=True)
    p.add_argument("--agent-ttl", type=float, default=10.0)
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--call-timeout", type=float, default=5.0)
    p.add_argument("--lease-ttl", type=float, default=5.0)
    return asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
