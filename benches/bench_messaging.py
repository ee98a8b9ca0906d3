"""Messaging: lockstep against what a user would otherwise write, measured in the same run.

    .venv/bin/pytest benches/bench_messaging.py

Every figure is messages per second (or latency) over real sockets to a redis-server
started here on loopback, with the seed's ~100-byte JSON objects. Each benchmark runs
whole rounds (``benchmark.pedantic``) after one untimed warm-up round per contender (see
``warm_up``); ``test_zz_report`` prints the medians side by
side with the issue's targets. Benchmarks are not timed tests: they check the messages
arrived intact, never that they were fast. On a shared box the load of other processes moves
between tests, so each baseline round of 1, 2 and 4 also runs right after a lockstep round,
and the report gives the median ratio of those back-to-back pairs beside that of the medians
(the pairs' lockstep rounds count in lockstep's median as well).

1. pub/sub, one publisher to one subscriber, delivered/s: lockstep (``publish_many`` +
   a subscription, data decoded) vs redis-py (pipelined PUBLISH + ``PubSub.get_message``,
   ``json.loads``) vs a raw-socket loop (``PUBLISH`` buffers; the subscriber's reads parsed
   in bulk by ``RespParser``, payloads left undecoded). Targets: >= 10x redis-py,
   >= 1/2 raw. All three keep at most ``WINDOW`` messages in flight.
1b. the same with each contender's publisher in a child process (agents are processes; in 1
   lockstep's one process both encodes and decodes every message, the raw loop neither):
   lockstep vs the raw loop, reported beside 1, whose figures the target is judged on.
2. publish only: lockstep ``publish_many`` vs ``redis-benchmark -P 16`` PUBLISH: >= 1/2.
3. latency at a steady 1 K and 10 K msg/s: p50 and p99 (targets p99 <= 2 ms and 5 ms).
4. redis+streams produce + consume + ack/s vs a redis-py XADD / XREADGROUP / XACK loop: >= 5x,
   and vs a raw-socket loop (the server's own limit), on two servers: Debian's stock config
   (``appendonly no``, where PEERS.md measured the redis-py loop) and the durable one
   (``appendonly everysec``, where the AOF's extra XCLAIM per read entry makes the server the
   limit for any client; the raw loop shows by how much). lockstep publishes, reads and acks concurrently (acks in the background, two batches
   at most, as a consumer keeping up with a busy stream would; ``ack_all``: one XACK per
   batch, like the baseline's); redis-py runs the loop PEERS.md measured (pipelined XADD,
   XREADGROUP, XACK, 256 at a time).
5. file driver, delivered/s between two processes (>= 50 K msg/s), and the p99 latency of
   a subscriber in another process at 1 K msg/s (<= 10 ms).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lockstep
from lockstep import _core
from lockstep.messaging import Delivery, Message

from tests.support.redis_server import RedisServer

PUBSUB_N = 100_000
PUBLISH_N = 200_000
STREAMS_N = 50_000
FILE_N = 100_000
BATCH = 1000
WINDOW = 20_000
RESULTS: dict[str, list[float]] = {}


def load_average() -> str:
    """The box's 1/5/15-minute load: other processes' share of the 2 cores these figures need."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


LOAD_AT_START = load_average()


def seed_message(i: int) -> dict[str, Any]:
    """The seed's small JSON object: ~100 bytes encoded."""
    return {"id": i, "timestamp": 1700000000.123 + i / 1000, "channel": "sprint:coordination", "event": "interface_ready"}


ITEMS = [seed_message(i) for i in range(BATCH)]
PAYLOADS = [json.dumps(m).encode() for m in ITEMS]


_WARMING = False  # while True, record() keeps nothing (see warm_up)


def record(name: str, value: float) -> float:
    if not _WARMING:
        RESULTS.setdefault(name, []).append(value)
    return value


def warm_up(*fns: Callable[[], float]) -> None:
    """One untimed, unrecorded round of each contender first. The first round in a process
    pays once for what a long-running agent pays once too (the heap growing to a window of
    messages, first-use setup): lockstep's first pub/sub round here is ~15% slower than the
    next ones. Every contender gets the same warm-up."""
    global _WARMING
    _WARMING = True
    try:
        for fn in fns:
            fn()
    finally:
        _WARMING = False


