"""RELIABILITY.md scenarios 3-6 for leases, against real redis-server processes.

3. Redis killed and restarted (RDB only, AOF everysec, AOF always): clients reconnect
   within 2 s; leases held across it are reported lost; with AOF no fence regresses;
   with RDB only the regression is detected and reported.
4. Partition (FaultProxy blackhole for twice the ttl): ``lost`` fires by the lease
   deadline; others acquire after the TTL; every blocking call returns by its deadline.
5. Lost replies (FaultProxy drop_replies) on acquire and on release: no orphan lock the
   SDK does not know of; the outcome is resolved by token.
6. Redis stalled (SIGSTOP 3 s): each call returns by its deadline + 50 ms with a
   timeout; no double holders afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import lockstep
import pytest
from lockstep.errors import DataLossDetected, LockTimeout, OutcomeUnknown

from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.slow

SLACK = 0.1  # s: how late past its deadline a call may return on a busy 2-core box


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", appendonly="everysec") as s:
        yield s


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.host, server.port) as p:
        yield p


async def timed(call: Awaitable[Any]) -> tuple[float, Any]:
    started = time.monotonic()
    try:
        result: Any = await call
    except Exception as exc:  # noqa: BLE001 -- the outcome is what is measured
        result = exc
    return time.monotonic() - started, result


async def cycle(coord: lockstep.Coordinator, name: str, times: int) -> int:
    fence = 0
    for _ in range(times):
        lease = await coord.lock(name, ttl=5, wait=2)
        fence = lease.fence
        await lease.release()
    return fence


# -- 3. restart ------------------------------------------------------------------------------
@pytest.mark.parametrize("appendonly", ["no", "everysec", "always"])
async def test_restart_reports_leases_lost_and_never_reuses_a_fence(tmp_path: Path, appendonly: str) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=appendonly).start()
    try:
        async with lockstep.connect(server.url(), namespace="r3", member="a", timeout=2) as coord:
            highest = await cycle(coord, "r", 5)
            held = await coord.lock("held", ttl=3, wait=1)
            if appendonly == "no":
                with server.client() as c:
                    c.config_set("save", "")  # no snapshot from now on: what follows dies with the crash
                highest = await cycle(coord, "r", 5)
            elif appendonly == "everysec":
                await asyncio.sleep(1.5)  # let the once-a-second fsync cover every write
            server.kill()
            server.restart()
            restarted = time.monotonic()
            while True:
                try:
                    await coord.ping(timeout=0.5)
                    break
                except lockstep.BackendError:
                    assert time.monotonic() - restarted < 2.0, "no reconnect within 2 s"
                    await asyncio.sleep(0.05)
            assert time.monotonic() - restarted < 2.0
            await asyncio.wait_for(held.lost, 5)
            assert held.lost.reason and ("restarted" in held.lost.reason or "no longer" in held.lost.reason)
            if appendonly == "no":
                with pytest.raises(DataLossDetected, match="went backwards"):
                    await coord.lock("r", ttl=5, wait=1)
            lease = await coord.lock("r", ttl=5, wait=1)
            assert lease.fence > highest
            await lease.release()
    finally:
        server.stop()


# -- 4. partition ----------------------------------------------------------------------------
async def test_partition_loses_the_lease_by_its_deadline(server: RedisServer, proxy: FaultProxy) -> None:
    ttl = 1.0
    async with (
        lockstep.connect(server.url(port=proxy.port), namespace="r4", member="cut", timeout=1) as cut,
        lockstep.connect(server.url(), namespace="r4", member="other", timeout=1) as other,
    ):
        lease = await cut.lock("part", ttl=ttl, wait=1)
        lost_at: list[float] = []

        async def watch() -> None:
            await lease.lost
            lost_at.append(time.monotonic())

        watcher = asyncio.create_task(watch())
        proxy.blackhole()
        started = time.monotonic()
        try:
            for call, deadline, error in [
                (cut.lock("elsewhere", wait=0.3), 0.3, LockTimeout),
                (cut.ping(timeout=0.3), 0.3, lockstep.Timeout),
                (lease.extend(timeout=0.3), 0.3, lockstep.Timeout),
                (cut.lease_holders("part", timeout=0.3), 0.3, lockstep.Timeout),
            ]:
                took, outcome = await timed(call)
                assert isinstance(outcome, error), outcome
                assert took < deadline + SLACK
            await asyncio.wait_for(watcher, max(0.0, lease.deadline - time.monotonic()) + SLACK)
            assert lost_at[0] <= lease.deadline + SLACK
            took, taken = await timed(other.lock("part", ttl=5, wait=3))
            assert isinstance(taken, lockstep.leases.Lease) and taken.fence > lease.fence
            took, outcome = await timed(lease.release(timeout=0.3))
            assert isinstance(outcome, OutcomeUnknown | bool) and took < 0.3 + SLACK
            await asyncio.sleep(max(0.0, 2 * ttl - (time.monotonic() - started)))
        finally:
            proxy.passthrough()
        await asyncio.sleep(0.3)  # the held-back release runs now: it must not touch the new holder
        assert [h.owner for h in await other.lease_holders("part")] == ["other"]
        await taken.release()


# -- 5. lost replies -------------------------------------------------------------------------
def holder_tokens(server: RedisServer, namespace: str, name: str) -> list[str]:
    key = f"ls:{namespace}:{{lock:{name}}}:holders"
    with server.client() as c:
        if c.type(key) == b"string":  # a lone holder's solo record "expiry|fence|token|owner" (lua/lease_common.lua)
            record = c.get(key)  # None if it expired just now
            return [record.decode().split("|")[2]] if record else []
        return [t.decode() for t in c.zrange(key, 0, -1)]


async def test_lost_replies_are_resolved_by_token(server: RedisServer, proxy: FaultProxy) -> None:
    async with lockstep.connect(server.url(port=proxy.port), namespace="r5", member="a", timeout=0.5) as coord:
        await cycle(coord, "warm", 1)  # the wake-up subscriber is connected: only our calls talk now
        proxy.drop_replies(1)  # the acquire runs, its reply is lost; the retry by token gets it
        lease = await coord.lock("lr", ttl=5, wait=3)
        assert holder_tokens(server, "r5", "lr") == [lease.token]
        with server.client() as c:
            assert int(c.get("ls:r5:{lock:lr}:fence")) == lease.fence == 1  # granted once, not twice
        proxy.drop_replies(1)  # the release runs, its reply is lost; the retry confirms
        assert await lease.release(timeout=3) in (True, False)
        assert holder_tokens(server, "r5", "lr") == []

        proxy.drop_replies()  # every reply lost: the wait runs out, the SDK cleans up by token
        with pytest.raises(LockTimeout):
            await coord.lock("lr2", ttl=30, wait=1)
        with server.client() as c:  # the fence counts grants: the lost acquire did run
            assert int(c.get("ls:r5:{lock:lr2}:fence") or 0) == 1
        proxy.passthrough()  # the clean-up's release may have run already, its reply lost too
        give_up = time.monotonic() + 3
        while holder_tokens(server, "r5", "lr2"):
            assert time.monotonic() < give_up, "an orphan lock outlived the SDK's clean-up"
            await asyncio.sleep(0.05)


async def test_connections_retired_by_timeouts_are_closed_not_kept(server: RedisServer, proxy: FaultProxy) -> None:
    """A call that times out retires its connection; one that no caller waits on any more
    closes, even when the server never answers (no file descriptor left per timeout)."""
    async with lockstep.connect(server.url(port=proxy.port), namespace="r5b", member="a", timeout=0.3) as coord:
        await cycle(coord, "warm", 1)
        active, opened = proxy.stats.connections_active, proxy.stats.connections_total
        proxy.drop_replies()
        for i in range(4):
            outcome = (await timed(coord.lock(f"t{i}", ttl=5, wait=0.3)))[1]
            assert isinstance(outcome, LockTimeout | OutcomeUnknown | lockstep.Timeout), outcome
        await asyncio.sleep(0.2)
        assert proxy.stats.connections_total - opened >= 4, "each timeout retired a connection"
        assert proxy.stats.connections_active <= active + 1, proxy.stats
        proxy.passthrough()


# -- 6. stall --------------------------------------------------------------------------------
async def test_stalled_server_calls_return_by_their_deadline(server: RedisServer) -> None:
    async with (
        lockstep.connect(server.url(), namespace="r6", member="a", timeout=0.5) as a,
        lockstep.connect(server.url(), namespace="r6", member="b", timeout=0.5) as b,
    ):
        lease = await a.lock("s", ttl=1.0, wait=1)
        lost_at: list[float] = []

        async def watch() -> None:
            await lease.lost
            lost_at.append(time.monotonic())

        watcher = asyncio.create_task(watch())
        await cycle(b, "warm", 1)
        server.pause()
        paused = time.monotonic()
        try:
            for call, error in [
                (b.lock("s", wait=0.5), LockTimeout),
                (lease.extend(timeout=0.5), lockstep.Timeout),
                (lease.fenced_set("k", b"v", timeout=0.5), lockstep.Timeout),
                (b.lease_holders("s", timeout=0.5), lockstep.Timeout),
                (b.ping(timeout=0.5), lockstep.Timeout),
            ]:
                took, outcome = await timed(call)
                assert isinstance(outcome, error), outcome
                assert took < 0.5 + 0.05, f"{outcome!r} after {took:.3f} s"
            await asyncio.wait_for(watcher, 1)
            assert lost_at[0] <= lease.deadline + 0.05, "lost fired late"
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - paused)))
        finally:
            server.resume()
        taken = await b.lock("s", ttl=5, wait=3)
        assert taken.fence > lease.fence
        await asyncio.sleep(0.3)  # a's release by token runs now and must not touch b's lease
        assert [(h.owner, h.fence) for h in await b.lease_holders("s")] == [("b", taken.fence)]
        await taken.release()
