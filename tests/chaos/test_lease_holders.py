"""RELIABILITY.md scenarios 1 and 2 with real processes, on the file and Redis drivers.

1. Paused holder: a holder (ttl 0.5 s) is SIGSTOPped for 0.8 s; another takes the lock
   and writes; the holder resumes and writes: the second fence is higher, the stale
   fenced write is refused, the holder saw ``lost``, believed-held intervals never overlap.
2. Holder killed: kill -9 mid-critical-section, 20 times: the next waiter gets the lock
   within ttl + one poll (file driver: within 100 ms, by the holder's flock); no key
   outlives its TTL (Redis); the lock files are never unlinked (file).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import lockstep
import pytest
from lockstep.drivers.lease_store import QUEUE_TTL

from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture(params=["file", "redis"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def shared_url(driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(driver, request, tmp_path)


def worker_args(url: str, namespace: str, member: str, ttl: float) -> list[str]:
    return ["--url", url, "--namespace", namespace, "--member", member, "--name", "chaos", "--ttl", str(ttl)]


async def test_paused_holder_is_fenced_off(shared_url: str, namespace: str, tmp_path: Path) -> None:
    holder = await Worker.start("lease_worker", "paused", *worker_args(shared_url, namespace, "paused", 0.5), log_dir=tmp_path)
    try:
        acquired = await holder.expect("acquired", timeout=20)
        holder.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        async with lockstep.connect(shared_url, namespace=namespace, member="second", timeout=5) as second:
            lease = await second.lock("chaos", ttl=5, wait=3)
            granted = time.monotonic()
            await lease.fenced_set("result", b"second holder")
            await asyncio.sleep(max(0.0, 0.8 - (time.monotonic() - stopped)))
            holder.signal(signal.SIGCONT)
            holder.send("go")
            write = await holder.expect("write")
            state = await holder.expect("state")
            assert lease.fence > acquired["fence"]
            assert write["ok"] is False, "the stale fenced write was accepted"
            assert state["lost"] is True and state["reason"]
            assert await second.fenced_get("chaos", "result") == b"second holder"
            # The paused holder believed it held the lock until its deadline at the latest,
            # and that ended before the second holder was granted it.
            assert acquired["t"] < state["deadline"] <= granted
            await lease.release()
    finally:
        await stop_all([holder])


def lock_files(db: Path) -> dict[str, int]:
    folder = Path(f"{db}.locks")
    return {p.name: p.stat().st_ino for p in folder.glob("*.lock")} if folder.exists() else {}


async def first_acquired(workers: list[Worker], timeout: float) -> tuple[Worker, dict]:
    tasks = {asyncio.create_task(w.expect("acquired", timeout)): w for w in workers}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = done.pop()
    return tasks[task], task.result()


async def test_killed_holder_frees_the_lock_20_times(
    driver: str, shared_url: str, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # File: a long TTL, so only the flock can explain a fast hand-over.
    ttl, bound = (10.0, 0.1) if driver == "file" else (0.4, 0.4 + 0.25)
    db = tmp_path / "coord.db"
    gaps: list[float] = []
    seen_files: dict[str, int] = {}
    batch_no = 0
    while len(gaps) < 20:
        batch = [
            await Worker.start(
                "lease_worker", "hold", *worker_args(shared_url, namespace, f"b{batch_no}w{i}", ttl), log_dir=tmp_path
            )
            for i in range(6)
        ]
        batch_no += 1
        try:
            await asyncio.gather(*(w.expect("ready", 30) for w in batch))
            alive = list(batch)
            holder, _ = await first_acquired(alive, 30)
            await asyncio.sleep(0.3)  # everyone else is in line and asleep
            while len(alive) > 1 and len(gaps) < 20:
                alive.remove(holder)
                killed_at = time.monotonic()
                await holder.kill()
                holder, event = await first_acquired(alive, ttl + 5)
                gaps.append(event["t"] - killed_at)
                files = lock_files(db)
                for name, inode in seen_files.items():
                    assert files.get(name) == inode, f"lock file {name} was unlinked or replaced"
                seen_files.update(files)
                await asyncio.sleep(0.05)
        finally:
            await stop_all(batch)
    assert max(gaps) < bound, f"hand-over after kill -9 took up to {max(gaps):.3f} s: {sorted(gaps)}"
    if driver == "file":
        assert seen_files, "no lock files were used"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        # The last holder and waiters were killed: everything but the fence (and its entry
        # in the namespace's resource index) expires with the longest entry (a holder's ttl,
        # a waiter's queue entry) plus 1 s.
        await asyncio.sleep(max(ttl, QUEUE_TTL) + 1.3)
        with server.client() as c:
            left = sorted(k.decode() for k in c.scan_iter(match=f"ls:{namespace}:*"))
        assert left == [f"ls:{namespace}:{{lock:chaos}}:fence", f"ls:{namespace}:{{meta}}:leases"], left
