"""Lua scripts survive a flushed script cache (a restarted or new server): EVALSHA answers
NOSCRIPT, nothing ran, and the script is sent whole, once, for every script family."""

from __future__ import annotations

import redis.asyncio as aioredis

import lockstep
from tests.support.redis_server import RedisServer


async def flush_scripts(server: RedisServer) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        await client.script_flush()
    finally:
        await client.aclose()


async def test_signals_and_membership_after_script_flush(redis_server: RedisServer) -> None:
    async with lockstep.connect(redis_server.url(), namespace="scriptflush") as coord:
        await coord.signal("target", "ready", {"n": 1})
        async with coord.agent("a1", ttl=30, interval=10):
            await flush_scripts(redis_server)
            sig = await coord.signal("target", "ready", {"n": 2})  # append: not idempotent, sent once
            got = await coord.wait_signal("target", "ready", timeout=2)
            assert got.data == {"n": 2} and got.generation == sig.generation == 2
            await flush_scripts(redis_server)
            names = [m.agent_id for m in await coord.members()]
            assert names == ["a1"]
