"""The pub/sub subscriber of the redis driver: one raw connection per subscription.

Hot path: every socket read goes to ``ReplyReader.drain_pushes``, which parses every
complete frame, decodes every envelope and builds every ``Message`` in one Rust call;
the subscription's queue takes the list whole. No Python code runs per message.

Supervision (RELIABILITY.md promise 4, scenarios 7 and 8):

* a ``PING`` every ``HEALTH_INTERVAL`` seconds; no byte for ``DEAD_AFTER`` seconds and
  the connection is declared dead (a half-open TCP connection, a stalled server);
* on loss: the inbox hears ``interrupted`` at once; reconnects start immediately, then
  back off (``BACKOFF``, capped at ``BACKOFF_CAP`` s, with jitter); once every channel is
  resubscribed the inbox hears ``resumed`` with the cause: ``restarted`` when the
  server's run_id changed, ``evicted`` when the connection dropped right after this
  process stopped reading for a while (the server drops subscribers past
  ``client-output-buffer-limit pubsub``), else ``disconnected``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import _core
from .._core import MessageDecoder
from ..errors import BackendError, BackendUnavailable, LockstepError
from .message_store import Feed, GapReason, Inbox
from .redis_connection import ConnectionLost, RespConnection
from .redis_info import parse_info

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["RedisSubscriberFeed"]

HEALTH_INTERVAL = 1.0  # s between PINGs
DEAD_AFTER = 3.0  # s without a byte: the connection is dead
TICK = 0.2  # s: how often loop stalls are measured
STALL = 1.0  # s: a tick this late means this process stopped reading
BACKOFF, BACKOFF_CAP = 0.05, 0.5  # s


class RedisSubscriberFeed(Feed):
    """See the module docs."""

    def __init__(self, driver: RedisDriver, wires: Mapping[str, str], inbox: Inbox, decoder: MessageDecoder) -> None:
        super().__init__(wires, inbox, decoder)
        self.driver = driver
        self.conn: RespConnection | None = None
        self.run_id: str | None = None
        self.closed = False
        self._confirmed: set[str] = set()
        self._all_confirmed: asyncio.Event = asyncio.Event()
        self._lost = asyncio.Event()
        self._last_data = 0.0
        self._stalled_at = -1e9
        self._stall = 0.0
        self._tick_due = 0.0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        #: while (re)subscribing, reads are held here so a resumed() Gap comes before them
        self._held: list[tuple[list[object], list[tuple[int, str, int, int]]]] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, *, timeout: float) -> None:
        await self._connect(timeout)
        self._release()
        self._tick_due = time.monotonic() + TICK
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        self._task = asyncio.ensure_future(self._supervise())

    async def close(self) -> None:
        self.closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.conn is not None:
            self.conn.on_lost = None
            self.conn.close()

    # -- connecting ----------------------------------------------------------------------------
    async def _connect(self, timeout: float) -> str:
        """Open, subscribe to every channel, wait for every confirmation. Returns the cause
        to report if this follows a loss (restart detected by run_id)."""
        conn = await RespConnection.open(self.driver, timeout=timeout, purpose="subscriber")
        try:
            async with asyncio.timeout(timeout):
                (info,) = await conn.call([("INFO", "server")])
                run_id = None if isinstance(info, _core.RespError) else parse_info(info).get("run_id")
                self._confirmed.clear()
                self._all_confirmed.clear()
                self._lost.clear()
                self._held = []
                conn.push_handler = self._on_pushes
                conn.on_lost = self._on_lost
                conn.write(_core.pack_command("SUBSCRIBE", *self.wires))
                self._last_data = time.monotonic()
                await self._all_confirmed.wait()
        except TimeoutError:
            conn.close()
            raise BackendUnavailable(
                f"{self.driver.name}: subscribing at {self.driver.address.where} did not finish within {timeout:g} s"
            ) from None
        except (ConnectionLost, OSError) as e:
            conn.close()
            raise BackendUnavailable(f"{self.driver.name}: subscribing at {self.driver.address.where} failed: {e}") from None
        except BaseException:
            conn.close()
            raise
        restarted = self.run_id is not None and run_id is not None and run_id != self.run_id
        self.run_id = run_id or self.run_id
        self.conn = conn
        return "restarted" if restarted else ""

    def _on_pushes(self, reader: _core.ReplyReader) -> None:
        self._last_data = time.monotonic()
        items, jumps, events = reader.drain_pushes(self.decoder)
        if events:
            self._on_events(events)
        if items:
            if self._held is not None:
                self._held.append((items, jumps))
            else:
                self.inbox.put(items, jumps)

    def _release(self) -> None:
        """Deliver what arrived while subscribing, as one batch (its jumps tell the Gap
        exactly what each sender's messages missed)."""
        held, self._held = self._held or [], None
        items: list[object] = []
        jumps: list[tuple[int, str, int, int]] = []
        for part, part_jumps in held:
            jumps += [(index + len(items), sender, lo, hi) for index, sender, lo, hi in part_jumps]
            items += part
        if items:
            self.inbox.put(items, jumps)

    def _on_events(self, events: list[tuple[object, ...]]) -> None:
        for event in events:
            kind = event[0]
            if kind == "subscribe":
                self._confirmed.add(str(event[1]))
                if len(self._confirmed) >= len(self.wires):
                    self._all_confirmed.set()
            elif kind == "error":
                self.inbox.failed(BackendError(f"{self.driver.name}: the server refused the subscription: {event[1]}"))
            elif kind == "unexpected" and self.conn is not None:
                self.conn.close(ConnectionLost(f"unexpected frame on a subscribed connection: {event[1]}"))

    def _on_lost(self, reason: BaseException | None) -> None:
        if self.closed:
            return
        self._lost.set()
        self.inbox.interrupted("disconnected", f"connection to {self.driver.address.where} lost ({reason})")

    # -- supervision ------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        late = now - self._tick_due
        if late > STALL:
            self._stalled_at, self._stall = now, late
        self._tick_due = now + TICK
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _cause(self, restarted: str, lost_at: float) -> tuple[GapReason, str]:
        where = self.driver.address.where
        if restarted:
            return "restarted", f"the server at {where} restarted (its run_id changed)"
        if lost_at - self._stalled_at < 2.0:
            return "evicted", (
                f"the server at {where} closed the connection right after this process stopped reading "
                f"for {self._stall:.1f} s: most likely it was evicted for passing "
                "client-output-buffer-limit pubsub"
            )
        return "disconnected", f"the connection to {where} was lost"

    async def _supervise(self) -> None:
        ping = _core.pack_command("PING")
        while not self.closed:
            try:
                async with asyncio.timeout(HEALTH_INTERVAL):
                    await self._lost.wait()
            except TimeoutError:
                conn = self.conn
                if conn is None or conn.closed:
                    continue
                if time.monotonic() - self._last_data > DEAD_AFTER:
                    conn.close(ConnectionLost(f"no reply to PING for {DEAD_AFTER:g} s"))
                    continue
                try:
                    conn.write(ping)
                except ConnectionLost:
                    pass
                continue
            await self._reconnect()

    async def _reconnect(self) -> None:
        lost_at = time.monotonic()
        delay = 0.0
        attempt = 0
        while not self.closed:
            if delay:
                await asyncio.sleep(delay * (0.75 + random.random() / 2))
            attempt += 1
            try:
                restarted = await self._connect(timeout=max(1.0, BACKOFF_CAP * 2))
            except (LockstepError, OSError):
                delay = min(BACKOFF_CAP, max(BACKOFF, delay * 2))
                continue
            reason, detail = self._cause(restarted, lost_at)
            took = time.monotonic() - lost_at
            self.inbox.resumed(reason, f"{detail}; resubscribed after {took:.2f} s ({attempt} attempt(s))")
            self._release()
            return
