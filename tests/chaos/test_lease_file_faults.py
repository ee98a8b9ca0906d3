"""RELIABILITY.md scenario 14, the lease parts, on the file (SQLite) driver.

* kill -9 during writes, many times: processes take, write under and release one lock
  as fast as they can while one of them is killed every ~80 ms; the database stays
  sound, there are never two holders, fences only grow, believed-held intervals never
  overlap.
* a holder's lock file removed or replaced under it: proves nothing, so never two
  holders: the holder keeps its lease (it renews), and its session is never judged
  dead while it lives, whoever locks the file now under that name.

Lease state lives in per-resource record files (``<db>.locks/r-*.lock``, see
``lockstep.drivers.sqlite_lease_records``); the tests read them as the driver does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import time
from pathlib import Path

import lockstep
import pytest
from lockstep._core import LeaseTable
from lockstep.drivers.sqlite_lease_records import (
    RecordFiles,
    current_boot_id,
    session_dead,
)
from lockstep.errors import LockTimeout

from tests.chaos.workers import Worker, stop_all

pytestmark = pytest.mark.slow

KILLS = 30


def worker_args(url: str, member: str, *extra: str) -> list[str]:
    return ["--url", url, "--namespace", "ns", "--member", member, "--name", "crash", *extra]


async def test_kill_9_during_writes_never_makes_two_holders(tmp_path: Path) -> None:
    db = tmp_path / "coord.db"
    url = f"file://{db}"
    extra = ["--ttl", "5", "--wait", "60", "--rounds", "100000", "--hold", "0.002", "--write"]
    spawned = 0

    async def spawn() -> Worker:
        nonlocal spawned
        spawned += 1
        return await Worker.start("lease_worker", "rounds", *worker_args(url, f"w{spawned}", *extra), log_dir=tmp_path)

    workers = [await spawn() for _ in range(3)]
    everyone = list(workers)
    kills: dict[int, float] = {}
    most_holders = 0
    async with lockstep.connect(url, namespace="ns", member="monitor", timeout=5) as monitor:

        async def watch() -> None:
            nonlocal most_holders
            while True:
                most_holders = max(most_holders, len(await monitor.lease_holders("crash")))
                await asyncio.sleep(0.003)

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.gather(*(w.expect("acquired", 30) for w in workers))
            for _ in range(KILLS):
                await asyncio.sleep(0.05 + random.random() * 0.06)
                victim = random.choice(workers)
                kills[victim.pid] = time.monotonic()
                await victim.kill()
                workers.remove(victim)
                fresh = await spawn()
                workers.append(fresh)
                everyone.append(fresh)
            await asyncio.sleep(0.5)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await stop_all(everyone)
        for w in everyone:  # read what each wrote before it died
            assert w.proc.stdout is not None
            for line in (await w.proc.stdout.read()).splitlines():
                try:
                    w.events.append(json.loads(line))
                except ValueError:
                    pass  # the line being written when it was killed
    assert most_holders <= 1
    spans: list[tuple[float, float, int]] = []
    for w in everyone:
        open_span: tuple[float, int] | None = None
        for e in w.events:
            if e["event"] == "acquired":
                open_span = (e["t"], e["fence"])
            elif e["event"] == "releasing" and open_span is not None:  # emitted before the release
                spans.append((open_span[0], e["sent"], open_span[1]))
                open_span = None
        if open_span is not None:  # killed (or stopped) while holding: held until then at most
            spans.append((open_span[0], kills.get(w.pid, float("inf")), open_span[1]))
    spans.sort()
    assert len(spans) > 30, f"only {len(spans)} rounds ran"
    for (start, end, fence), (next_start, _, next_fence) in itertools.pairwise(spans):
        assert next_fence > fence, "fences went backwards"
        assert next_start >= end, f"fence {next_fence} granted at {next_start} while fence {fence} held until {end}"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(stored_holders(db, "crash")) <= 1


def stored_holders(db: Path, name: str) -> list[tuple]:
    """The holder rows in lock ``name``'s record (expired ones included), as stored."""
    rid, boot = f"ls:ns:{{lock:{name}}}", current_boot_id()
    table = LeaseTable()
    table.load_record(rid, Path(RecordFiles(Path(f"{db}.locks"), boot).path(rid)).read_bytes(), boot, 0)
    return table.dump(rid)[2]


def holder_session(db: Path) -> str:
    """``<session>:<N>:<inode>`` of lock ``hold``'s holder: its liveness file is holder-N.lock."""
    ((_, _, session, _, _),) = stored_holders(db, "hold")
    return session


def holder_lock_file(db: Path) -> Path:
    return Path(f"{db}.locks") / f"holder-{holder_session(db).split(':')[1]}.lock"


@pytest.mark.parametrize("fault", ["removed", "replaced"])
async def test_lock_file_removed_or_replaced_under_a_holder(tmp_path: Path, fault: str) -> None:
    db = tmp_path / "coord.db"
    url = f"file://{db}"
    ttl = 1.5
    holder = await Worker.start(
        "lease_worker", "hold", *worker_args(url, "holder", "--ttl", str(ttl), "--name", "hold"), log_dir=tmp_path
    )
    try:
        acquired = await holder.expect("acquired", 30)
        session = holder_session(db)
        path = holder_lock_file(db)
        path.unlink()
        if fault == "replaced":
            path.write_bytes(b"")  # another inode under the same name
        async with lockstep.connect(url, namespace="ns", member="rival", timeout=5) as rival:
            for _ in range(2):  # across more than a ttl: the holder renews, the rival never gets in
                with pytest.raises(LockTimeout) as info:
                    await rival.lock("hold", wait=0.9)
                assert info.value.holders == ("holder",)
            # Whoever locks the file under that name now (the rival may have taken it), the
            # holder's session names the inode it locked: the file proves nothing about it.
            assert not session_dead(Path(f"{db}.locks"), session), "a live holder was judged dead"
            killed = time.monotonic()
            await holder.kill()
            lease = await rival.lock("hold", ttl=5, wait=ttl + 2)
            # Nothing proved the holder dead: the rival got in only once its TTL ran out.
            assert time.monotonic() - killed > 0.3
            assert lease.fence > acquired["fence"]
            await lease.release()
    finally:
        await stop_all([holder])
