"""RELIABILITY.md scenarios 9 and 10, and Redis restarts, for consumer groups on
redis+streams (the file driver's run of scenario 9 is in test_filelog_consumers.py),
with a real redis-server and real consumer processes.

9.  Three consumers, one killed with kill -9 between read and ack, 1000 messages: each is
    acked exactly once or dead-lettered; the redelivered ones show delivery_count >= 2.
10. A fast producer with a small retention (max_len 100), one consumer paused by SIGSTOP
    with entries pending: no unacknowledged entry is lost in silence.
R.  kill -9 of redis-server and a restart: consumers are back within 2 s; with
    ``appendonly yes`` the group and its pending entries survive; without persistence the
    lost group is recreated and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lockstep
import pytest
from lockstep.messaging import Message

from tests.chaos.workers import Worker, stop_all
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", appendonly="everysec") as srv:
        yield srv


def consumer_args(url: str, member: str, *extra: str) -> list[str]:
    return ["--url", url, "--namespace", "chaos", "--channel", "jobs", "--member", member, *extra]


async def events_until(workers: list[Worker], done: Any, timeout: float) -> list[dict[str, Any]]:
    """Every event of the workers until ``done(events)`` holds (or the timeout).

    The pumps read the workers' stdout directly, not through ``Worker.next_event``: a task
    cancelled while inside ``asyncio.wait_for`` can lose the cancellation on Python 3.11
    (when the read completes at the same moment) and then wait out its hour-long timeout.
    """
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def pump(w: Worker) -> None:
        assert w.proc.stdout is not None
        while line := await w.proc.stdout.readline():
            event: dict[str, Any] = json.loads(line)
            w.events.append(event)
            event["worker"] = w.pid
            queue.put_nowait(event)

    pumps = [asyncio.ensure_future(pump(w)) for w in workers]
    try:
        while not done(events):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    events.append(await queue.get())
            except TimeoutError:
                break
    finally:
        for p in pumps:
            p.cancel()
        await asyncio.wait(pumps, timeout=5)
    while not queue.empty():  # read but not yet looked at
        events.append(queue.get_nowait())
    return events


async def stop_workers(workers: list[Worker]) -> None:
    """``stop_all``, tolerating a worker that already exited (and was reaped) on its own."""
    for w in workers:
        if w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.signal(signal.SIGCONT)
                w.signal(signal.SIGKILL)
    for w in workers:
        await w.proc.wait()


async def dead_letters(url: str, channel: str) -> list[int]:
    """Every dead letter so far: read until a quiet spell, not just the first batch (on a
    loaded box the replay can arrive in pieces, and a missed one looks like a loss)."""
    found: list[int] = []
    async with lockstep.connect(url, namespace="chaos") as coord, coord.subscribe(f"{channel}:dead", from_id="0") as sub:
        wait = 1.0
        while batch := await sub.get_batch(10_000, timeout=wait):
            found += [m.data["n"] for m in batch if isinstance(m, Message)]
            wait = 0.3
    return found


async def run_scenario_9(url: str, tmp_path: Path, pending: Any, count: int = 1000) -> None:
    """``pending()`` counts the group's pending entries in the backend."""
    async with lockstep.connect(url, namespace="chaos") as coord:
        await coord.publish_many("jobs", [{"n": i} for i in range(1, count + 1)])
    common = ("--batch", "10", "--idle", "1.0")
    victim = await Worker.start("msg_worker", "consumer", *consumer_args(url, "victim", *common, "--hold-after", "15"), log_dir=tmp_path)
    workers = [victim] + [
        await Worker.start("msg_worker", "consumer", *consumer_args(url, f"w{i}", *common, "--work", "0.001"), log_dir=tmp_path)
        for i in (1, 2)
    ]  # fmt: skip
    try:
        holding = await victim.expect("holding", timeout=30)
        await victim.kill()  # kill -9: read, never acked

        def all_handled(events: list[dict[str, Any]]) -> bool:
            return len({e["n"] for e in victim.events + events if e["event"] == "acked"}) >= count

        events = victim.events + await events_until(workers[1:], all_handled, timeout=60)
        events += await events_until(workers[1:], lambda e: False, timeout=1.5)  # no second acks
        left = await pending()
    finally:
        await stop_workers(workers)
    errors = [e for e in events if e["event"] == "error"]
    assert not errors, f"a consumer failed: {errors}; stderr: {[w.stderr() for w in workers if w.proc.returncode]}"
    acks = Counter(e["n"] for e in events if e["event"] == "acked" and e["ok"])
    uncertain = {e["n"] for e in events if e["event"] == "acked" and e["ok"] is None}  # a retried ack
    dead = Counter(await dead_letters(url, "jobs"))
    assert not [n for n, c in acks.items() if c > 1], "an entry was acked twice"
    settled = acks + dead
    missing = set(range(1, count + 1)) - set(settled) - uncertain
    trail = [e for e in events if e.get("n") in missing]
    last = {w.pid: [e for e in events if e.get("worker") == w.pid][-3:] for w in workers[1:]}
    assert not missing, (
        f"neither acked nor dead-lettered: {sorted(missing)[:20]}; {left} pending; "
        f"their events: {trail}; each survivor's last events: {last}"
    )
    assert all(c == 1 for c in settled.values()), "acked exactly once, or dead-lettered"
    assert left == 0, f"{left} entries still pending: every entry was acked (or dead-lettered)"
    redelivered = [e for e in events if e["event"] == "got" and e["count"] >= 2]
    assert any(e["id"] == holding["id"] for e in redelivered), "the entry the victim held came back"
    victim_ids = {e["id"] for e in victim.events if e["event"] == "got"}
    victim_acked = {e["id"] for e in victim.events if e["event"] == "acked"}
    for e in redelivered:
        assert e["worker"] != victim.pid
    assert (victim_ids - victim_acked) <= {e["id"] for e in redelivered}


