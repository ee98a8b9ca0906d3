"""A held lease under the face of what it protects: leased ports, claimed paths.

:class:`LeaseView` wraps a :class:`~lockstep.leases.Lease` and offers the same
controls (``fence``, ``lost``, ``release()``, ``extend()``, ``check()``), so code that
handles locks handles port leases and claims the same way. :class:`ViewRequest` is
the ``await`` / ``async with`` shell every such request shares: acquired on enter,
released on exit, LeaseLost on exit when the lease was lost before the block ended.
"""

from __future__ import annotations

import abc
from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

from .errors import InvalidInputError
from .leases import Lease, LostSignal, release_on_exit

__all__ = ["LeaseView", "ViewRequest"]


class LeaseView:
    """A held lease; :attr:`lease` is the underlying :class:`~lockstep.leases.Lease`."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    @property
    def fence(self) -> int:
        """The fence of the first resource; :attr:`fences` has one per resource."""
        return self.lease.fence

    @property
    def fences(self) -> dict[str, int]:
        return self.lease.fences

    @property
    def lost(self) -> LostSignal:
        """Awaitable; set once the lease is lost (see :class:`~lockstep.leases.LostSignal`)."""
        return self.lease.lost

    @property
    def holder(self) -> str:
        return self.lease.holder

    @property
    def deadline(self) -> float:
        """Local monotonic time by which the lease is lost unless renewed."""
        return self.lease.deadline

    @property
    def ttl(self) -> float:
        return self.lease.ttl

    @property
    def released(self) -> bool:
        return self.lease.released

    def check(self) -> None:
        """Raise LeaseLost unless the lease is still held."""
        self.lease.check()

    async def release(self, *, timeout: float | None = None) -> bool:
        """As :meth:`Lease.release`: True if this released it on the backend."""
        return await self.lease.release(timeout=timeout)

    async def extend(self, ttl: float | None = None, *, timeout: float | None = None) -> None:
        """As :meth:`Lease.extend`: renew now; LeaseLost if it is gone."""
        await self.lease.extend(ttl, timeout=timeout)


V = TypeVar("V", bound=LeaseView)


class ViewRequest(abc.ABC, Generic[V]):
    """``await`` it for a held view (release it yourself), or ``async with`` it."""

    _held: V | None = None

    @abc.abstractmethod
    async def _acquire(self) -> V: ...

    def __await__(self) -> Generator[Any, None, V]:
        return self._acquire().__await__()

    async def __aenter__(self) -> V:
        if self._held is not None:
            raise InvalidInputError(f"{self!r} is already held by an `async with`; make a new request")
        self._held = await self._acquire()
        return self._held

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            await release_on_exit(held.lease, exc_type)
