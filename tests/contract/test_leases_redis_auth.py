"""Leases on Redis over TLS with an ACL user, and on a database other than 0.

The lease store opens its own two connections (pipelined scripts, wake-up subscriber)
with redis-py's handshake: they must log in, speak TLS and select the database like
every other connection of the driver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import lockstep
import pytest

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def tls_acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("lease-tls"), tls=True, acl_users={"alice": "secret"}) as server:
        yield server


@pytest.mark.parametrize("scheme", ["rediss", "redis"])
async def test_lock_hand_over_with_tls_acl_and_db(tls_acl_server: RedisServer, scheme: str) -> None:
    url = tls_acl_server.url(scheme=scheme, db=3)
    async with (
        lockstep.connect(url, namespace=scheme, member="a", timeout=5) as a,
        lockstep.connect(url, namespace=scheme, member="b", timeout=5) as b,
    ):
        held = await a.lock("x", ttl=5, wait=1)
        waiter = asyncio.create_task(b.lock("x", ttl=5, wait=5)._acquire())
        await asyncio.sleep(0.2)
        released = time.monotonic()
        await held.release()
        lease = await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - released < 0.25  # handed over through the subscriber
        assert lease.fence == held.fence + 1
        await lease.extend(6)
        await lease.fenced_set("k", b"v")
        await lease.release()
    with tls_acl_server.client(db=3) as c:
        assert c.get(f"ls:{scheme}:{{lock:x}}:fence") == b"2"
        assert c.get(f"ls:{scheme}:{{lock:x}}:value:k") == b"v"