async def test_scenario_9_consumer_killed_between_read_and_ack(server: RedisServer, tmp_path: Path) -> None:
    async def pending() -> int:
        with server.client() as client:
            return int(client.xpending("ls:chaos:{stream:jobs}", "workers")["pending"])

    await run_scenario_9(server.url(scheme="redis+streams"), tmp_path, pending)


async def run_scenario_10(url: str, tmp_path: Path, trimmed: Any) -> None:
    """``trimmed()`` returns the log's length now (to show retention really ran)."""
    paused = await Worker.start(
        "msg_worker", "consumer",
        *consumer_args(url, "paused", "--batch", "20", "--idle", "30", "--max-len", "100", "--hold-after", "5"),
        log_dir=tmp_path,
    )  # fmt: skip
    producer: Worker | None = None
    try:
        await paused.expect("ready", timeout=20)
        producer = await Worker.start(
            "msg_worker", "publisher",
            *consumer_args(url, "producer", "--count", "5000", "--rate", "20000", "--batch", "50", "--max-len", "100"),
            log_dir=tmp_path,
        )  # fmt: skip
        await paused.expect("holding", timeout=30)
        paused.signal(signal.SIGSTOP)
        done = await producer.expect("done", timeout=60)
        assert not done["errors"], done["errors"]
        length_while_held = await trimmed()
        paused.signal(signal.SIGCONT)
        await paused.kill()
        async with lockstep.connect(url, namespace="chaos") as coord:
            coord.bind_channel("jobs", max_len=100)
            acked: Counter[int] = Counter(e["n"] for e in paused.events if e["event"] == "acked" and e["ok"])
            gaps = []
            async with coord.consume("jobs", "workers", consumer="rescuer", batch=500, idle=0.5) as q:
                while sum(acked.values()) < 5000:
                    item = await q.get(timeout=10)
                    if isinstance(item, lockstep.Gap):
                        gaps.append(item)
                        continue
                    if await item.ack():
                        acked[item.message.data["n"]] += 1
            for _ in range(3):  # retention runs again (it catches up a bounded slice per run)
                await coord.publish_many("jobs", [{"n": 0}] * 100)
            length_after = await trimmed()
    finally:
        await stop_all([w for w in (paused, producer) if w is not None])
    assert not gaps, f"nothing pending was lost, so nothing to report: {gaps}"
    assert sorted(acked) == list(range(1, 5001)) and set(acked.values()) == {1}
    assert sum(1 for e in paused.events if e["event"] == "acked") == 5
    assert length_while_held >= 4900, "retention held back behind the paused consumer's pending entries"
    assert length_after <= 400, f"retention trims again once acked ({length_after} entries left)"


async def test_scenario_10_trim_vs_pending(server: RedisServer, tmp_path: Path) -> None:
    async def length() -> int:
        with server.client() as client:
            return int(client.xlen("ls:chaos:{stream:jobs}"))

    await run_scenario_10(server.url(scheme="redis+streams"), tmp_path, length)


