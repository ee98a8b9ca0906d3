"""The two connections a coordinator's leases use on Redis: one pipelined, one subscribed.

Leases are the hot path (a hand-over between two holders is one release plus one
message), and on loopback checking a connection out of redis-py's pool and back, with
redis-py's packing and parsing, costs about as much as the round trip itself
(measured: a script call ~85 us through the pool, ~40 us on a dedicated connection with
the command packed and the reply parsed by the Rust core). So each coordinator's lease
store keeps two connections of its own. redis-py opens them (its handshake: TLS, AUTH,
SELECT, CLIENT SETNAME; no retries, the pool's policy); then an asyncio protocol of ours
takes the transport over and parses replies as bytes arrive, with no task in between:

* :class:`PipelinedConnection`: every lease script goes out as soon as it is called,
  several callers' commands in flight at once; replies come back in order and are
  matched first in, first out. A call whose deadline passes drops the connection (a
  connection that stopped answering is suspect, and a late reply must never be matched
  to another caller); the calls in flight with it fail too and are retried by their
  callers, which is safe because every lease script is idempotent by token. The next
  call reconnects.
* :class:`WakeSubscriber`: subscribed to the coordinator's wake-up channel, handing each
  message to the waiter it names; after a disconnect it subscribes again and wakes every
  waiter, since messages published meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core import RespParser, pack_command
from ..errors import BackendUnavailable, LockstepError, Timeout

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["PipelinedConnection", "WakeSubscriber"]

RESUBSCRIBE_PAUSE = 0.1  # s between attempts to get the subscription back


class _Link(asyncio.Protocol):
    """One taken-over connection: parses replies as they arrive and hands them on."""

    def __init__(self, on_reply: Callable[[Any], None]) -> None:
        self.on_reply = on_reply
        self.parser = RespParser()
        self.transport: asyncio.Transport | None = None
        self.keep: object = None
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()  # calls in flight
        self.retired = False  # a call timed out on it: nothing new is sent on it
        self.closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
            replies = self.parser.drain()
        except LockstepError as exc:  # ProtocolError: the stream is unusable
            self.close(exc)
            return
        for reply in replies:
            self.on_reply(reply)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    def close(self, error: BaseException | None = None) -> None:
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                self.transport.abort()
        if not self.closed.done():
            self.closed.set_result(error)


async def _take_over(driver: RedisDriver, op: str, timeout: float, on_reply: Callable[[Any], None]) -> _Link:
    """Open a connection with redis-py's handshake within ``timeout``, then parse it ourselves."""
    pool = driver._pool
    if pool is None:
        raise BackendUnavailable(f"{driver.name}: {op}: not connected; call connect() first")
    conn = pool.make_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    try:
        async with asyncio.timeout(timeout):
            await conn.connect()
    except TimeoutError:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        raise Timeout(f"{driver.name}: {op} was not sent: no connection within {timeout:g} s; it did not run") from None
    except Exception as exc:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        raise driver._translate(op, exc, idempotent=True) or exc from exc
    writer = conn._writer  # redis-py's asyncio StreamWriter
    assert writer is not None
    link = _Link(on_reply)
    link.transport = writer.transport
    link.transport.set_protocol(link)  # nothing is buffered: the handshake's replies were all read
    # The transport is ours now: neither redis-py's Connection nor the StreamWriter (whose
    # __del__ closes it) may close it when collected, so the link keeps the writer.
    link.keep = writer
    conn._writer = conn._reader = None
    return link


class _Expired(Exception):
    """A call's deadline passed before its reply came (set on its future by the timer)."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class PipelinedConnection:
    """One connection, many calls in flight; see the module docstring."""

    def __init__(self, driver: RedisDriver) -> None:
        self._driver = driver
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()

    async def _ready(self, op: str, timeout: float) -> _Link:
        link = self._link
        if link is not None and not link.closed.done():
            return link
        try:
            async with asyncio.timeout(timeout), self._connecting:  # waiting for the lock counts too
                if self._link is None or self._link.closed.done():
                    self._link = await self._open(op, timeout)
        except TimeoutError:
            raise Timeout(
                f"{self._driver.name}: {op} was not sent: no connection within {timeout:g} s; it did not run"
            ) from None
        return self._link

    async def _open(self, op: str, timeout: float) -> _Link:
        link = await _take_over(self._driver, op, timeout, lambda reply: self._match(link, reply))
        link.closed.add_done_callback(lambda done: self._lost(link, done.result()))
        return link

    async def call(self, op: str, *args: Any, timeout: float) -> Any:
        """Send one command, return its reply (a ``RespError`` for an error reply).

        The deadline is one timer on the reply's future, not an ``asyncio.timeout`` block
        (which costs a few microseconds more per call: this is the hot path)."""
        packed = pack_command(*args)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        link = self._link
        if link is None or link.closed.done():
            link = await self._ready(op, timeout)
        if link.closed.done() or link.transport is None:  # lost between the check and now
            raise BackendUnavailable(f"{self._driver.name}: {op} was not sent: the lease connection closed")
        future: asyncio.Future[Any] = loop.create_future()
        link.pending.append(future)
        link.transport.write(packed)
        timer = loop.call_at(give_up, _expire, future)
        try:
            return await future
        except _Expired:
            self._retire(link)
            raise Timeout(f"{self._driver.name}: {op} did not finish within {timeout:g} s") from None
        finally:
            timer.cancel()

    def _retire(self, link: _Link) -> None:
        """A call on ``link`` timed out: send nothing more on it; close it once the calls
        still in flight on it have their replies or their own timeouts."""
        if self._link is link:
            self._link = None
        link.retired = True
        if all(f.done() for f in link.pending):
            link.close()

    def _match(self, link: _Link, reply: Any) -> None:
        if not link.pending:
            link.close(ConnectionError("a reply came that nothing asked for"))
            return
        future = link.pending.popleft()
        if not future.done():  # a timed-out or cancelled caller's reply is dropped, keeping the order
            future.set_result(reply)
        if link.retired and all(f.done() for f in link.pending):
            link.close()

    def _lost(self, link: _Link, error: BaseException | None) -> None:
        if self._link is link:
            self._link = None
        where = self._driver.address.where
        while link.pending:
            future = link.pending.popleft()
            if not future.done():
                future.set_exception(
                    BackendUnavailable(
                        f"{self._driver.name}: the lease connection to {where} was lost with a call in "
                        f"flight ({error or 'closed'}); lease calls are idempotent by token: try again"
                    )
                )

    async def close(self) -> None:
        if self._link is not None:
            self._link.close()


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
            link = None
            try:
                link = await _take_over(self._driver, "subscribe", self._driver.opts.get("connect_timeout") or 5.0, self._on_reply)
                assert link.transport is not None
                link.transport.write(pack_command("SUBSCRIBE", self._channel))
                await asyncio.shield(link.closed)
            except asyncio.CancelledError:
                raise
            except LockstepError:
                pass  # could not connect: try again shortly
            finally:
                if link is not None:
                    link.close()
            self.subscribed.clear()
            self._gap()
            await asyncio.sleep(RESUBSCRIBE_PAUSE)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
