"""A messaging worker for the chaos tests: one process, one coordinator, JSON lines on stdout.

    python -m tests.chaos.workers.msg_worker MODE --url URL --namespace NS --channel C ...

Modes:

* ``subscriber``: subscribe, emit ``ready``; emit ``msgs`` (``[sender, seq, n, latency]``
  per message, latency = arrival - the envelope's ts) and ``gap`` events as they arrive. A stdin line ``stall S`` blocks the event
  loop for S seconds (a stuck process, as the server sees it); ``stop`` ends it.
* ``publisher``: publish ``{"n": i}`` (plus ``pad`` bytes) for i in 1..count at ``rate``
  msg/s (``batch`` per call), emit ``done`` with the slowest call and every error.
* ``consumer``: consume the channel in ``group``; emit ``got`` per delivery and ``acked``
  with the ack's answer. With ``--hold-after K`` it stops acking after K deliveries and
  after acking K deliveries it reads one more and holds it and the rest of its batch,
  unacked, emitting ``holding`` (the test then kills it with SIGKILL).

Events carry ``t`` = time.monotonic() (comparable across processes) and ``wall`` = time.time().
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import signal
import sys
import time
from typing import Any

import lockstep
from lockstep.messaging import Delivery, Gap, Message


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "t": time.monotonic(), "wall": time.time(), "pid": os.getpid(), **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def gap_fields(gap: Gap) -> dict[str, Any]:
    return {
        "reason": gap.reason, "detail": gap.detail, "missed": {s: list(map(list, r)) for s, r in gap.missed.items()},
        "count": gap.count, "since": gap.since, "until": gap.until, "ids": list(gap.ids),
    }  # fmt: skip


async def stdin_lines() -> asyncio.Queue[str]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def pump() -> None:
        while line := await reader.readline():
            await queue.put(line.decode().strip())
        await queue.put("stop")

    asyncio.ensure_future(pump())
    return queue


async def exit_with_parent() -> None:
    """The test holds our stdin: at EOF it is gone (even killed), so leave no orphan behind."""
    lines = await stdin_lines()
    while await lines.get() != "stop":
        pass
    os._exit(3)


async def subscriber(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    commands = await stdin_lines()
    async with coord.subscribe(args.channel, max_buffer=args.max_buffer) as sub:
        emit("ready")
        while True:
            try:
                command = commands.get_nowait()
            except asyncio.QueueEmpty:
                command = ""
            if command == "stop":
                emit("stopped", stats=sub.stats)
                return
            if command.startswith("stall"):
                time.sleep(float(command.split()[1]))  # noqa: ASYNC251 -- the point: nothing is read
                emit("stalled")
            batch = await sub.get_batch(5000, timeout=0.05)
            now = time.time()
            msgs = [[m.sender, m.seq, m.data["n"], now - (m.ts or now)] for m in batch if isinstance(m, Message)]
            for item in batch:
                if isinstance(item, Gap):
                    emit("gap", **gap_fields(item))
            for start in range(0, len(msgs), 400):  # lines stay under the reader's 64 KiB limit
                emit("msgs", msgs=msgs[start : start + 400])


async def publisher(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    errors: list[str] = []
    slowest = 0.0
    started = time.monotonic()
    n = 0
    while n < args.count:
        pad = {"pad": "x" * args.pad} if args.pad else {}
        items = [{"n": i, **pad} for i in range(n + 1, min(n + args.batch, args.count) + 1)]
        began = time.monotonic()
        try:
            await coord.publish_many(args.channel, items, timeout=5)
        except lockstep.LockstepError as e:
            errors.append(f"{type(e).__name__}: {e}")
        slowest = max(slowest, time.monotonic() - began)
        n += len(items)
        await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
    emit("done", published=n, slowest=slowest, errors=errors)


async def consumer(coord: lockstep.Coordinator, args: argparse.Namespace) -> None:
    async with coord.consume(
        args.channel, args.group, consumer=args.member, batch=args.batch, idle=args.idle,
        max_deliveries=args.max_deliveries,
    ) as q:  # fmt: skip
        emit("ready")
        acked = 0
        while True:
            try:
                item = await q.get(timeout=0.5)
            except lockstep.Timeout:
                continue
            except lockstep.BackendUnavailable as e:
                emit("unavailable", error=str(e))
                continue
            except lockstep.LockstepError as e:  # anything else is a bug the test must see
                emit("error", error=f"{type(e).__name__}: {e}")
                raise
            if isinstance(item, Gap):
                emit("gap", **gap_fields(item))
                continue
            assert isinstance(item, Delivery)
            emit("got", id=item.id, n=item.message.data["n"], count=item.delivery_count)
            if args.hold_after and acked >= args.hold_after:
                # read, never acked: this entry (and the rest of the batch read with it)
                # stays pending for this consumer until another reclaims it
                emit("holding", id=item.id)
                await asyncio.sleep(3600)
            if args.work:
                await asyncio.sleep(args.work)
            failed = 0
            while True:
                try:
                    ok: bool | None = await item.ack()
                    break
                except (lockstep.Timeout, lockstep.BackendUnavailable):
                    failed += 1  # the ack may have landed; a retry then says False
                    await asyncio.sleep(0.1 * failed)
            if failed and not ok:
                ok = None  # acked by the lost attempt, or by a consumer it was redelivered to
            acked += 1
            emit("acked", id=item.id, n=item.message.data["n"], ok=ok, failed_attempts=failed)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["subscriber", "publisher", "consumer"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--member", default=None)
    parser.add_argument("--channel", default="chaos")
    parser.add_argument("--group", default="workers")
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--idle", type=float, default=1.0)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--hold-after", type=int, default=0)
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--max-buffer", type=int, default=50_000)
    parser.add_argument("--max-len", type=int, default=0)
    parser.add_argument("--pad", type=int, default=0, help="bytes of padding per published message")
    args = parser.parse_args()
    async with lockstep.connect(args.url, namespace=args.namespace, member=args.member, timeout=5) as coord:
        if args.max_len:
            coord.bind_channel(args.channel, max_len=args.max_len)
        if args.mode != "subscriber":  # the subscriber reads stdin for its commands (and EOF)
            asyncio.ensure_future(exit_with_parent())
        await {"subscriber": subscriber, "publisher": publisher, "consumer": consumer}[args.mode](coord, args)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` dumps every thread's stack to stderr
    asyncio.run(main())
