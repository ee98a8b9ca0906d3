"""The two connections a coordinator's leases use on Redis: one pipelined, one subscribed.

Leases are the hot path (a hand-over between two holders is one release plus one
message), and on loopback checking a connection out of redis-py's pool and back, with
redis-py's packing and parsing, costs about as much as the round trip itself
(measured: a script call ~85 us through the pool, ~40 us on a dedicated connection with
the command packed and the reply parsed by the Rust core). So each coordinator's lease
store keeps two :class:`~.redis_connection.RespConnection` of its own (the messaging hot
path's connection: same address, TLS, login and database as the driver's pool):

* :class:`PipelinedConnection`: every lease script goes out as soon as it is called,
  several callers' commands in flight at once; replies come back in order and are
  matched first in, first out. A call whose deadline passes retires the connection (a
  connection that stopped answering is suspect, and a late reply must never be matched
  to another caller): nothing new is sent on it, it closes once no call waits on it any
  more, and the next call opens another. Calls in flight on a connection that
  is lost fail with BackendUnavailable and are retried by their callers, which is safe
  because every lease script is idempotent by token.
* :class:`WakeSubscriber`: subscribed to the coordinator's wake-up channel, handing each
  message to the waiter it names; after a disconnect it subscribes again and wakes every
  waiter, since messages published meanwhile are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _core
from .._core import pack_command
from ..errors import BackendUnavailable, LockstepError, Timeout
from .redis_connection import INCOMPLETE, ConnectionLost, RespConnection

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["PipelinedConnection", "WakeSubscriber"]

RESUBSCRIBE_PAUSE = 0.1  # s between attempts to get the subscription back
PUSH_TAKE = 256  # replies read per call while draining a subscribed connection


def _one_reply(reader: _core.ReplyReader) -> Any:
    """The taker of a lease call: its one reply."""
    got = reader.take(1)
    return got[0] if got else INCOMPLETE


class _Expired(Exception):
    """A call's deadline passed before its reply came (set on its future by the timer)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class PipelinedConnection:
    """One connection, many calls in flight; see the module docstring."""

    def __init__(self, driver: RedisDriver) -> None:
        self._driver = driver
        self._conn: RespConnection | None = None
        self._connecting = asyncio.Lock()

    def _usable(self) -> RespConnection | None:
        conn = self._conn
        return conn if conn is not None and not conn.closed and not conn.retired else None

    async def _ready(self, op: str, timeout: float) -> RespConnection:
        try:
            async with asyncio.timeout(timeout), self._connecting:  # waiting for the lock counts too
                conn = self._usable()
                if conn is None:
                    # its own deadline a little later, so that running out of time reads
                    # as the Timeout below whichever step it interrupts
                    conn = self._conn = await RespConnection.open(self._driver, timeout=timeout + 1, purpose="leases")
                return conn
        except TimeoutError:
            raise Timeout(
                f"{self._driver.name}: {op} was not sent: no connection within {timeout:g} s; it did not run"
            ) from None

    async def call(self, op: str, *args: Any, timeout: float) -> Any:
        """Send one command, return its reply (a ``RespError`` for an error reply).

        The deadline is one timer on the reply's future, not an ``asyncio.timeout`` block
        (which costs a few microseconds more per call: this is the hot path)."""
        packed = pack_command(*args)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        conn = self._usable() or await self._ready(op, timeout)
        try:
            future = conn.request(packed, _one_reply)
        except ConnectionLost:  # lost between the check and now: nothing was written
            raise BackendUnavailable(f"{self._driver.name}: {op} was not sent: the lease connection closed") from None
        timer = loop.call_at(give_up, _expire, future)
        try:
            return await future
        except _Expired:
            if self._conn is conn:
                self._conn = None
            conn.retire()
            raise Timeout(f"{self._driver.name}: {op} did not finish within {timeout:g} s") from None
        except ConnectionLost as e:
            raise BackendUnavailable(
                f"{self._driver.name}: the lease connection to {self._driver.address.where} was lost with a call "
                f"in flight ({e}); lease calls are idempotent by token: try again"
            ) from None
        finally:
            timer.cancel()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class WakeSubscriber:
    """Subscribed to one channel; ``deliver(data)`` for each message, ``gap()`` after a disconnect."""

    def __init__(
        self, driver: RedisDriver, channel: str, deliver: Callable[[bytes], None], gap: Callable[[], None]
    ) -> None:
        self._driver = driver
        self._channel = channel
        self._deliver = deliver
        self._gap = gap
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _on_pushes(self, reader: _core.ReplyReader) -> None:
        while replies := reader.take(PUSH_TAKE):
            for reply in replies:
                self._on_reply(reply)

    def _on_reply(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return
        if reply[0] == b"message":
            self._deliver(reply[2])
        elif reply[0] == b"subscribe":
            self.subscribed.set()
            self._gap()  # anything published before this was missed: everyone looks again

    async def _run(self) -> None:
        while True:
            conn = None
            try:
                timeout = self._driver.opts.get("connect_timeout") or 5.0
                conn = await RespConnection.open(self._driver, timeout=timeout, purpose="lease wake-ups")
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                def on_lost(reason: BaseException | None, lost: asyncio.Future[None] = lost) -> None:
                    if not lost.done():
                        lost.set_result(None)

                conn.on_lost = on_lost
                conn.push_handler = self._on_pushes
                conn.write(pack_command("SUBSCRIBE", self._channel))  # ConnectionLost if it closed already
                await asyncio.shield(lost)
            except asyncio.CancelledError:
                raise
            except (LockstepError, ConnectionLost):
                pass  # could not connect (or lost it at once): try again shortly
            finally:
                if conn is not None:
                    conn.on_lost = None
                    conn.close()
            self.subscribed.clear()
            self._gap()
            await asyncio.sleep(RESUBSCRIBE_PAUSE)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
