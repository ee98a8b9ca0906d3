"""The one-timer deadlines of the Redis rate-limit store: every call still fails at its own
deadline, whatever the order of the deadlines, and finished calls are not kept."""

from __future__ import annotations

import asyncio

from lockstep.drivers.redis_rates import Deadlines


async def test_each_call_fails_at_its_own_deadline_with_one_timer() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    now = loop.time()
    slow, answered, fast = loop.create_future(), loop.create_future(), loop.create_future()
    deadlines.watch(now + 5.0, slow)
    deadlines.watch(now + 0.05, answered)
    answered.set_result("reply")  # its reply came: nothing to fail
    deadlines.watch(now + 0.1, fast)  # a shorter deadline after a longer one re-arms the timer
    await asyncio.sleep(0.2)
    assert isinstance(fast.exception(), TimeoutError)
    assert answered.result() == "reply" and not slow.done()
    assert deadlines.armed_for == now + 5.0 and [f for _, f in deadlines.calls] == [slow]
    slow.cancel()


async def test_finished_calls_are_dropped_as_new_ones_come() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    for _ in range(1000):
        future = loop.create_future()
        deadlines.watch(loop.time() + 10.0, future)
        future.set_result(None)
    assert len(deadlines.calls) == 1
    assert deadlines.timer is not None and deadlines.timer.when() <= loop.time() + 10.0
    deadlines.timer.cancel()
