"""RELIABILITY.md scenarios 7 and 8, and a Redis restart, for pub/sub (redis://), with a
real redis-server and real subscriber and publisher processes.

7. 200 msg/s, numbered; ``CLIENT KILL TYPE pubsub`` twice: resubscribed within 1 s,
   exactly one gap per kill, every message delivered or inside a reported gap.
8. A tiny ``client-output-buffer-limit pubsub``; the subscriber's process stops reading
   for 2 s: the eviction is reported as a gap, it resubscribes, and the publisher is never
   blocked nor fails.
R. ``kill -9`` of redis-server and a restart: the subscriber is back within 2 s and
   reports the restart as a gap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.workers import Worker, stop_all
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server: these tests kill clients, change config and kill the server."""
    with RedisServer(tmp_path / "redis", appendonly="everysec") as srv:
        yield srv


def args(url: str, *extra: str) -> list[str]:
    return ["--url", url, "--namespace", "chaos", "--channel", "numbered", *extra]


async def collect(sub: Worker, until: float) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Messages ([sender, seq, n, latency]) and gaps the subscriber reports until ``until`` (monotonic)."""
    msgs: list[list[Any]] = []
    gaps: list[dict[str, Any]] = []
    while time.monotonic() < until:
        try:
            event = await sub.next_event(timeout=max(0.05, until - time.monotonic()))
        except AssertionError:
            if sub.proc.returncode is not None:
                raise
            break
        if event["event"] == "msgs":
            msgs += event["msgs"]
        elif event["event"] == "gap":
            gaps.append(event)
    return msgs, gaps


def covered(seq: int, gaps: list[dict[str, Any]]) -> bool:
    return any(lo <= seq <= hi for g in gaps for ranges in g["missed"].values() for lo, hi in ranges)


async def test_scenario_7_client_kill_twice(server: RedisServer, tmp_path: Path) -> None:
    url = server.url()
    sub = await Worker.start("msg_worker", "subscriber", *args(url), log_dir=tmp_path)
    pub: Worker | None = None
    try:
        await sub.expect("ready", timeout=20)
        pub = await Worker.start("msg_worker", "publisher", *args(url, "--count", "800", "--rate", "200"), log_dir=tmp_path)
        collecting = asyncio.ensure_future(collect(sub, time.monotonic() + 6.0))
        kills = []
        with server.client() as client:
            for pause in (1.2, 1.4):
                await asyncio.sleep(pause)
                kills.append((time.time(), client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")))
        done = await pub.expect("done", timeout=20)
        msgs, gaps = await collecting
    finally:
        await stop_all([w for w in (sub, pub) if w is not None])
    assert done["published"] == 800 and not done["errors"], done
    assert [k[1] for k in kills] == [1, 1], "each kill hit the subscriber's connection"
    assert len(gaps) == 2, f"exactly one gap per kill: {gaps}"
    for gap, (killed_at, _) in zip(gaps, kills, strict=True):
        assert gap["reason"] == "disconnected", gap
        assert gap["until"] - killed_at < 1.0, f"resubscribed {gap['until'] - killed_at:.2f} s after the kill"
        assert gap["since"] <= gap["until"]
    seqs = [seq for _, seq, _, _ in msgs]
    assert len(seqs) == len(set(seqs)), "nothing delivered twice"
    missing = [s for s in range(1, 801) if s not in set(seqs)]
    assert all(covered(s, gaps) for s in missing), f"lost in silence: {[s for s in missing if not covered(s, gaps)]}"
    assert len(seqs) > 600, "the kills cost a few messages, not most"


async def test_scenario_8_slow_subscriber_evicted(server: RedisServer, tmp_path: Path) -> None:
    with server.client() as client:
        client.config_set("client-output-buffer-limit", "pubsub 131072 65536 1")
    url = server.url()
    sub = await Worker.start("msg_worker", "subscriber", *args(url), log_dir=tmp_path)
    pub: Worker | None = None
    try:
        await sub.expect("ready", timeout=20)
        pub = await Worker.start(
            # ~10 MB/s: more than the kernel's socket buffers hold while the subscriber sleeps
            "msg_worker", "publisher", *args(url, "--count", "40000", "--rate", "10000", "--batch", "100", "--pad", "1000"),
            log_dir=tmp_path,
        )  # fmt: skip
        await asyncio.sleep(0.5)
        sub.send("stall 2.0")  # the subscriber's process stops reading: Redis buffers, then drops it
        await sub.expect("stalled", timeout=20)
        collecting = asyncio.ensure_future(collect(sub, time.monotonic() + 7.0))
        done = await pub.expect("done", timeout=30)
        msgs, gaps = await collecting
    finally:
        await stop_all([w for w in (sub, pub) if w is not None])
    assert not done["errors"], done["errors"]
    assert done["slowest"] < 0.5, f"a publish took {done['slowest']:.2f} s: the publisher was held up"
    assert gaps, "the eviction was reported"
    assert "overcoming of output buffer limits" in server.log_tail(50), "the server did evict it"
    assert gaps[0]["reason"] == "evicted", gaps[0]
    assert "client-output-buffer-limit" in gaps[0]["detail"]
    after = [n for _, _, n, _ in msgs if n > 0]
    assert after and max(after) > 35_000, "resubscribed: messages kept arriving after the eviction"
    seqs = {seq for _, seq, _, _ in msgs}
    first, last = min(seqs), max(seqs)
    lost = [s for s in range(first, last + 1) if s not in seqs]
    assert all(covered(s, gaps) for s in lost), "every loss after the first arrival lies inside a reported gap"


async def test_redis_restart_subscriber_back_within_2s(server: RedisServer, tmp_path: Path) -> None:
    url = server.url()
    sub = await Worker.start("msg_worker", "subscriber", *args(url), log_dir=tmp_path)
    pub: Worker | None = None
    try:
        await sub.expect("ready", timeout=20)
        server.kill()
        await asyncio.sleep(0.3)
        server.restart()
        restarted = time.time()
        pub = await Worker.start("msg_worker", "publisher", *args(url, "--count", "600", "--rate", "200"), log_dir=tmp_path)
        msgs, gaps = await collect(sub, time.monotonic() + 4.0)
        await pub.expect("done", timeout=20)
    finally:
        await stop_all([w for w in (sub, pub) if w is not None])
    assert len(gaps) == 1 and gaps[0]["reason"] == "restarted", gaps
    assert gaps[0]["until"] - restarted < 2.0, f"back {gaps[0]['until'] - restarted:.2f} s after the restart"
    assert msgs, "messages published after the restart are delivered"
