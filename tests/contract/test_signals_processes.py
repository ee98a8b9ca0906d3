"""Signals, ACKs and barriers across real processes, on the file and Redis drivers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import lockstep
import pytest

from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(request.param, request, tmp_path)


def common(url: str, namespace: str, me: str) -> list[str]:
    return ["--url", url, "--namespace", namespace, "--me", me]


async def test_a_waiting_process_is_woken_by_a_signal(shared_url: str, namespace: str, tmp_path: Path) -> None:
    args = [*common(shared_url, namespace, "waiter"), "--source", "sprint-1", "--name", "interface_ready",
            "--poll", "5", "--timeout", "20"]  # fmt: skip
    worker = await Worker.start("sig_worker", "wait", *args, log_dir=tmp_path)
    try:
        await worker.expect("waiting", timeout=20)
        await asyncio.sleep(0.5)  # surely subscribed and checked by now: only a wake-up ends it fast
        async with lockstep.connect(shared_url, namespace=namespace) as coord:
            sent_at = time.monotonic()
            await coord.signal("sprint-1", "interface_ready", {"file": "auth-api.ts"})
        got = await worker.expect("got", timeout=10)
    finally:
        await stop_all([worker])
    assert got["data"] == {"file": "auth-api.ts"} and got["generation"] == 1
    assert got["t"] - sent_at < 1.0  # poll is 5 s: the wake-up crossed processes


async def test_signed_acks_from_other_processes(shared_url: str, namespace: str, tmp_path: Path) -> None:
    parties = ["p1", "p2", "p3"]
    workers = [
        await Worker.start("sig_worker", "ack", *common(shared_url, namespace, p), "--source", "lead",
                           "--name", "deploy", "--secret", SECRET, "--timeout", "20", log_dir=tmp_path)
        for p in parties
    ]
    try:
        for w in workers:
            await w.expect("ready", timeout=20)
        async with lockstep.connect(shared_url, namespace=namespace) as coord:
            signals = coord.signals(secret=SECRET)
            sig = await signals.signal("lead", "deploy", {"build": 7})
            result = await signals.wait_acks(sig, parties, timeout=15)
        for w in workers:
            assert (await w.expect("acked", timeout=10))["signed"] is True
    finally:
        await stop_all(workers)
    assert result.complete and set(result.acked) == set(parties) and result.rejected == {}


async def test_processes_released_together_at_a_barrier(shared_url: str, namespace: str, tmp_path: Path) -> None:
    parties = ["b1", "b2", "b3", "b4"]
    workers = [
        await Worker.start("sig_worker", "barrier", *common(shared_url, namespace, p), "--name", "sync",
                           "--parties", ",".join(parties), "--timeout", "20", "--delay", str(0.1 * i),
                           log_dir=tmp_path)
        for i, p in enumerate(parties)
    ]
    try:
        for w in workers:
            await w.expect("registered", timeout=20)
        for w in workers:
            w.send("go")
        results = [await w.expect("result", timeout=20) for w in workers]
    finally:
        await stop_all(workers)
    assert [r["state"] for r in results] == ["released"] * 4
    assert {r["round"] for r in results} == {1}
    # Released together: the last arrival (0.3 s after the first) frees everyone at once.
    ends = [r["t"] for r in results]
    assert max(ends) - min(ends) < 0.5
