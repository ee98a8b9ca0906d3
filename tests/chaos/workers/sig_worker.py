"""A signals worker for the cross-process and chaos tests: one process, JSON lines on stdout.

    python -m tests.chaos.workers.sig_worker MODE --url URL --namespace NS --me ID ...

Modes:

* ``wait``: wait for signal ``--name`` of ``--source`` (``--timeout``); event ``got``
  (data, generation, sender) or ``timeout``.
* ``ack``: wait for that signal, then acknowledge it as ``--me`` (signed with ``--secret``
  when given); event ``acked``.
* ``barrier``: register agent ``--me`` (with ``--agent-ttl``), say ``registered``, wait for
  a ``go`` line on stdin (after ``--delay`` seconds more), arrive at barrier ``--name``
  with ``--parties`` (``--timeout``); event ``result`` with the outcome and ``waited``.

Events carry ``t`` = ``time.monotonic()``: comparable across the processes of one host.
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
from lockstep.errors import WaitTimeout


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), "pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return (await reader.readline()).decode().strip()


async def wait(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    signals = coord.signals(poll=args.poll)
    emit("waiting")
    try:
        sig = await signals.wait_signal(args.source, args.name, timeout=args.timeout)
    except WaitTimeout as exc:
        emit("timeout", error=str(exc))
        return
    emit("got", data=sig.data, generation=sig.generation, sender=sig.sender)


async def ack(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    signals = coord.signals(secret=args.secret) if args.secret else coord.signals()
    sig = await signals.wait_signal(args.source, args.name, timeout=args.timeout)
    done = await signals.ack(sig, by=args.me)
    emit("acked", generation=done.generation, signed=done.signed)


async def barrier(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    async with coord.agent(args.me, ttl=args.agent_ttl, interval=min(1.0, args.agent_ttl / 3)):
        emit("registered")
        if await read_line() != "go":
            return
        await asyncio.sleep(args.delay)
        emit("arriving")
        result = await coord.barrier(args.name, args.parties.split(","), timeout=args.timeout, me=args.me)
        emit("result", state=result.state, round=result.round, missing=list(result.missing),
             dead=list(result.dead), arrived=list(result.arrived), waited=result.waited)  # fmt: skip


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["wait", "ack", "barrier"])
    p.add_argument("--url", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--me", required=True)
    p.add_argument("--source", default="")
    p.add_argument("--name", default="sig")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--poll", type=float, default=0.25)
    p.add_argument("--secret", default="")
    p.add_argument("--parties", default="")
    p.add_argument("--agent-ttl", type=float, default=5.0)
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args()
    async with lockstep.connect(args.url, namespace=args.namespace, member=args.me, timeout=5.0) as coord:
        emit("ready")
        await {"wait": wait, "ack": ack, "barrier": barrier}[args.mode](coord, args)
    emit("exit")


if __name__ == "__main__":
    asyncio.run(main())
