"""``connect()`` and the Coordinator: the one object users hold.

A Coordinator binds a driver (chosen by URL), a namespace and a member identity.
Primitives (messaging, leases, membership, signals, rate limits) hang off it as
methods and are written once over the driver contract.

    async with lockstep.connect("redis://localhost:6379/0", namespace="cfn") as coord:
        ...

``connect()`` checks the URL, its options and the required capabilities at
once, synchronously, so configuration mistakes surface before any I/O. The
connection itself is opened by ``async with`` or ``await``.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

from .config import Settings, load_settings
from .drivers import driver_class
from .drivers.base import Capability, Driver, ServerInfo, parse_options
from .errors import CapabilityError, ConfigError
from .keys import Keyspace

__all__ = ["Coordinator", "connect"]

DEFAULT_TIMEOUT = 5.0


def _capability(value: Capability | str) -> Capability:
    try:
        return Capability(value)
    except ValueError:
        known = ", ".join(c.value for c in Capability)
        raise ConfigError(f"unknown capability {value!r}; known capabilities: {known}") from None


def _check_timeout(timeout: float) -> float:
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not (
        timeout > 0 and math.isfinite(timeout)
    ):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def connect(
    url: str | None = None,
    *,
    namespace: str | None = None,
    member: str | None = None,
    require: Iterable[Capability | str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> Coordinator:
    """Make a Coordinator for the backend at ``url``; use it with ``async with`` or ``await``.

    ``url`` defaults to ``$LOCKSTEP_URL``, then ``[tool.lockstep]`` in pyproject.toml
    or ``lockstep.toml``, then ``file://./.lockstep/coord.db``. ``require`` lists
    capabilities the driver must have (CapabilityError names the missing ones).
    ``timeout`` is the default deadline of each backend call, in seconds.
    """
    settings = load_settings(url, namespace=namespace, member=member)
    cls = driver_class(settings.scheme)
    options = parse_options(cls.options, settings.query, driver=cls.schemes[0])
    settings = Settings(**{**_fields(settings), "options": options})
    wanted = {_capability(c) for c in require}
    missing = wanted - cls.capabilities
    if missing:
        raise CapabilityError(
            cls.schemes[0],
            (c.value for c in missing),
            hint=f"choose a driver that has them (see `lockstep doctor`); {settings.display_url} "
            f"offers {', '.join(sorted(c.value for c in cls.capabilities))}",
        )
    return Coordinator(cls(settings), settings, timeout=_check_timeout(timeout))


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}


class Coordinator:
    """One connection to a backend, under a namespace, as one member."""

    def __init__(self, driver: Driver, settings: Settings, *, timeout: float) -> None:
        self.driver = driver
        self.settings = settings
        self.timeout = timeout
        self.keys = Keyspace(settings.namespace)
        self._open = False

    # -- identity ------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self.settings.namespace

    @property
    def member(self) -> str:
        return self.settings.member

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.driver.capabilities

    @property
    def is_open(self) -> bool:
        return self._open

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<Coordinator {self.settings.display_url} ns={self.namespace!r} {state}>"

    # -- lifecycle -----------------------------------------------------------------
    async def open(self) -> Coordinator:
        """Connect to the backend (BackendUnavailable within the deadline if it cannot)."""
        if not self._open:
            await self.driver.connect(timeout=self.timeout)
            self._open = True
        return self

    async def close(self) -> None:
        """Close every connection. Idempotent."""
        if self._open:
            self._open = False
        await self.driver.close()

    async def __aenter__(self) -> Coordinator:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, Coordinator]:
        return self.open().__await__()

    # -- backend facts -------------------------------------------------------------
    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else _check_timeout(timeout)

    async def ping(self, *, timeout: float | None = None) -> float:
        """One round trip to the backend; returns its duration in seconds."""
        return await self.driver.ping(timeout=self._deadline(timeout))

    async def server_info(self, *, timeout: float | None = None) -> ServerInfo:
        """Driver, server version, persistence and warnings (what `lockstep doctor` prints)."""
        return await self.driver.server_info(timeout=self._deadline(timeout))

    async def time(self, *, timeout: float | None = None) -> float:
        """The backend's clock in Unix seconds (the server's clock on Redis)."""
        return await self.driver.time(timeout=self._deadline(timeout))
