"""Signals: durable, generations, never overwritten, waits that subscribe before they check.

Every test runs on the four drivers. "Another process" is a second coordinator on the
same backend and namespace (tests/contract/test_signals_processes.py uses real ones).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import lockstep
import pytest
from lockstep.errors import (
    InvalidInputError,
    InvalidNameError,
    MessageTooLargeError,
    Timeout,
    WaitError,
    WaitTimeout,
)
from lockstep.signals import Signals

SLACK = 0.15  # s: how late past its deadline a wait may return on a busy 2-core box


@pytest.fixture
async def peer(url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    async with lockstep.connect(url, namespace=namespace, member="peer", timeout=5.0) as c:
        yield c


async def test_a_signal_is_read_back_with_its_generation_sender_and_data(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    sent = await coord.signal("sprint-1", "interface_ready", {"file": "auth-api.ts"})
    got = await peer.wait_signal("sprint-1", "interface_ready", timeout=2)
    assert (got.generation, got.data, got.sender) == (1, {"file": "auth-api.ts"}, coord.member)
    assert got.digest == sent.digest and got.skipped == 0
    assert abs(got.ts - await coord.time()) < 2.0


async def test_generations_strictly_increase_and_nothing_is_overwritten(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    sent = [await c.signal("t", "step", i) for i, c in enumerate([coord, peer, coord, peer, coord])]
    assert [s.generation for s in sent] == [1, 2, 3, 4, 5]
    seen, after = [], 0
    while True:
        nxt = await peer.signals().latest("t", "step", after_generation=after)
        if nxt is None:
            break
        seen.append(nxt.data)
        after = nxt.generation
    assert seen == [0, 1, 2, 3, 4]  # every one, in order: none overwrote another
    latest = await coord.wait_signal("t", "step", timeout=1)
    assert latest.generation == 5 and latest.data == 4


async def test_concurrent_senders_get_distinct_generations(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    sent = await asyncio.gather(*(c.signal("t", "race", i) for i in range(20) for c in (coord, peer)))
    assert sorted(s.generation for s in sent) == list(range(1, 41))


async def test_retention_reports_what_a_slow_reader_missed(coord: lockstep.Coordinator) -> None:
    small = coord.signals(keep=3)
    for i in range(5):
        await small.signal("t", "busy", i)
    first = await small.wait_signal("t", "busy", timeout=1, after_generation=0)
    assert (first.generation, first.data, first.skipped) == (3, 2, 2)  # generations 1 and 2 were trimmed
    nxt = await small.wait_signal("t", "busy", timeout=1, after_generation=3)
    assert (nxt.generation, nxt.skipped) == (4, 0)


async def test_a_wait_is_woken_by_a_later_signal_without_polling(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    slow_poll = peer.signals(poll=5.0)  # only a wake-up can end this wait quickly
    waiter = asyncio.create_task(slow_poll.wait_signal("s", "go", timeout=10))
    await asyncio.sleep(0.3)
    sent_at = time.monotonic()
    await coord.signal("s", "go", "now")
    got = await waiter
    assert got.data == "now"
    assert time.monotonic() - sent_at < 1.0


async def test_after_generation_waits_for_the_next_one(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    first = await coord.signal("s", "round", 1)
    waiter = asyncio.create_task(peer.wait_signal("s", "round", timeout=5, after_generation=first.generation))
    await asyncio.sleep(0.2)
    assert not waiter.done()  # generation 1 is not "after 1"
    await coord.signal("s", "round", 2)
    assert (await waiter).data == 2


async def test_a_wait_subscribes_before_it_checks(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal lands right after the waiter's check found nothing, before it waits:
    the wake-up it subscribed to first must still end the wait at once (poll is 5 s)."""
    slow_poll = peer.signals(poll=5.0)
    store = slow_poll.store
    real_read = store.read
    injected = []

    async def read_then_signal(key: str, after: int | None, *, timeout: float):  # type: ignore[no-untyped-def]
        result = await real_read(key, after, timeout=timeout)
        if result.entry is None and not injected:
            injected.append(time.monotonic())
            await coord.signal("s", "between", "landed")
        return result

    monkeypatch.setattr(store, "read", read_then_signal)
    got = await slow_poll.wait_signal("s", "between", timeout=10)
    assert got.data == "landed"
    assert time.monotonic() - injected[0] < 1.0


async def test_a_wait_times_out_by_its_deadline(coord: lockstep.Coordinator) -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        await coord.wait_signal("nobody", "never", timeout=0.4)
    took = time.monotonic() - started
    assert 0.4 <= took < 0.4 + SLACK
    assert isinstance(info.value, Timeout) and isinstance(info.value, WaitError)
    assert "'never'" in str(info.value) and "'nobody'" in str(info.value)
    assert info.value.source == "nobody" and info.value.name == "never"


async def test_signals_survive_a_reconnect(url: str, namespace: str) -> None:
    async with lockstep.connect(url, namespace=namespace) as first:
        await first.signal("s", "durable", {"v": 1})
    async with lockstep.connect(url, namespace=namespace) as second:
        got = await second.wait_signal("s", "durable", timeout=1)
    assert got.data == {"v": 1}


async def test_forget_deletes_a_log(coord: lockstep.Coordinator) -> None:
    await coord.signal("s", "gone", 1)
    assert await coord.signals().forget("s", "gone")
    assert await coord.signals().latest("s", "gone") is None
    assert (await coord.signal("s", "gone", 2)).generation == 1


async def test_logs_lists_every_log_of_the_namespace_with_its_bounds(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator, url: str, namespace: str
) -> None:
    signals = coord.signals(keep=2)
    assert await signals.logs() == []
    started = time.time()
    for _ in range(3):
        await signals.signal("sprint-1", "ready", 1)
    await peer.signal("qa", "done:all", 2)  # a name with a colon: still split right
    async with lockstep.connect(url, namespace=namespace + "-x") as elsewhere:
        await elsewhere.signal("other", "done")
    logs = await peer.signals().logs()
    assert [(s.target, s.name, s.first, s.last) for s in logs] == [("qa", "done:all", 1, 1), ("sprint-1", "ready", 2, 3)]
    assert all(started - 1 <= s.ts <= time.time() + 1 for s in logs if s.ts is not None)
    assert all(s.ts is not None for s in logs)
    assert await signals.forget("sprint-1", "ready")
    assert [s.target for s in await signals.logs()] == ["qa"]


async def test_bad_input_gets_typed_errors(coord: lockstep.Coordinator) -> None:
    with pytest.raises(InvalidNameError, match="signal target"):
        await coord.signal("bad target", "x")
    with pytest.raises(InvalidNameError, match="signal"):
        await coord.wait_signal("t", "bad{name}", timeout=1)
    with pytest.raises(InvalidInputError, match="JSON"):
        await coord.signal("t", "x", object())
    with pytest.raises(MessageTooLargeError):
        await coord.signal("t", "x", "x" * (2 << 20))
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(InvalidInputError, match="timeout"):
            await coord.wait_signal("t", "x", timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="after_generation"):
        await coord.wait_signal("t", "x", timeout=1, after_generation=-1)
    with pytest.raises(InvalidInputError, match="keep"):
        coord.signals(keep=0)
    with pytest.raises(InvalidInputError, match="secret"):
        coord.signals(secret=b"short")


async def test_signals_object_is_shared_per_coordinator(coord: lockstep.Coordinator) -> None:
    assert coord.signals() is coord.signals()
    signed = coord.signals(secret=b"s" * 32)
    assert isinstance(signed, Signals) and signed.shared is coord.signals().shared
