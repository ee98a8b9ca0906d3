"""`lockstep check`: the four rows of the seed's Assumption 2, on the file and Redis drivers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_check import run_cli
from tests.support.redis_server import RedisServer

LEASE_ROWS = ("test-lock-serial", "port-conflicts", "crashed-holder", "claim-conflicts")


@pytest.mark.parametrize("driver", ["file", "redis"])
def test_the_lease_rows_pass_with_measured_figures(driver: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if driver == "file":
        url = f"file://{tmp_path / 'coord.db'}"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url(db=5)
    only = [arg for row in LEASE_ROWS for arg in ("--only", row)]
    res = run_cli("check", url, "--json", *only)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["key"]: r for r in json.loads(res.stdout)["rows"]}
    assert set(rows) == set(LEASE_ROWS)
    assert all(r["status"] == "pass" and r["measured"] for r in rows.values()), rows
    assert rows["test-lock-serial"]["figures"]["overlaps"] == 0
    assert rows["port-conflicts"]["figures"]["eaddrinuse"] == 0
    assert rows["port-conflicts"]["figures"]["duplicates"] == 0
    assert rows["crashed-holder"]["figures"]["seconds"] <= 1.1
    assert rows["claim-conflicts"]["figures"]["detected_share"] == 100.0
    assert rows["claim-conflicts"]["figures"]["missed"] == 0
    assert sum(r["seconds"] for r in rows.values()) < 10
    if driver == "redis":
        assert server.client(db=5).dbsize() == 0  # every row deleted what it wrote


def test_the_crash_row_is_skipped_without_cross_process_state() -> None:
    res = run_cli("check", "memory://", "--json", "--only", "crashed-holder")
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = json.loads(res.stdout)["rows"]
    assert row["status"] == "skip" and "cross_process" in row["detail"]