def median(name: str) -> float:
    return statistics.median(RESULTS[name]) if RESULTS.get(name) else float("nan")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("bench-redis"), appendonly="everysec") as srv:
        yield srv


def run_rounds(benchmark: Any, fn: Callable[[], float], rounds: int = 3) -> None:
    warm_up(fn)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


def run_paired(
    benchmark: Any, baseline: Callable[[], float], lockstep_run: Callable[[], float], ratio: str, rounds: int = 3
) -> None:
    """Rounds of ``baseline`` (timed, recorded by it), each right after an untimed lockstep
    round (pedantic's setup) whose figure over the baseline's is recorded as ``ratio``. On a
    shared box other processes' load moves between tests; a back-to-back pair sees the same."""
    warm_up(lockstep_run, baseline)
    before: list[float] = []

    def run() -> float:
        value = baseline()
        record(ratio, before[-1] / value)
        return value

    benchmark.pedantic(run, setup=lambda: before.append(lockstep_run()), rounds=rounds, iterations=1, warmup_rounds=0)


# -- 1. pub/sub delivered/s ------------------------------------------------------------------
async def lockstep_pubsub(url: str) -> float:
    async with lockstep.connect(url, namespace="bench") as pub, lockstep.connect(url, namespace="bench") as subc:
        async with subc.subscribe("bench", max_buffer=4 * WINDOW) as sub:
            got = sent = 0
            futures = []
            started = time.perf_counter()
            while got < PUBSUB_N:
                while sent < PUBSUB_N and sent - got < WINDOW:
                    futures.append(pub.messaging.publish_many("bench", ITEMS, timeout=10))
                    sent += BATCH
                batch = await sub.get_batch(WINDOW, timeout=5)
                assert batch and isinstance(batch[-1], Message), batch[-1:]
                got += len(batch)
            elapsed = time.perf_counter() - started
            await asyncio.gather(*futures)
    assert batch[-1].data == ITEMS[-1]
    return PUBSUB_N / elapsed


async def redispy_pubsub(port: int) -> float:
    sub_client, pub_client = aioredis.Redis(port=port), aioredis.Redis(port=port)
    pubsub = sub_client.pubsub()
    await pubsub.subscribe("bench")
    while (await pubsub.get_message(timeout=1)) is None:
        pass  # the subscribe confirmation
    got = sent = 0
    window_open = asyncio.Event()
    window_open.set()

    async def publisher() -> None:
        nonlocal sent
        while sent < PUBSUB_N:
            await window_open.wait()
            pipe = pub_client.pipeline(transaction=False)
            for payload in PAYLOADS:
                pipe.publish("bench", payload)
            await pipe.execute()
            sent += BATCH
            if sent - got >= WINDOW:
                window_open.clear()

    started = time.perf_counter()
    task = asyncio.ensure_future(publisher())
    last = None
    while got < PUBSUB_N:
        message = await pubsub.get_message(timeout=5)
        if message is not None and message["type"] == "message":
            last = json.loads(message["data"])
            got += 1
            if sent - got < WINDOW:
                window_open.set()
    elapsed = time.perf_counter() - started
    await task
    await pubsub.aclose()
    await sub_client.aclose()
    await pub_client.aclose()
    assert last == ITEMS[-1]
    return PUBSUB_N / elapsed


def raw_pubsub(port: int) -> float:
    """The server's own limit, as seen from Python: bulk writes and bulk parsing only."""
    sub = socket.create_connection(("127.0.0.1", port))
    pub = socket.create_connection(("127.0.0.1", port))
    sub.sendall(_core.pack_command("SUBSCRIBE", "bench"))
    parser = _core.RespParser()
    while not parser.drain():
        parser.feed(sub.recv(65536))
    pub.setblocking(False)
    buffer = _core.pack_publish("bench", PAYLOADS)
    got = sent = 0
    started = time.perf_counter()
    while got < PUBSUB_N:
        while sent < PUBSUB_N and sent - got < WINDOW:
            pub.setblocking(True)
            pub.sendall(buffer)
            pub.setblocking(False)
            sent += BATCH
        try:
            while pub.recv(1 << 20):  # replies: discard
                pass
        except BlockingIOError:
            pass
        parser.feed(sub.recv(1 << 20))
        frames = parser.drain()
        got += len(frames)
    elapsed = time.perf_counter() - started
    assert frames[-1][2] == PAYLOADS[-1]
    sub.close()
    pub.close()
    return PUBSUB_N / elapsed


