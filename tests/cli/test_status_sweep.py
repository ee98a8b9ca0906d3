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
SETUP = """
import asyncio, sys, lockstep
async def main(url, ns):
    async with lockstep.connect(url, namespace=ns) as coord:
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
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def lockstep_cli(
    *args: str, stdin: int | None = subprocess.DEVNULL, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockstep", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=stdin, cwd=ROOT)  # fmt: skip


@pytest.fixture(params=["file", "redis"])
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
    assert "lock:test-runner" in out and "dead" in out.split("leases owned by agents")[1]
    assert "memory" in out and "backend" in out
    assert "other" not in out  # another namespace

    res = lockstep_cli("sweep", url, "--namespace", ns)
    assert res.returncode == 0, res.stderr
    assert "reaped 2 agent(s)" in res.stdout  # both: their process is gone
    assert "leases freed: lock:test-runner" in res.stdout
    assert "keys deleted: 2" in res.stdout
    assert "nothing to reap" in lockstep_cli("sweep", url, "--namespace", ns).stdout
    status = lockstep_cli("status", url, "--namespace", ns).stdout
    assert "agents (0, 0 alive)" in status and "latest reapings (2)" in status
    assert "agents (1, 0 alive)" in lockstep_cli("status", url, "--namespace", ns + "-other").stdout


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
