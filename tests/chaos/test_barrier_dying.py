"""RELIABILITY.md scenario 11: a barrier of 6 processes, one of which dies or comes late.

* killed before arriving (``kill -9``): the 5 others get ``broken(dead=[w])`` well before
  their 20 s timeout (membership sees its process gone);
* late past the timeout: the 5 others get ``timed_out(missing=[w])`` at the deadline, and
  w, arriving afterwards, is told that round's outcome at once (it releases nothing).

Real worker processes on the file and Redis drivers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url

pytestmark = pytest.mark.slow

PARTIES = [f"w{i}" for i in range(6)]
SLACK = 0.3  # s: processes on a busy 2-core box


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(request.param, request, tmp_path)


async def start(url: str, namespace: str, tmp_path: Path, timeout: float, delays: dict[str, float]) -> list[Worker]:
    workers = []
    for party in PARTIES:
        args = ["--url", url, "--namespace", namespace, "--me", party, "--name", "phase", "--parties",
                ",".join(PARTIES), "--timeout", str(timeout), "--agent-ttl", "10", "--delay",
                str(delays.get(party, 0.0))]  # fmt: skip
        workers.append(await Worker.start("sig_worker", "barrier", *args, log_dir=tmp_path))
    for w in workers:
        await w.expect("registered", timeout=30)
    return workers


async def test_a_party_killed_before_arriving_breaks_the_barrier(
    shared_url: str, namespace: str, tmp_path: Path
) -> None:
    workers = await start(shared_url, namespace, tmp_path, timeout=20.0, delays={})
    victim, others = workers[-1], workers[:-1]
    try:
        await victim.kill()  # registered, never arrives; its agent's ttl (10 s) has not run out
        for w in others:
            w.send("go")
        arrivals = [await w.expect("arriving", timeout=10) for w in others]
        results = [await w.expect("result", timeout=25) for w in others]
    finally:
        await stop_all(workers)
    for result in results:
        assert result["state"] == "broken", result
        assert result["dead"] == ["w5"] and "w5" in result["missing"]  # others may not have arrived yet
        assert result["round"] == 1
    assert len({tuple(r["missing"]) for r in results}) == 1  # one outcome, decided once for all
    last_arrival = max(a["t"] for a in arrivals)
    assert max(r["t"] for r in results) - last_arrival < 5.0  # well before the 20 s timeout


async def test_a_late_party_times_the_round_out_at_the_deadline(
    shared_url: str, namespace: str, tmp_path: Path
) -> None:
    timeout = 1.2
    workers = await start(shared_url, namespace, tmp_path, timeout=timeout, delays={"w5": timeout + 0.5})
    late, others = workers[-1], workers[:-1]
    try:
        for w in workers:
            w.send("go")
        arrivals = {w.pid: await w.expect("arriving", timeout=10) for w in others}
        results = {w.pid: await w.expect("result", timeout=10) for w in others}
        late_arrival = await late.expect("arriving", timeout=10)
        late_result = await late.expect("result", timeout=10)
    finally:
        await stop_all(workers)
    for pid, result in results.items():
        assert result["state"] == "timed_out" and result["missing"] == ["w5"], result
        took = result["t"] - arrivals[pid]["t"]
        assert timeout - 0.05 <= took < timeout + SLACK, took
    # w5 came after the round was decided: told at once, and it released nothing.
    assert late_result["state"] == "timed_out" and late_result["round"] == 1
    assert late_result["missing"] == ["w5"]
    assert late_result["t"] - late_arrival["t"] < 1.0
