"""Leases across real processes (file and Redis drivers): exclusion, fences, everyone served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(request.param, request, tmp_path)


def intervals(workers: list[Worker]) -> list[tuple[float, float, int]]:
    """(granted at, released at, fence) of every round of every worker."""
    out = []
    for w in workers:
        acquired = {e["fence"]: e["t"] for e in w.events if e["event"] == "acquired"}
        for e in w.events:
            if e["event"] == "released":
                out.append((acquired[e["fence"]], e["sent"], e["fence"]))
    return sorted(out)


@pytest.mark.parametrize(("slots", "procs", "rounds"), [(1, 4, 8), (2, 4, 6)])
async def test_processes_never_overlap_beyond_the_slots(
    shared_url: str, namespace: str, tmp_path: Path, slots: int, procs: int, rounds: int
) -> None:
    args = ["--url", shared_url, "--namespace", namespace, "--name", "proc", "--ttl", "5", "--wait", "30"]
    args += ["--slots", str(slots), "--rounds", str(rounds), "--hold", "0.01", "--write"]
    workers = [
        await Worker.start("lease_worker", "rounds", *args, "--member", f"p{i}", log_dir=tmp_path)
        for i in range(procs)
    ]
    try:
        await asyncio.gather(*(w.expect("done", timeout=60) for w in workers))
    finally:
        await stop_all(workers)
    spans = intervals(workers)
    assert len(spans) == procs * rounds
    # At any instant at most `slots` believed-held intervals are open.
    edges = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    assert most <= slots
    fences = [fence for _, _, fence in spans]  # in grant order
    assert len(set(fences)) == len(fences)
    if slots == 1:
        assert fences == sorted(fences)
