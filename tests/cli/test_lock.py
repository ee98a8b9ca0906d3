"""`lockstep lock NAME -- CMD` as real processes, on the file driver and a real Redis.

CMD is a small Python program (WINDOW) that records, per run, when it started and
ended holding the lock, with the fence and ports it was given, so the tests can check
what the command promises: runs never overlap, the exit status is CMD's, leased ports
bind, and a lost lease stops CMD.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lockstep
from lockstep.cli_lock import EXIT_BUSY, EXIT_LEASE_LOST
from tests.cli.test_status_sweep import ROOT, lockstep_cli
from tests.conftest import driver_url
from tests.support.redis_server import RedisServer

# CMD: append {"start", "end", "fence", "ports", "pid"} to argv[1] as one JSON line;
# hold for argv[2] s; on SIGTERM write "term" to argv[1] + ".term" (and exit, unless argv[3]
# says "ignore": then only SIGKILL ends it). Bind every leased port to prove it free.
WINDOW = r"""
import json, os, signal, socket, sys, time
out, hold, on_term = sys.argv[1], float(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "exit")
def term(signum, frame):
    open(out + ".term", "a").write("term\n")
    if on_term == "exit":
        sys.exit(143)
signal.signal(signal.SIGTERM, term)
ports = [int(p) for p in os.environ.get("LOCKSTEP_PORTS", "").split(",") if p]
socks = []
for port in ports:
    s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen(); socks.append(s)
start = time.time()
open(out + ".started", "w").write(str(os.getpid()))
end_at = time.monotonic() + hold
while time.monotonic() < end_at:
    time.sleep(0.01)
rec = {"start": start, "end": time.time(), "fence": int(os.environ["LOCKSTEP_FENCE"]),
       "lock": os.environ["LOCKSTEP_LOCK"], "ports": ports, "pid": os.getpid()}
with open(out, "a") as f:
    f.write(json.dumps(rec) + "\n")
