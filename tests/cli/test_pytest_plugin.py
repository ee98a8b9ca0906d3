"""The lockstep pytest plugin, in real pytest processes on the file driver and a real Redis.

Each test writes a small test suite into a temp dir and runs ``python -m pytest`` on it
(the plugin is loaded through its ``pytest11`` entry point, as for any user): sessions
with ``--lockstep-lock`` (or the ini option) run one at a time, the port fixtures give
ports that bind and that no concurrent session gets, a lost session lock fails the
session, and without its options the plugin does nothing at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lockstep
from tests.cli.test_lock import records, take_over, wait_for
from tests.conftest import driver_url

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

# Records each test's window ({"start", "end", "test"}) in $OUT; holds for $HOLD s.
WINDOWS = """
import json, os, time
def _record(name):
    start = time.time()
    open(os.environ["OUT"] + ".started", "w").write(str(os.getpid()))
    time.sleep(float(os.environ["HOLD"]))
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"start": start, "end": time.time(), "test": name}) + "\\n")
def test_first():
    _record("first")
def test_second():
    _record("second")
"""

# Leases 4 ports, binds them, and waits until $PARTIES sessions have done so (so their
# leases overlap in time) before recording them in $OUT.
PORTS = """
import glob, json, os, socket, time
def test_ports(lockstep_port, lockstep_ports):
    ports = [lockstep_port, *lockstep_ports(3)]
    socks = []
    for port in ports:
        s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen(); socks.append(s)
    open(f"{os.environ['OUT']}.{os.getpid()}.ready", "w").close()
    give_up = time.monotonic() + 30
    while len(glob.glob(os.environ["OUT"] + ".*.ready")) < int(os.environ["PARTIES"]):
        assert time.monotonic() < give_up
        time.sleep(0.01)
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"ports": ports, "pid": os.getpid()}) + "\\n")
"""

# The plugin is registered, yet started nothing: no thread, no connection (the URL in the
# environment points at a port nothing listens on).
INERT = """
import threading
def test_inert(request):
    assert request.config.pluginmanager.has_plugin("lockstep")
    assert [t.name for t in threading.enumerate() if t.name.startswith("lockstep")] == []
"""


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> tuple[str, str]:
    return driver_url(str(request.param), request, tmp_path), namespace


def suite(directory: Path, source: str, ini: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text(INI + ini)
    (directory / "test_suite.py").write_text(source)
    return directory


def start_pytest(directory: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def lock_options(backend: tuple[str, str], name: str, *more: str) -> list[str]:
    url, ns = backend
    return ["--lockstep-lock", name, "--lockstep-url", url, "--lockstep-namespace", ns, *more]


def test_sessions_with_the_lock_serialize(backend: tuple[str, str], tmp_path: Path) -> None:
    """Two sessions at once, one configured by options and one by its ini file."""
    url, ns = backend
    out = str(tmp_path / "windows.jsonl")
    by_options = suite(tmp_path / "a", WINDOWS)
    by_ini = suite(tmp_path / "b", WINDOWS, f"lockstep_lock = tests\nlockstep_url = {url}\nlockstep_namespace = {ns}\n")
    runs = [
        start_pytest(by_options, *lock_options(backend, "tests"), OUT=out, HOLD="0.3"),
        start_pytest(by_ini, OUT=out, HOLD="0.3"),
    ]
    for run in runs:
        code, text = finish(run)
        assert code == 0, text
    wins = sorted(records(Path(out)), key=lambda r: r["start"])  # type: ignore[arg-type,return-value]
    assert len(wins) == 4
    # One session's two tests, then the other's: no test of one ran inside the other.
    assert [w["test"] for w in wins] == ["first", "second", "first", "second"]
    assert wins[1]["end"] <= wins[2]["start"]  # type: ignore[operator]


def test_busy_session_lock_exits_75_naming_the_holder(tmp_path: Path, namespace: str) -> None:
    url = f"file://{tmp_path / 'coord.db'}"
    directory = suite(tmp_path / "s", INERT)

    async def main() -> tuple[int, str]:
        async with lockstep.connect(url, namespace=namespace, member="holder-9") as coord, coord.lock("tests", wait=0):
            run = start_pytest(directory, *lock_options((url, namespace), "tests", "--lockstep-lock-wait", "0.3"))
            return await asyncio.to_thread(finish, run)

    code, text = asyncio.run(main())
    assert code == 75, text
    assert "could not acquire 'tests' within 0.3 s: held by holder-9" in text


def test_lost_session_lock_fails_the_session(backend: tuple[str, str], tmp_path: Path) -> None:
    """The pytest process is paused past the lock's TTL while another process takes the
    lock: its running test passes, yet the session stops there and fails, saying why."""
    out = tmp_path / "windows.jsonl"
    directory = suite(tmp_path / "s", WINDOWS)
    run = start_pytest(directory, *lock_options(backend, "tests", "--lockstep-lock-ttl", "1"), OUT=str(out), HOLD="2")
    wait_for(Path(f"{out}.started"), timeout=30)
    os.kill(run.pid, signal.SIGSTOP)
    try:
        took = asyncio.run(take_over(*backend, "tests"))
    finally:
        os.kill(run.pid, signal.SIGCONT)
    code, text = finish(run)
    assert code == 1, f"{text}\ntaken over: {took}"
    assert "the session lock 'tests' was lost" in text and "lockstep: session lock lost" in text
    assert [r["test"] for r in records(out)] == ["first"]  # test_second never ran


def test_port_fixtures_give_distinct_bindable_ports(backend: tuple[str, str], tmp_path: Path) -> None:
    url, ns = backend
    out = str(tmp_path / "ports.jsonl")
    runs = [
        start_pytest(suite(tmp_path / f"s{i}", PORTS), "--lockstep-url", url, "--lockstep-namespace", ns, OUT=out, PARTIES="2")
        for i in range(2)
    ]
    for run in runs:
        code, text = finish(run)
        assert code == 0, text  # each bound its 4 ports while the other held its own
    first, second = (set(r["ports"]) for r in records(Path(out)))  # type: ignore[call-overload]
    assert len(first) == len(second) == 4
    assert not first & second


def test_plugin_is_inert_without_its_options(tmp_path: Path) -> None:
    started = time.monotonic()
    code, text = finish(start_pytest(suite(tmp_path / "s", INERT), LOCKSTEP_URL="redis://127.0.0.1:9/0"))
    assert code == 0, text
    assert time.monotonic() - started < 30
