"""RELIABILITY.md scenario 13: a reaper against a live but paused agent, on file and Redis.

An agent process that heartbeats and writes every 50 ms is SIGSTOPped past its ttl; two
reaper processes sweep at the same moment; the agent gets SIGCONT. Passes when both
reapers agree (exactly one reaped it, with its keys), the agent's next heartbeat fails
with ``Reaped``, and it makes no accepted write afterwards: its writes are refused by the
backend itself (checked against its incarnation), so no key it wrote survives.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

import lockstep
from tests.chaos.workers import Worker, stop_all
from tests.conftest import driver_url

pytestmark = pytest.mark.slow

TTL = 0.5


@pytest.fixture(params=["file", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return driver_url(str(request.param), request, tmp_path)


async def test_paused_agent_is_reaped_once_and_makes_no_write_after(
    shared_url: str, namespace: str, tmp_path: Path
) -> None:
    common = ["--url", shared_url, "--namespace", namespace]
    # Its own loop heartbeats every 50 ms, so the background heart (0.4 s) stays idle.
    agent = await Worker.start("agent_worker", "writer", *common, "--prefix", "paused", "--ttl", str(TTL),
                               "--interval", "0.4", log_dir=tmp_path)  # fmt: skip
    reapers = [await Worker.start("agent_worker", "reaper", *common, log_dir=tmp_path) for _ in range(2)]
    workers = [agent, *reapers]
    try:
        (agent_id,) = (await agent.expect("ready", timeout=30))["agents"]
        for reaper in reapers:
            await reaper.expect("ready", timeout=30)
        for _ in range(3):
            assert (await agent.expect("write"))["ok"]
        # Paused just after a write, in its 50 ms sleep: on SQLite a process stopped inside a
        # transaction would hold the database's write lock and stall every other writer.
        agent.signal(signal.SIGSTOP)
        await asyncio.sleep(TTL + 0.3)

        for reaper in reapers:  # both at once
            reaper.send("go")
        one, two = [await r.expect("swept", timeout=20) for r in reapers]
        assert sorted(one["agents"] + two["agents"]) == [agent_id], (one, two)
        assert one["keys_deleted"] + two["keys_deleted"] >= 3

        async with lockstep.connect(shared_url, namespace=namespace, timeout=5) as coord:
            assert await coord.members() == []
            agent.signal(signal.SIGCONT)
            resumed = time.monotonic()
            done = await agent.expect("done", timeout=20)
            after = [e for e in agent.events if e.get("sent", e["t"]) >= resumed]
            # Its first call after resuming, a heartbeat or a write (SIGSTOP may land between
            # the two), is refused with Reaped.
            calls = [e for e in after if e["event"] in ("heartbeat", "write")]
            assert calls and calls[0]["ok"] is False and calls[0]["error"] == "Reaped", after
            assert not [e for e in after if e["event"] == "write" and e["ok"]], after
            server_put = next(e for e in agent.events if e["event"] == "server-put")
            assert server_put["accepted"] is False  # refused by the backend, not only locally
            assert done["reason"]
            # Any write accepted after the reap would still be there: none is.
            last = server_put["n"]
            assert [n for n in range(1, last + 1) if await coord.get(f"w{n}", agent=agent_id) is not None] == []
            assert await coord.members() == []
    finally:
        await stop_all(workers)
