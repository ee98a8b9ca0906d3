"""`lockstep check`'s messaging rows (seed Assumption 1) pass on every driver, with figures."""

from __future__ import annotations

import lockstep
from lockstep.checks import run_checks


async def test_messaging_rows_pass_with_measured_figures(url: str) -> None:
    rows = {r.key: r for r in await run_checks(url, only=["pubsub-throughput", "pubsub-latency"])}
    throughput, latency = rows["pubsub-throughput"], rows["pubsub-latency"]
    assert throughput.status == "pass", throughput
    assert latency.status == "pass", latency
    assert throughput.figures["published_per_s"] > 10_000 and throughput.figures["delivered"] == 10_000
    assert "msg/s published" in throughput.measured and "delivered" in throughput.measured
    assert latency.figures["avg_s"] < 0.1 and latency.figures["max_s"] < 0.5
    assert latency.figures["messages"] == 150
    assert "avg" in latency.measured and "max" in latency.measured
    # the rows cleaned up after themselves: a replay of their channels finds nothing
    if lockstep.Capability.DURABLE_MESSAGES in lockstep.connect(url).capabilities:
        async with lockstep.connect(url, namespace="check-probe") as coord:
            async with coord.subscribe("check:latency:test", from_id="0") as sub:
                assert await sub.get_batch(10, timeout=0.2) == []