@pytest.mark.parametrize("appendonly", ["everysec", "no"])
async def test_redis_restart_consumers_back_and_groups(tmp_path: Path, appendonly: str) -> None:
    # A hard bound on the whole scenario: a consumer that never comes back fails the test
    # here instead of hanging the suite (pytest-timeout is not a dependency).
    async with asyncio.timeout(RESTART_SCENARIO_DEADLINE):
        await run_restart_scenario(tmp_path, appendonly)


RESTART_SCENARIO_DEADLINE = 60.0  # s; a passing run takes about 6


async def run_restart_scenario(tmp_path: Path, appendonly: str) -> None:
    # "no": no AOF and no snapshots either, so the restart loses the stream and its group
    extra = {"save": '""'} if appendonly == "no" else {}
    with RedisServer(tmp_path / "redis", appendonly=appendonly, extra=extra) as server:  # type: ignore[arg-type]
        url = server.url(scheme="redis+streams")
        async with lockstep.connect(url, namespace="chaos") as coord:
            await coord.publish_many("jobs", [{"n": 1}, {"n": 2}])
        doomed = await Worker.start(
            "msg_worker", "consumer", *consumer_args(url, "w1", "--batch", "1", "--idle", "3", "--hold-after", "1"),
            log_dir=tmp_path,
        )  # fmt: skip
        live: Worker | None = None
        try:
            held = await doomed.expect("holding", timeout=20)  # n=1 acked, n=2 pending for w1
            await doomed.kill()
            live = await Worker.start(
                "msg_worker", "consumer", *consumer_args(url, "w2", "--batch", "10", "--idle", "3"), log_dir=tmp_path
            )
            await live.expect("ready", timeout=20)
            await asyncio.sleep(1.2)  # appendfsync everysec: the group's state reaches the disk
            server.kill()
            server.restart()
            restarted = time.monotonic()
            async with lockstep.connect(url, namespace="chaos") as coord:
                await coord.publish("jobs", {"n": 3})

            def settled(ev: list[dict[str, Any]]) -> bool:
                got = {e["n"] for e in ev if e["event"] == "got"}
                return {2, 3} <= got if appendonly == "everysec" else 3 in got

            events = await events_until([live], settled, 12)
        finally:
            await stop_all([w for w in (doomed, live) if w is not None])
    got = [e for e in events if e["event"] == "got"]
    back = next(e for e in got if e["n"] == 3)
    assert back["t"] - restarted < 2.0, f"the running consumer was back {back['t'] - restarted:.2f} s after the restart"
    gaps = [e for e in events if e["event"] == "gap"]
    if appendonly == "everysec":
        assert not gaps, "the group survived the restart"
        redelivered = next(e for e in got if e["n"] == 2)
        assert redelivered["id"] == held["id"] and redelivered["count"] >= 2, "its pending entry survived too"
        assert not [e for e in got if e["n"] == 1], "what was acked stays acked"
    else:
        assert gaps and gaps[0]["reason"] == "group-lost", gaps
        assert "recreated" in gaps[0]["detail"]


async def test_consumer_rides_out_a_restart_that_loads_a_dataset(tmp_path: Path) -> None:
    """A restarted server answers ``-LOADING`` while it reads its AOF: a consumer waits that
    out and carries on (it used to fail with BackendError at the first XREADGROUP)."""
    async with asyncio.timeout(RESTART_SCENARIO_DEADLINE):
        with RedisServer(tmp_path / "redis", appendonly="everysec", extra={"enable-debug-command": "yes"}) as server:
            with server.client() as client:  # enough keys that loading them takes a while
                client.execute_command("DEBUG", "POPULATE", 400_000, "filler", 16)
                client.bgrewriteaof()
                while client.info("persistence")["aof_rewrite_in_progress"]:
                    await asyncio.sleep(0.1)
            url = server.url(scheme="redis+streams")
            async with lockstep.connect(url, namespace="chaos") as coord:
                await coord.publish("jobs", {"n": 1})
            live = await Worker.start("msg_worker", "consumer", *consumer_args(url, "w1", "--idle", "3"), log_dir=tmp_path)
            try:
                await live.expect("acked", timeout=20)
                await asyncio.sleep(1.2)  # appendfsync everysec: the ack reaches the disk
                server.kill()
                await asyncio.to_thread(server.restart)  # the worker keeps reading meanwhile
                async with lockstep.connect(url, namespace="chaos") as coord:
                    await coord.publish("jobs", {"n": 2})
                events = await events_until([live], lambda ev: any(e.get("n") == 2 for e in ev if e["event"] == "acked"), 10)
            finally:
                await stop_workers([live])
    assert not [e for e in events if e["event"] == "error"], events
    assert [e["n"] for e in events if e["event"] == "acked" and e["ok"]] == [2]
