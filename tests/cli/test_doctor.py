"""`lockstep doctor` against real backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env_cmd = [sys.executable, "-m", "lockstep", *args]
    return subprocess.run(env_cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_doctor_reports_version_and_warns_without_aof(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly="no")
    server.start()
    try:
        res = run_cli("doctor", f"redis://127.0.0.1:{server.port}")
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr
    assert "redis 7." in res.stdout
    assert "WARNING: appendonly is off" in res.stdout
    assert "NOT durable" in res.stdout


def test_doctor_quiet_with_durable_redis(redis_server: RedisServer) -> None:
    res = run_cli("doctor", redis_server.url())
    assert res.returncode == 0, res.stderr
    assert "redis 7." in res.stdout
    assert "appendonly is off" not in res.stdout
    assert "(durable)" in res.stdout


def test_doctor_on_the_default_file_driver(tmp_path: Path) -> None:
    res = run_cli("doctor", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "(from default)" in res.stdout
    assert "file" in res.stdout
    assert (tmp_path / ".lockstep" / "coord.db").exists()


def test_doctor_unreachable_exits_2_within_deadline() -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    res = run_cli("doctor", f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 15
    assert res.returncode == 2
    assert "BackendUnavailable" in res.stderr or "backend error" in res.stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [("reddis://x", "did you mean 'redis'"), ("file:///tmp/x.db?bogus=1", "bogus")],
)
def test_doctor_config_errors_exit_2_naming_the_problem(url: str, needle: str) -> None:
    res = run_cli("doctor", url)
    assert res.returncode == 2
    assert needle in res.stderr


def test_password_never_printed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, acl_users={"alice": "s3cret-pw"})
    server.start()
    try:
        ok = run_cli("doctor", server.url(user="alice", password="s3cret-pw"))
        bad = run_cli("doctor", server.url(user="alice", password="wrong-pw"))
    finally:
        server.stop()
    assert ok.returncode == 0, ok.stderr
    assert "s3cret-pw" not in ok.stdout + ok.stderr
    assert bad.returncode == 2
    assert "wrong-pw" not in bad.stdout + bad.stderr
