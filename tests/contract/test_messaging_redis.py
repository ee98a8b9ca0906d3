"""Messaging faults specific to the Redis drivers, through a real redis-server (and the
fault proxy): lost replies, an unreachable server, a half-open subscriber connection,
a message from the real ``redis-cli``, and a subscriber kill that loses nothing."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator

import lockstep
import pytest
from lockstep.messaging import Gap, Message

from tests.contract.messaging_support import take
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

REDIS = ["redis", "redis+streams"]


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@pytest.mark.parametrize("scheme", REDIS)
async def test_a_publish_whose_reply_is_lost_is_outcome_unknown(
    scheme: str, redis_server: RedisServer, proxy: FaultProxy, namespace: str
) -> None:
    url = redis_server.url(scheme=scheme, port=proxy.port)
    async with lockstep.connect(url, namespace=namespace, timeout=1.0) as coord:
        await coord.publish("lost", "warm-up")  # the connection is open and healthy
        proxy.drop_replies()
        with pytest.raises(lockstep.OutcomeUnknown, match="may or may not"):
            await coord.publish("lost", "reply dropped")
        proxy.passthrough()


@pytest.mark.parametrize("scheme", REDIS)
async def test_the_publisher_reconnects_after_its_connection_is_killed(
    scheme: str, redis_server: RedisServer, namespace: str
) -> None:
    async with lockstep.connect(redis_server.url(scheme=scheme), namespace=namespace) as coord:
        await coord.publish("rc", 1)
        with redis_server.client() as client:
            assert client.execute_command("CLIENT", "KILL", "TYPE", "normal") >= 1
        # killed while idle (the loop has not even seen the FIN yet): nothing was in flight,
        # so the next publish notices and simply reconnects, instead of an OutcomeUnknown
        assert await coord.publish("rc", 2)
        assert len(await coord.publish_many("rc", [3, 4])) == 2


@pytest.mark.parametrize("scheme", REDIS)
async def test_publish_to_an_unreachable_server_is_not_sent(scheme: str, namespace: str) -> None:
    from tests.support.redis_server import free_port

    url = f"{scheme}://127.0.0.1:{free_port()}/0"
    coord = lockstep.connect(url, namespace=namespace, timeout=0.5)
    with pytest.raises(lockstep.BackendUnavailable, match="cannot"):
        await coord.messaging.publish("c", 1, timeout=0.5)


async def test_redis_cli_publish_is_delivered_with_sender_unknown(redis_server: RedisServer, namespace: str) -> None:
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is installed with redis-server (Debian's redis-tools)"
    async with lockstep.connect(redis_server.url(), namespace=namespace) as coord:
        async with coord.subscribe("sprint:coordination") as sub:
            wire = coord.messaging.store.wire("sprint:coordination")
            for payload in ('{"id": 1, "timestamp": 1700000000}', "interface_ready"):
                subprocess.run(  # noqa: ASYNC221 -- a quick CLI call; the subscription buffers meanwhile
                    [cli, "-p", str(redis_server.port), "PUBLISH", wire, payload], check=True, capture_output=True
                )
            items = await take(sub, 2)
    assert [m.data for m in items] == [{"id": 1, "timestamp": 1700000000}, "interface_ready"]
    assert all(m.sender is None and m.seq is None for m in items)


async def test_a_half_open_subscriber_connection_is_noticed_and_reported(
    redis_server: RedisServer, proxy: FaultProxy, namespace: str
) -> None:
    """The network stops delivering (no FIN, no RST): health-check pings notice it, the
    subscription reconnects once the path is back and reports the interruption at once
    (nothing arrived since, so what was lost is unknown yet); the sender's next message
    then shows exactly which of its messages were lost."""
    async with (
        lockstep.connect(redis_server.url(port=proxy.port), namespace=namespace, timeout=1.0) as via_proxy,
        lockstep.connect(redis_server.url(), namespace=namespace) as direct,
    ):
        async with via_proxy.subscribe("hb") as sub:
            await direct.publish("hb", 1)
            assert [m.data for m in await take(sub, 1)] == [1]
            proxy.blackhole()
            await asyncio.sleep(0.2)
            await direct.publish("hb", 2)  # lost: the subscriber cannot receive it
            await asyncio.sleep(3.8)  # past DEAD_AFTER: the subscriber has declared it dead
            assert not sub.connected
            proxy.passthrough()
            await asyncio.sleep(1.2)
            (interruption,) = await take(sub, 1, timeout=5)
            await direct.publish("hb", 3)
            sequence, message = await take(sub, 2, timeout=5)
    assert isinstance(interruption, Gap) and interruption.reason == "disconnected", interruption
    assert interruption.count is None and interruption.since and interruption.until
    assert isinstance(sequence, Gap) and sequence.reason == "sequence"
    assert sequence.missed == {direct.member: ((2, 2),)}, "the next message says exactly what was missed"
    assert isinstance(message, Message) and message.data == 3


async def test_client_kill_loses_nothing_it_does_not_report(redis_server: RedisServer, namespace: str) -> None:
    async with lockstep.connect(redis_server.url(), namespace=namespace) as coord:
        async with coord.subscribe("k") as sub:
            await coord.publish("k", "before")
            with redis_server.client() as client:
                assert client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
            started = time.monotonic()
            while sub.connected and time.monotonic() - started < 1:
                await asyncio.sleep(0.01)
            await coord.publish("k", "during")  # may be lost: sent while resubscribing
            await asyncio.sleep(0.5)
            await coord.publish("k", "after")
            items = await sub.get_batch(10, timeout=2)
            items += await sub.get_batch(10, timeout=0.5)
    data = [i.data for i in items if isinstance(i, Message)]
    gaps = [i for i in items if isinstance(i, Gap)]
    assert data[0] == "before" and data[-1] == "after"
    assert len(gaps) == 1 and gaps[0].reason == "disconnected"
    if "during" not in data:
        assert gaps[0].missed == {coord.member: ((2, 2),)}
