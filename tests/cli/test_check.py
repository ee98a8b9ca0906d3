"""`lockstep check`: the checklist framework and the foundation rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lockstep import checks
from lockstep.checks import CheckContext, CheckResult, run_checks
from tests.support.redis_server import RedisServer

FOUNDATION_ROWS = {"connect", "clock", "kv", "codec", "bad-input"}


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_check_passes_on_the_default_file_driver(tmp_path: Path) -> None:
    res = run_cli("check", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "file driver" in res.stdout
    assert "0 failed" in res.stdout.splitlines()[-1]


@pytest.mark.parametrize("scheme", ["memory", "redis", "redis+streams"])
def test_check_json_on_other_drivers(scheme: str, redis_server: RedisServer) -> None:
    url = "memory://" if scheme == "memory" else redis_server.url(scheme=scheme)
    res = run_cli("check", url, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    rows = {r["key"]: r for r in doc["rows"]}
    assert FOUNDATION_ROWS <= set(rows)
    for key in FOUNDATION_ROWS:
        assert rows[key]["status"] == "pass", rows[key]
        assert rows[key]["measured"], rows[key]
    assert rows["codec"]["figures"]["msg_per_s"] > 0


def test_check_leaves_no_keys_behind(redis_server: RedisServer) -> None:
    # Other tests' keys in db 0 may expire meanwhile, so compare key names, not counts.
    client = redis_server.client()
    before = set(client.keys("*"))
    res = run_cli("check", redis_server.url(db=3))
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(client.keys("*")) - before == set(), "the check wrote keys outside its database"
    assert redis_server.client(db=3).dbsize() == 0


def test_unknown_row_is_a_config_error() -> None:
    res = run_cli("check", "memory://", "--only", "nope")
    assert res.returncode == 2
    assert "nope" in res.stderr


async def test_failing_and_crashing_rows_are_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    checks.registered_rows()
    monkeypatch.setattr(checks, "_ROWS", dict(checks._ROWS))

    @checks.check("t-fail", title="always fails", source="test", target="-")
    async def _fail(ctx: CheckContext) -> CheckResult:
        return CheckResult(passed=False, measured="0 of 1")

    @checks.check("t-crash", title="crashes", source="test", target="-")
    async def _crash(ctx: CheckContext) -> CheckResult:
        raise RuntimeError("boom")

    @checks.check("t-slow", title="hangs", source="test", target="-", deadline=0.2)
    async def _slow(ctx: CheckContext) -> CheckResult:
        import asyncio

        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    rows = {r.key: r for r in await run_checks("memory://", only=["t-fail", "t-crash", "t-slow"])}
    assert rows["t-fail"].status == "fail"
    assert rows["t-crash"].status == "fail" and "RuntimeError: boom" in rows["t-crash"].detail
    assert rows["t-slow"].status == "fail" and "within 0.2 s" in rows["t-slow"].detail
