"""The seed's Assumption 2 test with real processes, on the file and Redis drivers.

10 sprint processes x 10 rounds: each round leases 2 ports and listens on them, takes
the test lock (:class:`lockstep.cfn.TestLockCoordinator`), runs for 20 ms and lets go.
Asserted: every round ran, 0 overlapping execution windows (compared pairwise, as
the seed does), 0 EADDRINUSE, and no port held by two sprints at overlapping times.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url

pytestmark = pytest.mark.slow

SPRINTS, ROUNDS = 10, 10


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(str(request.param), request, tmp_path)


def overlapping(windows: list[tuple[float, float, str]]) -> list[tuple[str, str]]:
    return [
        (a, b)
        for i, (s1, e1, a) in enumerate(windows)
        for s2, e2, b in windows[i + 1 :]
        if s1 < e2 and s2 < e1
    ]


async def test_ten_sprints_ten_rounds_never_overlap_nor_collide_on_ports(
    shared_url: str, namespace: str, tmp_path: Path
) -> None:
    workers = await asyncio.gather(*(
        Worker.start("sprint_worker", "--url", shared_url, "--namespace", namespace, "--sprint", f"sprint-{i}",
                     "--rounds", str(ROUNDS), log_dir=tmp_path / f"s{i}")
        for i in range(SPRINTS)
    ))  # fmt: skip
    try:
        await asyncio.gather(*(w.expect("ready", timeout=30) for w in workers))
        started = time.monotonic()
        for w in workers:
            w.send("go")
        await asyncio.gather(*(w.expect("done", timeout=60) for w in workers))
        took = time.monotonic() - started
    finally:
        await stop_all(workers)

    windows = [(e["start"], e["end"], f"{i}/{e['round']}") for i, w in enumerate(workers)
               for e in w.events if e["event"] == "window"]  # fmt: skip
    assert len(windows) == SPRINTS * ROUNDS
    assert overlapping(windows) == []

    in_use = [(i, e["in_use"]) for i, w in enumerate(workers) for e in w.events if e["event"] == "ports" and e["in_use"]]
    assert in_use == [], f"EADDRINUSE on leased ports: {in_use}"

    held: dict[int, list[tuple[float, float, int]]] = {}
    for i, w in enumerate(workers):
        bound = {e["round"]: e for e in w.events if e["event"] == "ports"}
        for e in w.events:
            if e["event"] == "released_ports":
                for port in e["ports"]:
                    held.setdefault(port, []).append((bound[e["round"]]["t"], e["sent"], i))
    for port, spans in held.items():
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            assert end <= start, f"port {port} held by sprints {a} and {b} at once"
    # 100 runs of 20 ms, one at a time: the hand-overs must not dominate
    assert took < 20, f"100 serialized rounds took {took:.1f} s"
