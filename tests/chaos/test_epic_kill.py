"""An epic whose sprint process is killed (``kill -9``) while it holds the test lock.

The runner must report it (died, killed by SIGKILL), free its lock (its agent is swept at
once; the lease's TTL bounds it in any case), stop the
sprint depending on it, let the others finish, and end with a clear failure instead of
hanging. Real worker processes on the file and Redis drivers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from lockstep.epic import EpicRunner, SprintRecord, parse_plan, render, summary

from tests.conftest import driver_url

pytestmark = pytest.mark.slow

SCALE = 0.05  # real seconds per simulated minute
LEASE_TTL = 2.0  # s: the test lock's lease


def sprint(sid: str, deps: list[str], test_minutes: float, build: float = 6) -> dict[str, Any]:
    return {
        "id": sid,
        "depends_on": deps,
        "prep": [{"name": "mocks", "minutes": 1}],
        "phase": [
            {"name": "build", "minutes": build, "interface": True},
            {"name": "test", "minutes": test_minutes, "test": True, "ports": 1},
            {"name": "review", "minutes": 1},
        ],
    }


PLAN = parse_plan({
    "epic": {"name": "kill drill", "time_scale": SCALE},
    "sprint": [sprint("victim", [], 200, build=1), sprint("after-victim", ["victim"], 2),
               sprint("other-1", [], 2), sprint("other-2", [], 2)],
})  # fmt: skip


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(request.param, request, tmp_path)


async def test_a_killed_sprint_is_reported_its_lock_freed_and_the_epic_ends(shared_url: str, namespace: str) -> None:
    killed_at: list[float] = []
    granted_after_kill: list[float] = []

    def on_event(record: SprintRecord, event: dict[str, Any]) -> None:
        if record.id == "victim" and event["event"] == "lock_acquired" and not killed_at:
            assert record.pid is not None
            os.kill(record.pid, signal.SIGKILL)  # by its pid: that one worker process only
            killed_at.append(time.monotonic())
        elif event["event"] == "lock_acquired" and killed_at and record.id != "victim":
            granted_after_kill.append(event["t"])

    runner = EpicRunner(PLAN, url=shared_url, namespace=namespace, workers="process", on_event=on_event, timeout=60,
                        lease_ttl=LEASE_TTL)
    started = time.monotonic()
    result = await asyncio.wait_for(runner.run(), 90)
    assert time.monotonic() - started < 45

    states = {sid: r.state for sid, r in result.sprints.items()}
    assert states == {"victim": "died", "after-victim": "cancelled", "other-1": "done", "other-2": "done"}
    assert "killed by SIGKILL" in result.sprints["victim"].reason
    assert "dependency victim died" in result.sprints["after-victim"].reason
    assert not result.ok and not result.timed_out
    # The lock was freed: by the sweep or the file driver's lock file at once, by the lease's
    # TTL at the latest (Redis, until leases record their owning agent: see the runbook).
    assert killed_at and granted_after_kill
    freed_after = min(granted_after_kill) - killed_at[0]
    assert freed_after < LEASE_TTL + 1.5, freed_after
    if shared_url.startswith("file"):
        assert freed_after < 2.0, freed_after
    assert "victim" in result.reaped
    assert result.test_lock_holders == []
    text = render(result)
    assert "victim died: process killed by SIGKILL" in text and "test lock after the run: free" in text
    assert "FAILED" in text
    assert summary(result)["sprints"]["other-1"]["state"] == "done"
