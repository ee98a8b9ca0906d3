"""A small blocking facade: hold leases from synchronous code (scripts, pytest hooks).

    from lockstep.blocking import BlockingCoordinator

    with BlockingCoordinator("redis://localhost:6379/0", namespace="ci") as coord:
        lease = coord.lock("test", ttl=30, wait=600)    # LockTimeout names the holder
        lease.fence, lease.lost_reason()                 # int; None while held
        ports = coord.ports(2, ttl=60, wait=30).ports    # leased, bindable TCP ports
        lease.release()                                  # False: it was lost before

The coordinator lives on its own event loop in a daemon thread, so its renewer keeps
renewing while the calling thread blocks or runs other code (a test session). Every call
has a deadline: acquiring waits at most ``wait`` plus the coordinator's ``timeout`` and a
second of slack; everything else the coordinator's ``timeout`` (plus the slack).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self, TypeVar

from .coordinator import DEFAULT_TIMEOUT, Coordinator, connect
from .errors import BackendError, LeaseLost, Timeout

__all__ = ["BlockingCoordinator", "BlockingLease", "EventLoopThread"]

T = TypeVar("T")
SLACK = 1.0  # s added to a call's own deadline before the caller stops waiting for it


class EventLoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str = "lockstep-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` s for it (then cancel it, Timeout)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine's own error: LockTimeout is a TimeoutError too
                raise
            future.cancel()
            raise Timeout(f"a lockstep call did not finish within {timeout:g} s") from None

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def close(self, *, timeout: float = 5.0) -> None:
        """Stop the loop after what it is doing, join the thread, close the loop."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class BlockingLease:
    """A held lease (a lock, or ports) driven from another thread; see the module docstring."""

    def __init__(self, owner: BlockingCoordinator, request: AbstractAsyncContextManager[Any], lease: Any) -> None:
        self._owner = owner
        self._request = request
        self.lease = lease  #: the underlying async lease (use it only on the coordinator's loop)
        self.released = False

    @property
    def name(self) -> str:
        return str(self.lease.name)

    @property
    def fence(self) -> int:
        return int(self.lease.fence)

    @property
    def ports(self) -> list[int]:
        """The leased ports (a lease from :meth:`BlockingCoordinator.ports`)."""
        return list(self.lease.ports)

    def lost_reason(self) -> str | None:
        """Why the lease was lost, or None while it is held (or after a clean release)."""

        async def check() -> str | None:
            lost = self.lease.lost
            return str(lost.reason) if lost.is_set() else None  # is_set() also checks the deadline

        return self._owner.loop.run(check(), timeout=self._owner.timeout + SLACK)

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` once if the lease is lost (in the coordinator's thread:
        keep it short and thread-safe). Never called after a release."""

        async def watch() -> None:
            await self.lease.lost
            if not self.released:
                callback(str(self.lease.lost.reason))

        self._owner.loop.call_soon(self._owner.spawn, watch())

    def release(self) -> bool:
        """Release; True if it was held to the end, False if it had been lost. Idempotent."""
        if self.released:
            return True
        self.released = True
        try:
            self._owner.loop.run(self._request.__aexit__(None, None, None), timeout=self._owner.timeout + SLACK)
        except LeaseLost:
            return False
        return True


class BlockingCoordinator:
    """A :class:`~lockstep.Coordinator` on an :class:`EventLoopThread`, opened at once."""

    def __init__(
        self, url: str | None = None, *, namespace: str | None = None, member: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:  # fmt: skip
        self.coord: Coordinator = connect(url, namespace=namespace, member=member, timeout=timeout)
        self.timeout = self.coord.timeout
        self.loop = EventLoopThread()
        self._tasks: set[asyncio.Task[Any]] = set()
        try:
            self.loop.run(self.coord.open(), timeout=self.timeout + SLACK)
        except BaseException:
            self.loop.close()
            raise

    def __repr__(self) -> str:
        return f"<BlockingCoordinator {self.coord!r}>"

    def lock(self, name: str, *, ttl: float = 30.0, wait: float = 60.0) -> BlockingLease:
        """``coord.lock(name, ttl=, wait=)``, held until :meth:`BlockingLease.release`."""
        return self._hold(self.coord.lock(name, ttl=ttl, wait=wait), wait)

    def ports(self, count: int = 1, *, ttl: float = 60.0, wait: float = 30.0, **options: Any) -> BlockingLease:
        """``coord.ports(count, ttl=, wait=, **options)``: leased ports in ``lease.ports``."""
        return self._hold(self.coord.ports(count, ttl=ttl, wait=wait, **options), wait)

    def _hold(self, request: AbstractAsyncContextManager[Any], wait: float) -> BlockingLease:
        lease = self.loop.run(request.__aenter__(), timeout=wait + self.timeout + SLACK)
        return BlockingLease(self, request, lease)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start ``coro`` as a task of the loop (call it in the loop's thread)."""
        task = self.loop.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Release every held lease and close the connection (bounded), stop the thread."""
        if self.loop.loop.is_closed():
            return

        async def shut() -> None:
            for task in list(self._tasks):
                task.cancel()
            await self.coord.close()

        try:
            self.loop.run(shut(), timeout=2 * self.timeout + SLACK)
        except BackendError:
            pass  # releases go on by token until their TTL; nothing more to do from here
        finally:
            self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
