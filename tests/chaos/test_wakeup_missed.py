"""RELIABILITY.md scenario 12: the missed wake-up, 200 times, with random delays.

The last party of a barrier arrives exactly in the window a naive waiter loses: after
the waiter's check found the round open and before it waits. The arrival is injected
there (the waiter's check is wrapped so that, once it has read "not yet", the other
party arrives, after a random 0-3 ms, before the check returns). Because the waiter
subscribed before it checked, the wake-up is already waiting for it: it must be
released within one poll interval every time; here the poll interval is 1 s and it must
be released in a fraction of that, which only the wake-up can do. The same for a signal.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import lockstep
import pytest
from lockstep import barriers

pytestmark = pytest.mark.slow

ROUNDS = 200
POLL = 1.0
FAST = 0.25  # s: well inside one poll interval


async def test_missed_wakeup_at_a_barrier(url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(12)
    real_check = barriers._Round.check
    arrived_at: dict[int, float] = {}

    async with lockstep.connect(url, namespace=namespace, member="waiter") as waiter_coord, \
            lockstep.connect(url, namespace=namespace, member="last") as last_coord:  # fmt: skip
        waiter = waiter_coord.signals(poll=POLL)
        last = last_coord.signals(poll=POLL)

        async def check_then_let_the_last_party_in(self: barriers._Round, timeout: float) -> Any:
            found = await real_check(self, timeout)
            if self.me == "waiter" and found is None and self.number not in arrived_at:
                await asyncio.sleep(rng.uniform(0, 0.003))
                other = await last.barrier("b", ["waiter", "last"], timeout=5, me="last")
                assert other.state == "released"
                arrived_at[self.number] = time.monotonic()
            return found  # stale on purpose: "not yet", though the last party is now in

        monkeypatch.setattr(barriers._Round, "check", check_then_let_the_last_party_in)
        latencies = []
        for i in range(ROUNDS):
            await asyncio.sleep(rng.uniform(0, 0.002))
            result = await waiter.barrier("b", ["waiter", "last"], timeout=10, me="waiter")
            done = time.monotonic()
            assert result.state == "released" and result.round == i + 1, result
            latencies.append(done - arrived_at[result.round])
    assert len(latencies) == ROUNDS
    assert max(latencies) < FAST, sorted(latencies)[-5:]


async def test_missed_wakeup_for_a_signal(url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(13)
    async with lockstep.connect(url, namespace=namespace, member="waiter") as waiter_coord, \
            lockstep.connect(url, namespace=namespace, member="sender") as sender:  # fmt: skip
        waiter = waiter_coord.signals(poll=POLL)
        store = waiter.store
        real_read = store.read
        sent_at: list[float] = []

        async def read_then_signal(key: str, after: int | None, *, timeout: float) -> Any:
            result = await real_read(key, after, timeout=timeout)
            if result.entry is None and len(sent_at) == generation[0]:
                await asyncio.sleep(rng.uniform(0, 0.003))
                await sender.signal("s", "tick", generation[0] + 1)
                sent_at.append(time.monotonic())
            return result

        generation = [0]
        monkeypatch.setattr(store, "read", read_then_signal)
        latencies = []
        for i in range(ROUNDS):
            got = await waiter.wait_signal("s", "tick", timeout=10, after_generation=i)
            latencies.append(time.monotonic() - sent_at[i])
            assert got.generation == i + 1 and got.data == i + 1
            generation[0] = i + 1
    assert max(latencies) < FAST, sorted(latencies)[-5:]