"""


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> tuple[str, str]:
    return driver_url(str(request.param), request, tmp_path), namespace


def start_lock(backend: tuple[str, str], name: str, *options: str, cmd: list[str]) -> subprocess.Popen[str]:
    url, ns = backend
    return subprocess.Popen(
        [sys.executable, "-m", "lockstep", "lock", name, "--url", url, "--namespace", ns, *options, "--", *cmd],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def window(out: Path, hold: float, *extra: str) -> list[str]:
    return [sys.executable, "-c", WINDOW, str(out), str(hold), *extra]


def records(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def wait_for(path: Path, timeout: float = 20.0) -> None:
    give_up = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < give_up, f"{path.name} never appeared"
        time.sleep(0.01)


def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_runs_serialize_and_get_increasing_fences(backend: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "windows.jsonl"
    runs = [start_lock(backend, "suite", "--wait", "30", cmd=window(out, 0.4)) for _ in range(3)]
    for run in runs:
        code, err = finish(run)
        assert code == 0, err
    wins = sorted(records(out), key=lambda r: r["start"])  # type: ignore[arg-type,return-value]
    assert len(wins) == 3
    for before, after in itertools.pairwise(wins):
        assert before["end"] <= after["start"], f"windows overlap: {before} {after}"  # type: ignore[operator]
        assert before["fence"] < after["fence"]  # type: ignore[operator]
    assert {w["lock"] for w in wins} == {"suite"}


def test_exit_status_is_cmds(backend: tuple[str, str]) -> None:
    url, ns = backend
    common = ["lock", "st", "--url", url, "--namespace", ns, "--"]
    assert lockstep_cli(*common, sys.executable, "-c", "import sys; sys.exit(7)").returncode == 7
    killed = lockstep_cli(*common, sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.returncode == 128 + signal.SIGKILL
    missing = lockstep_cli(*common, "/nonexistent/cmd")
    assert missing.returncode == 127 and "cannot run '/nonexistent/cmd'" in missing.stderr
    # Each run released the lock: one more, trying once, gets it.
    assert lockstep_cli(*common[:-1], "--wait", "0", "--", "true").returncode == 0


def test_missing_command_is_a_usage_error() -> None:
    for args in (["lock", "x"], ["lock", "x", "--"], ["lock", "x", "--ttl", "5", "--"]):
        res = lockstep_cli(*args)
        assert res.returncode == 2 and "give the command to run after `--`" in res.stderr, res.stderr
    res = lockstep_cli("lock", "x", "--ttl", "0", "--", "true")
    assert res.returncode == 2 and "positive number of seconds" in res.stderr


def test_busy_lock_exits_75_naming_the_holder(backend: tuple[str, str]) -> None:
    url, ns = backend

    async def main() -> subprocess.CompletedProcess[str]:
        async with lockstep.connect(url, namespace=ns, member="holder-7") as coord, coord.lock("busy", wait=0):
            return await asyncio.to_thread(
                lockstep_cli, "lock", "busy", "--url", url, "--namespace", ns, "--wait", "0.3", "--", "true"
            )

    started = time.monotonic()
    res = asyncio.run(main())
    assert res.returncode == EXIT_BUSY, res.stderr
    assert "could not acquire 'busy' within 0.3 s: held by holder-7" in res.stderr
    assert time.monotonic() - started < 15


def test_ports_are_exported_and_bindable(backend: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "ports.jsonl"
    code, err = finish(start_lock(backend, "p", "--ports", "3", cmd=window(out, 0.0)))
    assert code == 0, err  # WINDOW bound every port before recording
    (rec,) = records(out)
    ports = rec["ports"]
    assert isinstance(ports, list) and len(set(ports)) == 3 and all(1024 <= p <= 65535 for p in ports)
    for port in ports:  # released with the run: free again
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_sigterm_is_forwarded_and_the_lock_released(backend: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "w.jsonl"
    run = start_lock(backend, "fw", cmd=window(out, 30))
    wait_for(Path(f"{out}.started"))
    run.send_signal(signal.SIGTERM)
    code, err = finish(run)
    assert code == 143, err  # CMD's own status after the forwarded SIGTERM
    assert Path(f"{out}.term").read_text() == "term\n"
    url, ns = backend
    assert lockstep_cli("lock", "fw", "--url", url, "--namespace", ns, "--wait", "0", "--", "true").returncode == 0


async def take_over(url: str, ns: str, name: str) -> tuple[int, float]:
    """Acquire ``name`` (once the paused holder's TTL has run out): the new fence, and
    how long after the call it was granted."""
    started = time.monotonic()
    async with lockstep.connect(url, namespace=ns) as coord, coord.lock(name, ttl=30, wait=10) as lease:
        return lease.fence, time.monotonic() - started


@pytest.mark.parametrize("on_term", ["exit", "ignore"])
def test_lost_lease_stops_cmd(backend: tuple[str, str], tmp_path: Path, on_term: str) -> None:
    """The holder (lockstep itself, not CMD: CMD has its own process group) is paused past
    its TTL and another process takes the lock; once resumed it must stop CMD — SIGTERM,
    then SIGKILL after --grace for a CMD that ignores SIGTERM — and exit 76."""
    out = tmp_path / "w.jsonl"
    run = start_lock(backend, "lost", "--ttl", "1", "--grace", "0.5", cmd=window(out, 60, on_term))
    wait_for(Path(f"{out}.started"))
    child = int(Path(f"{out}.started").read_text())
    os.kill(run.pid, signal.SIGSTOP)
    try:
        new_fence, _ = asyncio.run(take_over(*backend, "lost"))
    finally:
        os.kill(run.pid, signal.SIGCONT)
    stopped_at = time.monotonic()
    code, err = finish(run)
    assert code == EXIT_LEASE_LOST, err
    assert "lost lock 'lost' (fence 1)" in err and "stopping it" in err
    assert new_fence > 1
    assert Path(f"{out}.term").read_text() == "term\n"  # SIGTERM first
    assert records(out) == []  # CMD never got to finish its work
    assert time.monotonic() - stopped_at < 10
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # gone (SIGKILLed after the grace when it ignored SIGTERM)


def test_redis_paused_past_the_ttl_stops_cmd(tmp_path: Path, namespace: str) -> None:
    """Renewals get no answer until the deadline: lost, CMD stopped, exit 76 (bounded)."""
    with RedisServer(tmp_path / "redis") as server:
        out = tmp_path / "w.jsonl"
        run = start_lock((server.url(), namespace), "paused", "--ttl", "1", "--grace", "1", cmd=window(out, 60))
        wait_for(Path(f"{out}.started"))
        server.pause()
        try:
            code, err = finish(run, timeout=30)
        finally:
            server.resume()
    assert code == EXIT_LEASE_LOST, err
    assert "lost lock 'paused'" in err and "deadline" in err
    assert Path(f"{out}.term").read_text() == "term\n"


def test_cmd_owns_the_terminal(tmp_path: Path) -> None:
    """On a terminal CMD's group is made the foreground: CMD can read it (no SIGTTIN
    stop) and Ctrl-C reaches CMD, whose status (130) becomes lockstep's."""
    script = "print('got', input()); import time; time.sleep(30)"
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execv(sys.executable, [sys.executable, "-m", "lockstep", "lock", "tty", "--url",
                                  f"file://{tmp_path / 'coord.db'}", "--", sys.executable, "-c", script])  # fmt: skip
    try:
        out = b""
        os.write(fd, b"hello\n")  # the terminal buffers it until CMD reads
        give_up = time.monotonic() + 30
        while b"got hello" not in out:
            assert time.monotonic() < give_up, out
            if select.select([fd], [], [], 0.2)[0]:
                out += os.read(fd, 1024)
        os.write(fd, b"\x03")  # Ctrl-C
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
    finally:
        os.close(fd)
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
