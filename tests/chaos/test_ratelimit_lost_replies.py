"""RELIABILITY.md scenario 5 for rate-limit counters: a lost reply never counts as unspent.

The fault proxy lets Redis run the script and drops its reply. The caller gets
``OutcomeUnknown`` (fail closed) and nothing is retried: the units the script took
stay taken, for a plain acquire and for a whole leased block alike. Also: the
proxy's seeded random drop mode (used by scenario 15) drops about the share asked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator

import lockstep
import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@pytest.fixture
async def coord(redis_server: RedisServer, proxy: FaultProxy) -> AsyncIterator[lockstep.Coordinator]:
    url = redis_server.url(port=proxy.port)
    async with lockstep.connect(url, namespace=f"lost{time.time_ns()}", timeout=0.5) as c:
        yield c
        proxy.passthrough()


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
async def test_every_lost_acquire_reply_stays_spent(
    coord: lockstep.Coordinator, proxy: FaultProxy, algorithm: str
) -> None:
    limiter = coord.rate_limit("lost", "6/60s", algorithm=algorithm, burst=6 if algorithm == "gcra" else None)  # type: ignore[arg-type]
    assert (await limiter.peek("k")).allowed  # loads the script: a lost NOSCRIPT reply would spend nothing
    for _ in range(3):
        proxy.drop_replies(count=1)
        with pytest.raises(lockstep.OutcomeUnknown, match="count as spent"):
            await limiter.acquire("k")
        proxy.passthrough()
    admitted = [(await limiter.acquire("k")).allowed for _ in range(6)]
    assert admitted == [True] * 3 + [False] * 3, "the three lost replies' units were spent"


async def test_a_lost_lease_reply_counts_the_whole_block_as_spent(coord: lockstep.Coordinator, proxy: FaultProxy) -> None:
    limiter = coord.rate_limit("lost-lease", "10/60s", algorithm="sliding_window", lease=4)
    assert (await limiter.peek("k")).allowed  # loads the script
    proxy.drop_replies(count=1)
    with pytest.raises(lockstep.OutcomeUnknown):
        await limiter.acquire("k")
    proxy.passthrough()
    assert limiter.try_acquire_nowait("k") is None, "the lost block never reached this process"
    admitted = 0
    while (await limiter.acquire("k")).allowed:
        admitted += 1
    assert admitted == 6, "10 minus the lost block of 4"
    await limiter.close()
    peek = await limiter.peek("k")
    assert not peek.allowed and peek.remaining == 0, "closing hands back nothing of the lost block"


def test_random_drop_mode_drops_about_the_share_asked(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError):
        proxy.drop_replies_randomly(0.0)
    with pytest.raises(ValueError):
        proxy.drop_replies_randomly(1.5)
    proxy.drop_replies_randomly(0.3, seed=7)
    lost = 0
    with socket.create_connection((proxy.host, proxy.port), timeout=0.05) as sock:
        for _ in range(100):
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            try:
                assert sock.recv(64) == b"+PONG\r\n"
            except TimeoutError:
                lost += 1
    assert 15 <= lost <= 45, lost
    assert proxy.stats.chunks_dropped == lost
    proxy.passthrough()
    with socket.create_connection((proxy.host, proxy.port), timeout=1.0) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(64) == b"+PONG\r\n", "passthrough ends the random drops"
