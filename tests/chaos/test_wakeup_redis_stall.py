"""RELIABILITY.md scenario 6 for waits: redis-server SIGSTOPped for 3 s.

Every wait (a signal, ACKs, a barrier, the cfn ACK wait) returns by its deadline plus
50 ms, with its timed-out result, whether the stall began before the wait or during it;
after the stall, signals and barriers work again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import lockstep
import pytest
from lockstep.barriers import BarrierResult
from lockstep.cfn import BlockingCoordinationManager
from lockstep.errors import WaitTimeout

from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

DEADLINE_SLACK = 0.05  # s past the deadline (scenario 6)
BUSY = 0.05  # s more for a busy 2-core box


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", appendonly="everysec") as s:
        yield s


async def timed(call: Awaitable[Any]) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        result: Any = await call
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result


@pytest.mark.parametrize("scheme", ["redis", "redis+streams"])
async def test_waits_return_by_their_deadline_while_redis_is_stalled(server: RedisServer, scheme: str) -> None:
    url = server.url(scheme=scheme)
    async with lockstep.connect(url, namespace="s6", member="a", timeout=0.5) as a, \
            lockstep.connect(url, namespace="s6", member="b", timeout=0.5) as b:  # fmt: skip
        sig = await a.signal("t", "warm", 1)  # connections, scripts and subscriptions warmed up
        await b.wait_signal("t", "warm", timeout=2)
        await a.barrier("warm", ["a"], timeout=2, me="a")

        # 1. Waits already running when the stall begins.
        running = [
            asyncio.ensure_future(timed(b.wait_signal("t", "never", timeout=1.0))),
            asyncio.ensure_future(timed(a.wait_acks(sig, ["x", "y"], timeout=1.0))),
            asyncio.ensure_future(timed(a.barrier("bar", ["a", "z"], timeout=1.0, me="a"))),
        ]
        await asyncio.sleep(0.2)
        server.pause()
        paused = time.monotonic()
        try:
            outcomes = await asyncio.gather(*running)
            # 2. Waits that begin during the stall.
            outcomes += [
                await timed(b.wait_signal("t", "never", timeout=0.7)),
                await timed(a.wait_acks(sig, ["x"], timeout=0.7)),
                await timed(a.barrier("bar2", ["a", "z"], timeout=0.7, me="a")),
                await timed(BlockingCoordinationManager(a, "a").wait_for_acks(["b"], "go", 0.7)),
            ]
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - paused)))
        finally:
            server.resume()
        limits = [1.0, 1.0, 1.0, 0.7, 0.7, 0.7, 0.7]
        for (took, result), limit in zip(outcomes, limits, strict=True):
            assert limit - 0.01 <= took < limit + DEADLINE_SLACK + BUSY, f"{result!r} after {took:.3f} s (limit {limit})"
        waited_signal, acks, bar = (r for _, r in outcomes[:3])
        assert isinstance(waited_signal, WaitTimeout)
        assert acks.missing == ["x", "y"] and not acks
        assert isinstance(bar, BarrierResult) and bar.state == "timed_out"
        assert isinstance(outcomes[3][1], WaitTimeout)
        assert isinstance(outcomes[5][1], BarrierResult) and outcomes[5][1].state == "timed_out"
        assert outcomes[6][1] == {}

        # 3. After the stall: everything works again.
        waiting = asyncio.ensure_future(b.wait_signal("t", "after", timeout=10))
        await asyncio.sleep(0.1)
        await a.signal("t", "after", "back")
        assert (await waiting).data == "back"
        together = await asyncio.gather(a.barrier("post", ["a", "b"], timeout=10, me="a"),
                                        b.barrier("post", ["a", "b"], timeout=10, me="b"))  # fmt: skip
        assert [r.state for r in together] == ["released", "released"]
