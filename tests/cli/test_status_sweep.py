"""`lockstep status` and `lockstep sweep` against a running Redis and the file driver."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import driver_url

ROOT = Path(__file__).resolve().parents[2]

# Registers agents in a process that then ends without leaving, as a crash would: "dead"
# (ttl 0.3 s, owning a key and a lock) and "quiet" (ttl 60 s); "other" lives in another namespace.
# Where messaging is durable, it also leaves consumer group "workers" of "jobs" with one entry
# pending and one not yet delivered. It sends signal "interface_ready" about "sprint-1" twice
# and "done" about "qa" once ("elsewhere" signals in the other namespace).
SETUP = """
import asyncio, sys, lockstep
async def main(url, ns):
    async with lockstep.connect(url, namespace=ns) as coord:
        if lockstep.Capability.DURABLE_MESSAGES in coord.capabilities:
            await coord.publish("jobs", 1)
            await coord.publish("jobs", 2)
            async with coord.consume("jobs", "workers", consumer="w1", batch=1) as jobs:
                async for _ in jobs:
                    break
        await coord.signal("sprint-1", "interface_ready", {"file": "auth.ts"})
        await coord.signal("sprint-1", "interface_ready", {"file": "auth.ts"})
        await coord.signal("qa", "done")
        dead = await coord.agent("dead", ttl=0.3, interval=0.1, meta={"sprint": 7})
        await dead.put("state", b"x" * 100)
        lease = await coord.lock("test-runner", ttl=30, wait=0)
        await dead.own_lease("lock", ["test-runner"], lease.token)
        quiet = await coord.agent("quiet", ttl=60, interval=20)
        await quiet.put("state", b"y")
        dead.abandon(); quiet.abandon()
        coord._leases = None  # keep the lock held, as a killed process leaves it
    async with lockstep.connect(url, namespace=ns + "-other") as coord:
        (await coord.agent("other", ttl=60, interval=20)).abandon()
        await coord.signal("elsewhere", "done")
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def lockstep_cli(
    *args: str, stdin: int | None = subprocess.DEVNULL, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockstep", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=stdin, cwd=ROOT)  # fmt: skip


@pytest.fixture(params=["file", "redis", "redis+streams"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> tuple[str, str]:
    url = driver_url(str(request.param), request, tmp_path)
    done = subprocess.run([sys.executable, "-c", SETUP, url, namespace], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    time.sleep(0.35)  # "dead" is past its ttl
    return url, namespace


def test_status_then_sweep(setup: tuple[str, str]) -> None:
    url, ns = setup
    res = lockstep_cli("status", url, "--namespace", ns)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"namespace '{ns}'" in out and "agents (2, 0 alive)" in out
    dead = next(line for line in out.splitlines() if line.startswith("dead "))
    assert "process gone" in dead and '{"sprint":7}' in dead
    assert "leases (1 resource(s), 1 held, 0 waiting)" in out
    runner = next(line for line in out.splitlines() if line.startswith("test-runner "))
    assert runner.split()[1] == "lock" and "(agent dead)" in runner and runner.split()[-1] == "0"
    if url.startswith("redis://"):
        assert "queues: the redis driver's messaging is pub/sub" in out
    else:
        assert "queues: consumer groups (1, 1 entries pending)" in out
        assert next(line for line in out.splitlines() if line.startswith("jobs ")).split() == ["jobs", "workers", "1", "1", "1"]
    assert "signal logs (2)" in out
    assert next(line for line in out.splitlines() if line.startswith("qa ")).split()[:4] == ["qa", "done", "1", "1"]
    ready = next(line for line in out.splitlines() if line.startswith("sprint-1 "))
    assert ready.split()[:4] == ["sprint-1", "interface_ready", "2", "2"]
    assert "memory" in out and "backend" in out
    assert "other" not in out and "elsewhere" not in out  # another namespace

    res = lockstep_cli("sweep", url, "--namespace", ns)
    assert res.returncode == 0, res.stderr
    assert "reaped 2 agent(s)" in res.stdout  # both: their process is gone
    assert "leases freed: lock:test-runner" in res.stdout
    assert "keys deleted: 2" in res.stdout
    assert "nothing to reap" in lockstep_cli("sweep", url, "--namespace", ns).stdout
    status = lockstep_cli("status", url, "--namespace", ns).stdout
    assert "agents (0, 0 alive)" in status and "latest reapings (2)" in status
    assert "leases (0 resource(s), 0 held, 0 waiting)" in status
    assert "agents (1, 0 alive)" in lockstep_cli("status", url, "--namespace", ns + "-other").stdout


def test_status_json(setup: tuple[str, str]) -> None:
    url, ns = setup
    res = lockstep_cli("status", url, "--namespace", ns, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["namespace"] == ns and sorted(a["agent"] for a in report["agents"]) == ["dead", "quiet"]
    (lock,) = report["leases"]
    assert (lock["kind"], lock["name"], lock["slots"], lock["waiters"]) == ("lock", "test-runner", 1, [])
    (holder,) = lock["holders"]
    assert holder["agent"] == "dead" and holder["fence"] == lock["fence"] and 0 < holder["expires_in"] <= 30
    if url.startswith("redis://"):
        assert report["queues"] is None and "pub/sub" in report["notes"]["queues"]
    else:
        assert report["queues"] == [{"channel": "jobs", "group": "workers", "consumers": 1, "pending": 1, "lag": 1}]
    assert [(s["target"], s["name"], s["first"], s["last"]) for s in report["signals"]] == [
        ("qa", "done", 1, 1), ("sprint-1", "interface_ready", 1, 2)]  # fmt: skip
    assert all(time.time() - 60 < s["ts"] <= time.time() + 1 for s in report["signals"])
    assert report["memory"]["backend_bytes"] > 0


# Holds "build" and two slots of semaphore "gpu" (of 3) while "bob" then "carol" wait for
# "build", then runs `lockstep status` and prints its output.
HOLDING = """
import asyncio, subprocess, sys, lockstep
async def main(url, ns):
    def connect(member):
        return lockstep.connect(url, namespace=ns, member=member)
    async with connect("alice") as alice, connect("bob") as bob, connect("carol") as carol:
        await alice.lock("build", ttl=30)
        await alice.semaphore("gpu", 3, ttl=30)
        await bob.semaphore("gpu", 3, ttl=30)
        async def wait(coord):
            await coord.lock("build", ttl=30, wait=30)
        waiting = [asyncio.create_task(wait(bob))]
        while len((await alice.leases())[0].waiters) < 1:
            await asyncio.sleep(0.01)
        waiting.append(asyncio.create_task(wait(carol)))
        while len((await alice.leases())[0].waiters) < 2:
            await asyncio.sleep(0.01)
        status = await asyncio.create_subprocess_exec(sys.executable, "-m", "lockstep", "status", url, "--namespace", ns)
        await status.wait()
        for task in waiting:
            task.cancel()
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("driver", ["file", "redis"])
def test_status_lists_every_holder_and_the_queue_in_order(
    driver: str, request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> None:
    url = driver_url(driver, request, tmp_path)
    done = subprocess.run([sys.executable, "-c", HOLDING, url, namespace], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "leases (2 resource(s), 3 held, 2 waiting)" in lines
    build = next(line for line in lines if line.startswith("build "))
    assert build.split()[:4] == ["build", "lock", "alice", "1"] and build.endswith("2: bob, carol")
    gpu = lines.index(next(line for line in lines if line.startswith("gpu ")))
    assert lines[gpu].split()[:5] == ["gpu", "semaphore", "2/3", "alice", "1"]
    assert lines[gpu + 1].split()[:2] == ["bob", "2"]  # the second slot's holder, on its own row


def test_status_watch_redraws_until_ctrl_c(setup: tuple[str, str]) -> None:
    url, ns = setup
    proc = subprocess.Popen([sys.executable, "-m", "lockstep", "status", url, "--namespace", ns, "--watch", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.count("\x1b[H\x1b[2J") >= 2  # redrawn in place
    assert "Ctrl-C to stop" in out


def test_reset_with_yes_clears_one_namespace_only(setup: tuple[str, str]) -> None:
    url, ns = setup
    res = lockstep_cli("sweep", url, "--namespace", ns, "--reset", "--yes")
    assert res.returncode == 0, res.stderr
    assert "reaped 2 agent(s)" in res.stdout and "incarnation counter kept" in res.stdout
    assert "agents (0, 0 alive)" in lockstep_cli("status", url, "--namespace", ns).stdout
    assert "latest reapings (0)" in lockstep_cli("status", url, "--namespace", ns).stdout
    assert "agents (1, 0 alive)" in lockstep_cli("status", url, "--namespace", ns + "-other").stdout


def test_reset_refuses_without_a_terminal_then_asks_on_one(setup: tuple[str, str]) -> None:
    url, ns = setup
    res = lockstep_cli("sweep", url, "--namespace", ns, "--reset")
    assert res.returncode == 2
    assert "without a terminal" in res.stderr and "--yes" in res.stderr
    assert "agents (2" in lockstep_cli("status", url, "--namespace", ns).stdout  # nothing changed
    for answer, code in (("no", 2), (ns, 0)):
        primary, secondary = pty.openpty()
        try:
            os.write(primary, f"{answer}\n".encode())
            res = lockstep_cli("sweep", url, "--namespace", ns, "--reset", stdin=secondary)
        finally:
            os.close(primary)
            os.close(secondary)
        assert res.returncode == code, res.stdout + res.stderr
        assert "Type the namespace name to confirm" in res.stdout
    assert "agents (0, 0 alive)" in lockstep_cli("status", url, "--namespace", ns).stdout


def test_check_shows_the_three_membership_rows(tmp_path: Path) -> None:
    rows = ["orphans", "orphan-memory", "epic-memory"]
    res = lockstep_cli("check", f"file://{tmp_path / 'c.db'}", "--json", *[f"--only={r}" for r in rows], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    found = {r["key"]: r for r in json.loads(res.stdout)["rows"]}
    assert list(found) == rows
    for row in found.values():
        assert row["status"] == "pass" and row["measured"], row
    assert found["orphans"]["figures"]["cleaned"] == 6
    assert found["epic-memory"]["figures"]["growth_per_epic_bytes"] < 5 * 2**20