@pytest.mark.benchmark(group="pub/sub delivered, 1 publisher -> 1 subscriber")
def test_pubsub_lockstep(benchmark: Any, server: RedisServer) -> None:
    run_rounds(benchmark, lambda: record("pubsub lockstep", asyncio.run(lockstep_pubsub(server.url()))))


@pytest.mark.benchmark(group="pub/sub delivered, 1 publisher -> 1 subscriber")
def test_pubsub_redispy(benchmark: Any, server: RedisServer) -> None:
    run_rounds(benchmark, lambda: record("pubsub redis-py", asyncio.run(redispy_pubsub(server.port))))


@pytest.mark.benchmark(group="pub/sub delivered, 1 publisher -> 1 subscriber")
def test_pubsub_raw_socket(benchmark: Any, server: RedisServer) -> None:
    # 7 pairs (a round is ~0.2-0.3 s): this box's speed swings within minutes, and the raw
    # loop's figure with it; the lockstep round of each pair counts in lockstep's median too
    run_paired(
        benchmark,
        lambda: record("pubsub raw socket", raw_pubsub(server.port)),
        lambda: record("pubsub lockstep", asyncio.run(lockstep_pubsub(server.url()))),
        "pubsub lockstep / raw, paired",
        rounds=7,
    )


# -- 1b. pub/sub with the publisher in its own process ----------------------------------------
# Agents are processes: here each contender's publisher runs in a child process, so the two
# ends do not share one interpreter (above, lockstep's one process both encodes and decodes
# every message while the raw loop does neither). Reported beside the in-process figures,
# where the target is judged. No window: the publisher sends as fast as it can, on a
# server whose subscribers' output buffers are unbounded, so a slower subscriber is never cut.
SPLIT_N = 200_000
SPLIT_PUBLISHERS = {
    "lockstep": """
import asyncio, sys
import lockstep
from benches.bench_messaging import ITEMS, BATCH
async def main(url, n):
    async with lockstep.connect(url, namespace="bench") as coord:
        sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
        pending = []
        for _ in range(n // BATCH):
            pending.append(coord.messaging.publish_many("bench-split", ITEMS, timeout=30))
            if len(pending) >= 16:
                await pending.pop(0)
        await asyncio.gather(*pending)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""",
    "raw": """
import socket, sys, threading
from lockstep import _core
from benches.bench_messaging import PAYLOADS, BATCH
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buffer = _core.pack_publish("bench-split", PAYLOADS)
def discard_replies():
    while conn.recv(1 << 20):
        pass
threading.Thread(target=discard_replies, daemon=True).start()
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
for _ in range(int(sys.argv[2]) // BATCH):
    conn.sendall(buffer)
""",
}


@pytest.fixture(scope="module")
def split_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    extra = {"client-output-buffer-limit": "pubsub 0 0 0"}
    with RedisServer(tmp_path_factory.mktemp("bench-split"), appendonly="everysec", extra=extra) as srv:
        yield srv


