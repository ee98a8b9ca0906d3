"""An agent worker for the membership chaos tests: one process, one coordinator, JSON lines out.

    python -m tests.chaos.workers.agent_worker MODE --url URL --namespace NS ...

Modes:

* ``sprint``: a sprint's worth of agents driven by stdin lines: ``join EPIC`` registers
  ``--agents`` agents named ``EPIC-<prefix>-<i>``, each writing ``--keys`` owned keys of
  ``--state-bytes`` (event ``ready``); ``crash K`` abandons K of them, as a crash does
  (``crashed``); ``leave`` deregisters the rest (``left``); ``exit`` closes and exits.
  With ``--join EPIC`` it joins at once.
* ``reaper``: connects, says ``ready``, sweeps when a line comes (``swept``: the agents it
  reaped and the keys it deleted), then exits.
* ``writer``: one agent that heartbeats and writes ``w<n>`` every 50 ms, reporting each
  outcome and when it was sent (``heartbeat``, ``write``); once it sees Reaped it also tries one write that
  bypasses the local check (``server-put``: was it accepted by the backend?) and ends
  with ``done``.

Events carry ``t`` = ``time.monotonic()`` (comparable across processes of one host).
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
from lockstep.errors import LockstepError, Reaped
from lockstep.membership import Agent


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), "pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


async def read_line() -> str:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def join(coord: lockstep.Coordinator, args: argparse.Namespace, epic: str) -> list[Agent]:
    agents = await asyncio.gather(*(
        coord.agent(f"{epic}-{args.prefix}-{i}", ttl=args.ttl, interval=args.interval) for i in range(args.agents)
    ))  # fmt: skip
    for agent in agents:
        for k in range(args.keys):
            await agent.put(f"state-{k}", os.urandom(args.state_bytes))
    emit("ready", agents={a.id: a.incarnation for a in agents})
    return list(agents)


async def sprint(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    agents: list[Agent] = await join(coord, args, args.join) if args.join else []
    while True:
        command, _, arg = (await read_line()).partition(" ")
        if command == "join":
            agents = await join(coord, args, arg)
        elif command == "crash":
            crashed = agents[: int(arg)]
            for agent in crashed:
                agent.abandon()
            agents = agents[int(arg) :]
            emit("crashed", agents=[a.id for a in crashed])
        elif command == "leave":
            for agent in agents:
                await agent.leave()
            emit("left", agents=[a.id for a in agents])
            agents = []
        elif command in ("exit", ""):
            return


async def writer(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    me = await coord.agent(f"{args.prefix}-writer", ttl=args.ttl, interval=args.interval)
    emit("ready", agents={me.id: me.incarnation})
    n = 0
    reaped = False
    while not reaped:
        await asyncio.sleep(0.05)
        sent = time.monotonic()
        try:
            await me.heartbeat()
            emit("heartbeat", sent=sent, ok=True)
        except Reaped as exc:
            emit("heartbeat", sent=sent, ok=False, error="Reaped", detail=str(exc))
            reaped = True
        except LockstepError as exc:
            emit("heartbeat", sent=sent, ok=False, error=type(exc).__name__, detail=str(exc))
        n += 1
        sent = time.monotonic()
        try:
            await me.put(f"w{n}", str(n).encode())
            emit("write", sent=sent, n=n, ok=True)
        except Reaped as exc:
            emit("write", sent=sent, n=n, ok=False, error="Reaped", detail=str(exc))
            reaped = True
        except LockstepError as exc:
            emit("write", sent=sent, n=n, ok=False, error=type(exc).__name__, detail=str(exc))
    # Past the local check: does the backend itself refuse this incarnation's write?
    n += 1
    accepted = await me.store.put(me.id, me.incarnation, me.key(f"w{n}"), b"late", None, timeout=5)
    emit("server-put", n=n, accepted=accepted)
    emit("done", reason=me.reaped.reason)
    me.abandon()
    await read_line()


async def reaper(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    await coord.members()  # connected and warmed up before the signal to go
    emit("ready")
    await read_line()
    report = await coord.sweep(threshold=args.threshold)
    emit("swept", agents=report.agents, keys_deleted=report.keys_deleted)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["sprint", "writer", "reaper"])
    p.add_argument("--url", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--prefix", default=f"p{os.getpid()}")
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--keys", type=int, default=1)
    p.add_argument("--state-bytes", type=int, default=1024)
    p.add_argument("--ttl", type=float, default=1.0)
    p.add_argument("--interval", type=float, default=0.25)
    p.add_argument("--join", default="")
    p.add_argument("--threshold", type=float, default=None)
    args = p.parse_args()
    async with lockstep.connect(args.url, namespace=args.namespace, timeout=5) as coord:
        await {"sprint": sprint, "writer": writer, "reaper": reaper}[args.mode](coord, args)


if __name__ == "__main__":
    asyncio.run(main())
