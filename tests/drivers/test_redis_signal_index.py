"""The Redis drivers' index of signal logs (``ls:NS:{meta}:signals``), which ``logs()`` and
``lockstep status`` read instead of scanning the keyspace: every append adds its log, a
forget removes it, and a log deleted behind lockstep's back leaves it at the next listing."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

import lockstep
from tests.support.redis_server import RedisServer


@pytest.mark.parametrize("scheme", ["redis", "redis+streams"])
async def test_the_index_follows_appends_forgets_and_foreign_deletes(redis_server: RedisServer, scheme: str) -> None:
    ns = f"sigindex-{scheme.replace('+', '-')}"
    index = f"ls:{ns}:{{meta}}:signals"
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        async with lockstep.connect(redis_server.url(scheme=scheme), namespace=ns) as coord:
            signals = coord.signals()
            await signals.signal("a", "one")
            await signals.signal("a", "one")
            await signals.signal("b", "two")
            keys = {f"ls:{ns}:{{sig:a}}:one".encode(), f"ls:{ns}:{{sig:b}}:two".encode()}
            assert await client.smembers(index) == keys

            assert await signals.forget("a", "one")
            assert await client.smembers(index) == {f"ls:{ns}:{{sig:b}}:two".encode()}

            await client.delete(f"ls:{ns}:{{sig:b}}:two")  # behind lockstep's back
            assert await signals.logs() == []
            assert await client.smembers(index) == set()  # pruned by the listing

            assert (await signals.signal("b", "two")).generation == 1  # listed again
            assert [(s.target, s.name, s.last) for s in await signals.logs()] == [("b", "two", 1)]
    finally:
        await client.aclose()