def start_publisher(kind: str, target: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SPLIT_PUBLISHERS[kind], target, str(SPLIT_N)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def go(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.perf_counter()


async def lockstep_split(url: str) -> float:
    async with lockstep.connect(url, namespace="bench") as coord:
        async with coord.subscribe("bench-split", max_buffer=2 * SPLIT_N) as sub:
            proc = start_publisher("lockstep", url)
            started, got = go(proc), 0
            while got < SPLIT_N:
                batch = await sub.get_batch(WINDOW, timeout=10)
                assert batch and isinstance(batch[-1], Message), batch[-1:]
                got += len(batch)
            elapsed = time.perf_counter() - started
    assert proc.wait(timeout=30) == 0 and batch[-1].data == ITEMS[-1]
    return SPLIT_N / elapsed


def raw_split(port: int) -> float:
    sub = socket.create_connection(("127.0.0.1", port))
    sub.sendall(_core.pack_command("SUBSCRIBE", "bench-split"))
    parser = _core.RespParser()
    while not parser.drain():
        parser.feed(sub.recv(65536))
    proc = start_publisher("raw", str(port))
    started, got = go(proc), 0
    while got < SPLIT_N:
        parser.feed(sub.recv(1 << 20))
        frames = parser.drain()
        got += len(frames)
    elapsed = time.perf_counter() - started
    assert proc.wait(timeout=30) == 0 and frames[-1][2] == PAYLOADS[-1]
    sub.close()
    return SPLIT_N / elapsed


@pytest.mark.benchmark(group="pub/sub delivered, publisher in its own process")
def test_pubsub_split_lockstep(benchmark: Any, split_server: RedisServer) -> None:
    run_rounds(benchmark, lambda: record("split lockstep", asyncio.run(lockstep_split(split_server.url()))))


@pytest.mark.benchmark(group="pub/sub delivered, publisher in its own process")
def test_pubsub_split_raw_socket(benchmark: Any, split_server: RedisServer) -> None:
    run_paired(
        benchmark,
        lambda: record("split raw socket", raw_split(split_server.port)),
        lambda: record("split lockstep", asyncio.run(lockstep_split(split_server.url()))),
        "split lockstep / raw, paired",
    )


# -- 2. publish only ---------------------------------------------------------------------------
async def lockstep_publish(url: str) -> float:
    async with lockstep.connect(url, namespace="bench") as coord:
        await coord.publish("bench-pub", "warm-up")
        started = time.perf_counter()
        pending: list[asyncio.Future[Sequence[str]]] = []
        for _ in range(PUBLISH_N // BATCH):
            pending.append(coord.messaging.publish_many("bench-pub", ITEMS, timeout=10))
            if len(pending) >= 16:  # 16 batches in flight, as redis-benchmark -P 16
                await pending.pop(0)
        await asyncio.gather(*pending)
        return PUBLISH_N / (time.perf_counter() - started)


def redis_benchmark_publish(port: int) -> float:
    binary = shutil.which("redis-benchmark")
    assert binary, "redis-benchmark comes with redis-server (Debian's redis-tools)"
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(PUBLISH_N), "-P", "16", "-q",
         "PUBLISH", "bench-pub", PAYLOADS[0].decode()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.findall(r"([\d.]+) requests per second", out)
    assert found, out
    return float(found[-1])


@pytest.mark.benchmark(group="publish only")
def test_publish_many_lockstep(benchmark: Any, server: RedisServer) -> None:
    run_rounds(benchmark, lambda: record("publish lockstep", asyncio.run(lockstep_publish(server.url()))))


@pytest.mark.benchmark(group="publish only")
def test_publish_redis_benchmark_p16(benchmark: Any, server: RedisServer) -> None:
    run_paired(
        benchmark,
        lambda: record("publish redis-benchmark -P 16", redis_benchmark_publish(server.port)),
        lambda: asyncio.run(lockstep_publish(server.url())),
        "publish lockstep / redis-benchmark, paired",
    )


# -- 3. latency at a steady rate -------------------------------------------------------------
async def lockstep_latency(url: str, rate: int, seconds: float) -> tuple[float, float]:
    per_tick = max(1, rate // 1000)  # one publish burst per millisecond
    total = int(rate * seconds)
    async with lockstep.connect(url, namespace="bench") as pub, lockstep.connect(url, namespace="bench") as subc:
        async with subc.subscribe("bench-lat") as sub:
            latencies: list[float] = []

            async def receive() -> None:
                while len(latencies) < total:
                    batch = await sub.get_batch(10_000, timeout=5)
                    now = time.time()
                    latencies.extend(now - m.ts for m in batch if isinstance(m, Message) and m.ts)

            receiving = asyncio.ensure_future(receive())
            started = time.monotonic()
            sent = 0
            while sent < total:
                for _ in range(per_tick):
                    pub.publish("bench-lat", ITEMS[sent % BATCH])
                sent += per_tick
                await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
            await receiving
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


@pytest.mark.parametrize("rate", [1000, 10_000])
@pytest.mark.benchmark(group="latency at a steady rate")
def test_latency_lockstep(benchmark: Any, server: RedisServer, rate: int) -> None:
    def run() -> float:
        p50, p99 = asyncio.run(lockstep_latency(server.url(), rate, 2.0 if rate == 1000 else 1.0))
        record(f"latency p50 at {rate}/s", p50)
        return record(f"latency p99 at {rate}/s", p99)

    run_rounds(benchmark, run)


# -- 4. streams: produce + consume + ack ------------------------------------------------------
#: Two server configurations. "appendonly no" is Debian's stock redis.conf, the setup PEERS.md
#: measured the redis-py loop on. "appendonly everysec" is backends/redis.conf's durable one:
#: there every entry a group reads is also written to the AOF as an XCLAIM (Redis persists the
#: pending list that way), which doubles the server's work per message, so the server's CPU,
#: not the client, sets the pace; the raw-socket loop shows that ceiling in the same run.
STREAMS_AOF = ["no", "everysec"]


@pytest.fixture(scope="module", params=STREAMS_AOF, ids=[f"appendonly-{a}" for a in STREAMS_AOF])
def streams_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp(f"bench-streams-{request.param}"), appendonly=request.param) as srv:
        if request.param == "no":  # Debian's stock snapshot rules, not the test server's every second
            with socket.create_connection(("127.0.0.1", srv.port)) as conn:
                conn.sendall(_core.pack_command("CONFIG", "SET", "save", "3600 1 300 100 60 10000"))
                assert conn.recv(64) == b"+OK\r\n"
        yield srv


def aof_of(srv: RedisServer) -> str:
    return str(srv.appendonly)


async def lockstep_streams(url: str, round_no: int) -> float:
    channel = f"bench-stream-{round_no}"
    async with lockstep.connect(url, namespace="bench") as coord:
        coord.bind_channel(channel, max_len=None)
        async with coord.consume(channel, "g", batch=BATCH) as q:
            received = sent = acked = 0
            futures = []
            acks: list[asyncio.Task[int]] = []
            started = time.perf_counter()
            while received < STREAMS_N:
                while sent < STREAMS_N and sent - received < WINDOW:
                    futures.append(coord.messaging.publish_many(channel, ITEMS, timeout=10))
                    sent += BATCH
                batch = await q.get_batch(BATCH, timeout=5)
                deliveries = [d for d in batch if isinstance(d, Delivery)]
                assert len(deliveries) == len(batch)
                received += len(deliveries)
                # ack in the background while the next batch is read (at most 2 in flight);
                # one XACK per batch, as the redis-py loop does (ack_many would send one per id)
                acks.append(asyncio.ensure_future(q.ack_all(deliveries)))
                if len(acks) > 2:
                    acked += await acks.pop(0)
            for task in acks:
                acked += await task
            elapsed = time.perf_counter() - started
            assert acked == STREAMS_N
            await asyncio.gather(*futures)
        assert deliveries[-1].message.data == ITEMS[-1]
        await coord.messaging.purge([channel])
    return STREAMS_N / elapsed


async def redispy_streams(port: int, round_no: int) -> float:
    key, chunk = f"bench-redispy-{round_no}", 256
    client = aioredis.Redis(port=port)
    await client.xgroup_create(key, "g", id="0", mkstream=True)
    started = time.perf_counter()
    done = 0
    while done < STREAMS_N:
        pipe = client.pipeline(transaction=False)
        for i in range(chunk):
            pipe.xadd(key, {"m": PAYLOADS[(done + i) % BATCH]})
        await pipe.execute()
        reply = await client.xreadgroup("g", "c", {key: ">"}, count=chunk)
        entries = reply[0][1]
        data = [json.loads(fields[b"m"]) for _, fields in entries]
        await client.xack(key, "g", *[entry_id for entry_id, _ in entries])
        done += len(data)
    elapsed = time.perf_counter() - started
    await client.delete(key)
    await client.aclose()
    return STREAMS_N / elapsed


def raw_streams(port: int, round_no: int) -> float:
    """The server's own limit, as seen from Python: each write is BATCH XADDs, one XREADGROUP
    COUNT BATCH and the XACK of the previous read; replies parsed in bulk, payloads left
    undecoded."""
    key = f"bench-raw-{round_no}"
    conn = socket.create_connection(("127.0.0.1", port))
    parser = _core.RespParser()

    def replies(count: int) -> list[Any]:
        frames: list[Any] = []
        while len(frames) < count:
            parser.feed(conn.recv(1 << 20))
            frames += parser.drain()
        return frames

    conn.sendall(_core.pack_command("XGROUP", "CREATE", key, "g", "0", "MKSTREAM"))
    replies(1)
    produce = _core.pack_each(("XADD", key, "*", "m"), PAYLOADS)
    read = _core.pack_command("XREADGROUP", "GROUP", "g", "c", "COUNT", BATCH, "STREAMS", key, ">")
    done, ids = 0, []
    started = time.perf_counter()
    while done < STREAMS_N:
        conn.sendall(produce + read + (_core.pack_command("XACK", key, "g", *ids) if ids else b""))
        frames = replies(BATCH + 1 + bool(ids))
        entries = frames[BATCH][0][1]
        ids = [entry_id for entry_id, _ in entries]
        done += len(entries)
    conn.sendall(_core.pack_command("XACK", key, "g", *ids) + _core.pack_command("DEL", key))
    replies(2)
    elapsed = time.perf_counter() - started
    assert entries[-1][1] == [b"m", PAYLOADS[-1]]
    conn.close()
    return STREAMS_N / elapsed


@pytest.mark.benchmark(group="redis+streams produce + consume + ack")
def test_streams_lockstep(benchmark: Any, streams_server: RedisServer) -> None:
    rounds = iter(range(100))
    url, aof = streams_server.url(scheme="redis+streams"), aof_of(streams_server)
    run_rounds(benchmark, lambda: record(f"streams lockstep [{aof}]", asyncio.run(lockstep_streams(url, next(rounds)))))


@pytest.mark.benchmark(group="redis+streams produce + consume + ack")
def test_streams_redispy(benchmark: Any, streams_server: RedisServer) -> None:
    rounds = iter(range(100, 200))
    url, port, aof = streams_server.url(scheme="redis+streams"), streams_server.port, aof_of(streams_server)
    # 5 pairs; each pair's lockstep round counts in lockstep's median too (as in pub/sub)
    run_paired(
        benchmark,
        lambda: record(f"streams redis-py [{aof}]", asyncio.run(redispy_streams(port, next(rounds)))),
        lambda: record(f"streams lockstep [{aof}]", asyncio.run(lockstep_streams(url, next(rounds)))),
        f"streams lockstep / redis-py, paired [{aof}]",
        rounds=5,
    )


@pytest.mark.benchmark(group="redis+streams produce + consume + ack")
def test_streams_raw_socket(benchmark: Any, streams_server: RedisServer) -> None:
    rounds = iter(range(200, 300))
    url, port, aof = streams_server.url(scheme="redis+streams"), streams_server.port, aof_of(streams_server)
    run_paired(
        benchmark,
        lambda: record(f"streams raw socket [{aof}]", raw_streams(port, next(rounds))),
        lambda: record(f"streams lockstep [{aof}]", asyncio.run(lockstep_streams(url, next(rounds)))),
        f"streams lockstep / raw, paired [{aof}]",
    )


# -- 5. file driver between two processes ------------------------------------------------------
PUBLISHER = """
import asyncio, sys, time
import lockstep
from benches.bench_messaging import ITEMS, BATCH
async def main(url, mode, count, rate):
    async with lockstep.connect(url, namespace="bench") as coord:
        sys.stdin.readline()  # go
        started = time.monotonic()
        if mode == "bulk":
            for _ in range(count // BATCH):
                await coord.publish_many("bench-file", ITEMS)
        else:
            for i in range(count):
                await coord.publish("bench-file", ITEMS[i % BATCH])
                await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


async def lockstep_file(url: str, mode: str, count: int, rate: float) -> tuple[float, list[float]]:
    async with lockstep.connect(url, namespace="bench") as coord:
        async with coord.subscribe("bench-file", max_buffer=4 * WINDOW) as sub:
            proc = subprocess.Popen(  # noqa: ASYNC220 -- started once, before anything is timed
                [sys.executable, "-c", PUBLISHER, url, mode, str(count), str(rate)],
                cwd=ROOT, stdin=subprocess.PIPE, text=True,
            )  # fmt: skip
            await asyncio.sleep(1.0)  # the publisher's interpreter is up and connected
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            latencies: list[float] = []
            got = 0
            first = None
            while got < count:
                batch = await sub.get_batch(WINDOW, timeout=10)
                assert batch, f"{got} of {count}"
                now = time.time()
                first = first or time.perf_counter()
                latencies += [now - m.ts for m in batch if isinstance(m, Message) and m.ts]
                got += len(batch)
            elapsed = time.perf_counter() - first
            proc.wait(timeout=30)
    return count / elapsed, latencies


@pytest.mark.benchmark(group="file driver between two processes")
def test_file_delivered_between_processes(benchmark: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'bench.db'}"
    run_rounds(benchmark, lambda: record("file delivered", asyncio.run(lockstep_file(url, "bulk", FILE_N, 0))[0]))


@pytest.mark.benchmark(group="file driver between two processes")
def test_file_latency_at_1k(benchmark: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'lat.db'}"

    def run() -> float:
        _, latencies = asyncio.run(lockstep_file(url, "steady", 2000, 1000))
        ordered = sorted(latencies)
        record("file latency p50 at 1000/s", ordered[len(ordered) // 2])
        return record("file latency p99 at 1000/s", ordered[int(len(ordered) * 0.99)])

    run_rounds(benchmark, run)


# -- the report ----------------------------------------------------------------------------------
def streams_rows(aof: str) -> list[tuple[str, float, str, str]]:
    ours = median(f"streams lockstep [{aof}]")
    # the target is judged on the stock config, where PEERS.md measured the redis-py loop
    target = "target >= 5x" if aof == "no" else "the server's limit here; target judged on appendonly no"
    return [
        (f"streams, appendonly {aof}: lockstep", ours, "msg/s", ""),
        (f"streams, appendonly {aof}: redis-py loop", median(f"streams redis-py [{aof}]"), "msg/s",
         (f"lockstep = {ours / median(f'streams redis-py [{aof}]'):.1f}x; "
          f"{median(f'streams lockstep / redis-py, paired [{aof}]'):.1f}x in pairs ({target})")),
        (f"streams, appendonly {aof}: raw socket", median(f"streams raw socket [{aof}]"), "msg/s",
         (f"lockstep = {ours / median(f'streams raw socket [{aof}]'):.2f} of raw; "
          f"{median(f'streams lockstep / raw, paired [{aof}]'):.2f} in pairs (the server's limit)")),
    ]  # fmt: skip


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Medians side by side with the targets (printed even without -s)."""
    rows = [
        ("pub/sub delivered: lockstep", median("pubsub lockstep"), "msg/s", ""),
        ("pub/sub delivered: redis-py", median("pubsub redis-py"), "msg/s",
         f"lockstep = {median('pubsub lockstep') / median('pubsub redis-py'):.1f}x (target >= 10x)"),
        ("pub/sub delivered: raw socket", median("pubsub raw socket"), "msg/s",
         (f"lockstep = {median('pubsub lockstep') / median('pubsub raw socket'):.2f} of raw; "
          f"{median('pubsub lockstep / raw, paired'):.2f} in pairs (target >= 0.5)")),
        ("pub/sub, publisher in own process: lockstep", median("split lockstep"), "msg/s", ""),
        ("pub/sub, publisher in own process: raw", median("split raw socket"), "msg/s",
         (f"lockstep = {median('split lockstep') / median('split raw socket'):.2f} of raw; "
          f"{median('split lockstep / raw, paired'):.2f} in pairs (beside the in-process row)")),
        ("publish only: lockstep publish_many", median("publish lockstep"), "msg/s", ""),
        ("publish only: redis-benchmark -P 16", median("publish redis-benchmark -P 16"), "msg/s",
         (f"lockstep = {median('publish lockstep') / median('publish redis-benchmark -P 16'):.2f}; "
          f"{median('publish lockstep / redis-benchmark, paired'):.2f} in pairs (target >= 0.5)")),
        ("latency at 1 K msg/s", median("latency p50 at 1000/s") * 1000, "ms p50",
         f"p99 {median('latency p99 at 1000/s') * 1000:.2f} ms (target <= 2 ms)"),
        ("latency at 10 K msg/s", median("latency p50 at 10000/s") * 1000, "ms p50",
         f"p99 {median('latency p99 at 10000/s') * 1000:.2f} ms (target <= 5 ms)"),
        *streams_rows("no"),
        *streams_rows("everysec"),
        ("file: delivered between 2 processes", median("file delivered"), "msg/s", "target >= 50,000"),
        ("file: latency at 1 K msg/s", median("file latency p50 at 1000/s") * 1000, "ms p50",
         f"p99 {median('file latency p99 at 1000/s') * 1000:.2f} ms (target <= 10 ms)"),
    ]  # fmt: skip
    with capsys.disabled():
        print(f"\n\nmessaging benchmarks (medians of the rounds above; load average {LOAD_AT_START} -> {load_average()}):")
        for name, value, unit, note in rows:
            print(f"  {name:<40} {value:>12,.2f} {unit:<6} {note}")
