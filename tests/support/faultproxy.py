"""A TCP proxy that injects network faults between a client and a server, on loopback.

``FaultProxy`` listens on ``127.0.0.1`` at a free port and relays every
connection to a target. It runs an asyncio loop in its own thread, so sync tests,
async tests and subprocess workers can all go through it, and its mode can be
switched at any moment from any thread:

* :meth:`passthrough` relays bytes as they come;
* :meth:`delay` holds every chunk, both ways, for some seconds before relaying it;
* :meth:`blackhole` relays nothing either way but keeps connections open (and
  accepts new ones), like a partition: bytes are held, not lost, and flow again
  after :meth:`passthrough` if neither end has closed by then, as TCP would
  deliver them once a partition heals;
* :meth:`drop_replies` relays client-to-server bytes but discards what the server
  sends back: the command runs and its reply is lost;
* :meth:`drop_replies_randomly` does the same to each reply chunk with a probability
  (seeded, so a run can be repeated);
* :meth:`reset_connections` closes every relayed connection abruptly (RST).

Each mode setter returns once the mode is in force. :attr:`stats` counts bytes
each way and connections. Nothing here listens beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = ["FaultProxy", "ProxyStats"]

Mode = Literal["passthrough", "delay", "blackhole", "drop_replies"]
Direction = Literal["up", "down"]  # up: client -> server; down: server -> client
T = TypeVar("T")
_CHUNK = 65536
_CALL_DEADLINE = 5.0


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what the proxy has relayed."""

    bytes_up: int = 0  #: client -> server bytes relayed
    bytes_down: int = 0  #: server -> client bytes relayed
    bytes_dropped: int = 0  #: server -> client bytes discarded by drop_replies
    chunks_dropped: int = 0  #: reply chunks discarded by drop_replies
    connections_total: int = 0  #: client connections accepted so far
    connections_active: int = 0  #: client connections open now
    connections_reset: int = 0  #: connections closed by reset_connections


class _Link:
    """One client connection and its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None

    def abort(self, *, rst: bool) -> None:
        for writer in (self.client, self.server):
            if writer is None:
                continue
            if rst:  # linger 0: close() sends RST instead of FIN
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    """A fault-injecting TCP relay from ``127.0.0.1:port`` to ``target_host:target_port``."""

    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._mode: Mode = "passthrough"
        self._delay = 0.0
        self._drops_left: int | None = None
        self._drop_probability = 1.0
        self._rng = random.Random()
        self._mode_changed: asyncio.Condition | None = None
        self._stats = ProxyStats()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FaultProxy:
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"faultproxy->{self.target_port}", daemon=True)
        self._thread.start()
        if not ready.wait(_CALL_DEADLINE) or failure:
            self._thread = None
            raise RuntimeError(f"the fault proxy did not start: {failure[0] if failure else 'timeout'}")
        return self

    async def _open(self) -> None:
        self._mode_changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        """Close the listener and every connection, then end the thread. Idempotent."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CALL_DEADLINE)
        self._thread = None

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            link.abort(rst=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- switching modes (any thread) ------------------------------------------------
    def _call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine function on the proxy's loop and wait for its result."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("the proxy is not running: call start() first")
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(_CALL_DEADLINE)

    def _switch(
        self, mode: Mode, *, delay: float = 0.0, drops: int | None = None, probability: float = 1.0
    ) -> None:
        async def apply() -> None:
            assert self._mode_changed is not None
            async with self._mode_changed:
                self._mode, self._delay, self._drops_left = mode, delay, drops
                self._drop_probability = probability
                self._mode_changed.notify_all()

        self._call(apply)

    @property
    def mode(self) -> Mode:
        return self._mode

    def passthrough(self) -> None:
        """Relay everything as it comes (and release bytes a blackhole held)."""
        self._switch("passthrough")

    def delay(self, seconds: float) -> None:
        """Hold every chunk, both ways, ``seconds`` before relaying it."""
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds!r}")
        self._switch("delay", delay=seconds)

    def blackhole(self) -> None:
        """Relay nothing either way; connections stay open."""
        self._switch("blackhole")

    def drop_replies(self, count: int | None = None) -> None:
        """Relay requests, discard replies: ``count`` reply chunks (then passthrough), or all."""
        if count is not None and count <= 0:
            raise ValueError(f"count must be a positive number of chunks or None, got {count!r}")
        self._switch("drop_replies", drops=count)

    def drop_replies_randomly(self, probability: float, *, seed: int | None = None) -> None:
        """Relay requests; discard each reply chunk with ``probability`` (0 < p <= 1)."""
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], got {probability!r}")
        self._rng.seed(seed)
        self._switch("drop_replies", probability=probability)

    def reset_connections(self) -> int:
        """Close every relayed connection abruptly (RST); returns how many were open."""

        async def reset() -> int:
            links = list(self._links)
            for link in links:
                link.abort(rst=True)
            self._count(connections_reset=len(links))
            return len(links)

        return self._call(reset)

    @property
    def stats(self) -> ProxyStats:
        """Counters so far (an immutable snapshot, swapped whole, so safe from any thread)."""
        return self._stats

    def _count(self, **increments: int) -> None:
        values = {name: getattr(self._stats, name) + step for name, step in increments.items()}
        self._stats = replace(self._stats, **values)

    # -- relaying (proxy thread) -----------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        self._count(connections_total=1, connections_active=1)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_reader, link.server = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                return  # target down: the client sees its connection close
            pumps = [
                asyncio.create_task(self._pump(reader, link.server, "up")),
                asyncio.create_task(self._pump(up_reader, writer, "down")),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            link.abort(rst=False)
            self._links.discard(link)
            self._tasks.discard(task)
            self._count(connections_active=-1)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: Direction
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(_CHUNK):
                if not await self._admit(data, direction):
                    continue
                sink.write(data)
                await sink.drain()
                self._count(**{f"bytes_{direction}": len(data)})

    async def _admit(self, data: bytes, direction: Direction) -> bool:
        """Apply the current mode to one chunk: wait, delay, or say whether to relay it."""
        assert self._mode_changed is not None
        async with self._mode_changed:
            await self._mode_changed.wait_for(lambda: self._mode != "blackhole")
            mode, delay = self._mode, self._delay
            dropping = self._drop_probability >= 1 or self._rng.random() < self._drop_probability
            if mode == "drop_replies" and direction == "down" and dropping:
                self._count(bytes_dropped=len(data), chunks_dropped=1)
                if self._drops_left is not None:
                    self._drops_left -= 1
                    if self._drops_left == 0:
                        self._mode = "passthrough"
                        self._mode_changed.notify_all()
                return False
        if mode == "delay" and delay > 0:
            await asyncio.sleep(delay)
        return True

    def __repr__(self) -> str:
        return f"<FaultProxy {self.host}:{self.port} -> {self.target_host}:{self.target_port} {self._mode}>"
