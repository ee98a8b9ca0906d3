"""Helpers for the messaging contract tests: a foreign publisher per driver, and draining."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import lockstep
import pytest
from lockstep.drivers.message_store import FlushState, OutgoingBatch
from lockstep.messaging import Gap, Message

from tests.support.redis_server import RedisServer


async def publish_raw(coord: lockstep.Coordinator, request: pytest.FixtureRequest, channel: str, payload: bytes) -> None:
    """Publish ``payload`` as a client that knows nothing of lockstep would."""
    scheme = coord.settings.scheme
    store = coord.messaging.store
    if scheme == "memory":
        await store.send([OutgoingBatch.foreign(channel, [payload])], flush=FlushState(), timeout=2)
    elif scheme == "file":
        await store.run("ensure tables", lambda c, now: None, timeout=2, write=False)
        with sqlite3.connect(str(coord.driver.path), timeout=5) as conn:
            conn.execute(
                "INSERT INTO msg_log(channel, ts, payload) VALUES (?, ?, ?)", (store.wire(channel), time.time(), payload)
            )
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        with server.client() as client:
            if scheme == "redis":
                client.publish(store.wire(channel), payload)
            else:
                client.xadd(store.wire(channel), {"data": payload})


async def take(sub: Any, count: int, timeout: float = 5.0) -> list[Any]:
    """Exactly ``count`` items (Messages, Gaps or errors) from a subscription."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(out)} of {count} items: {out[-3:]}"
        out += await sub.get_batch(count - len(out), timeout=left)
    return out


async def nothing_more(sub: Any, wait: float = 0.2) -> None:
    extra = await sub.get_batch(100, timeout=wait)
    assert extra == [], extra


def messages(items: list[Any]) -> list[Message]:
    return [i for i in items if isinstance(i, Message)]


def gaps(items: list[Any]) -> list[Gap]:
    return [i for i in items if isinstance(i, Gap)]


async def settle() -> None:
    await asyncio.sleep(0.05)
