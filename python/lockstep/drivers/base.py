"""The driver contract: what every backend must offer, and how it says what it can do.

Primitives (messaging, leases, membership, signals, rate limits) are written once
over this contract. A driver is small: connection management, a clock, and
key/value plumbing with TTLs, hashes and counters. Capabilities say what else a
driver promises; ``connect(require=[...])`` refuses a driver lacking one.

Every method that touches the backend takes ``timeout`` (seconds, measured on a
monotonic clock). Drivers call :meth:`Driver.guard` around each operation, which
turns a deadline overrun into :class:`~lockstep.errors.Timeout` for idempotent
calls and :class:`~lockstep.errors.OutcomeUnknown` for non-idempotent ones, and
a lost connection into :class:`~lockstep.errors.BackendUnavailable` (or
``OutcomeUnknown`` again when the request may have reached the server).

Values are ``bytes``. Keys are ``str`` and already namespaced by the caller
(see :mod:`lockstep.keys`); drivers never invent keys and never scan.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import BackendUnavailable, BadOptionError, CapabilityError, LockstepError, OutcomeUnknown, Timeout

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .lease_store import LeaseStore
    from .member_store import MemberStore
    from .message_store import MessageStore
    from .rate_store import RateStore
    from .signal_store import SignalStore

T = TypeVar("T")


class Capability(str, enum.Enum):
    """What a driver promises beyond the key/value contract."""

    KV = "kv"  #: get/set/delete with TTLs, hashes, counters
    CROSS_PROCESS = "cross_process"  #: state is shared by processes on this host
    CROSS_HOST = "cross_host"  #: state is shared by processes on many hosts
    PERSISTENT = "persistent"  #: state outlives every client process
    SERVER_CLOCK = "server_clock"  #: TTLs and time() are judged by the backend's clock
    PUBSUB = "pubsub"  #: publish/subscribe (at-most-once)
    DURABLE_MESSAGES = "durable_messages"  #: consumer groups, ack, redelivery, replay
    LOCKS = "locks"  #: fenced leases: locks, semaphores, ports, claims
    RATE_LIMIT = "rate_limit"  #: shared rate-limit counters that never over-admit
    TLS = "tls"  #: encrypted transport
    AUTH = "auth"  #: password / ACL user authentication

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Option:
    """One URL query option a driver accepts: ``?name=value``."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (1/0, true/false, yes/no), got {text!r}")


def parse_seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


def parse_options(
    specs: Mapping[str, Option], given: Mapping[str, str], *, driver: str
) -> dict[str, Any]:
    """Check URL query options against a driver's specs; bad ones raise BadOptionError."""
    import difflib

    out = {name: spec.default for name, spec in specs.items()}
    for name, raw in given.items():
        spec = specs.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(specs), n=1)
            raise BadOptionError(
                name,
                f"not an option of the {driver} driver",
                accepted=specs,
                closest=close[0] if close else None,
            )
        try:
            out[name] = spec.parse(raw)
        except (TypeError, ValueError) as exc:
            raise BadOptionError(name, f"{exc} ({spec.doc})", accepted=specs) from exc
    return out


@dataclass
class ServerInfo:
    """What ``lockstep doctor`` prints about a backend."""

    driver: str
    version: str
    persistence: str  #: e.g. "aof everysec", "rdb only", "sqlite wal", "none (in-process)"
    durable: bool  #: acknowledged writes survive a crash of the backend
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Driver(abc.ABC):
    """Base class of every backend driver.

    Subclasses set ``scheme``, ``capabilities`` and ``options``, and implement the
    abstract methods. ``settings`` is the parsed URL and options (see
    :class:`lockstep.config.Settings`).
    """

    #: URL schemes served by this driver (the first is its name).
    schemes: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    options: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.opts: dict[str, Any] = dict(settings.options)

    @property
    def name(self) -> str:
        return self.schemes[0]

    # -- lifecycle -----------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self, *, timeout: float) -> None:
        """Open connections and check the backend answers; BackendUnavailable if not."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection. Idempotent."""

    @abc.abstractmethod
    async def ping(self, *, timeout: float) -> float:
        """One round trip; returns its duration in seconds."""

    @abc.abstractmethod
    async def server_info(self, *, timeout: float) -> ServerInfo: ...

    @abc.abstractmethod
    async def time(self, *, timeout: float) -> float:
        """The backend's clock, Unix seconds (the server's on Redis)."""

    # -- key/value -----------------------------------------------------------------
    @abc.abstractmethod
    async def get(self, key: str, *, timeout: float) -> bytes | None: ...

    @abc.abstractmethod
    async def mget(self, keys: list[str], *, timeout: float) -> list[bytes | None]: ...

    @abc.abstractmethod
    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
        timeout: float,
    ) -> bool:
        """Store ``value``; with ``only_if_absent`` only when the key is absent.

        Returns whether it was stored. A ``ttl`` in seconds makes the key expire.
        """

    @abc.abstractmethod
    async def delete(self, keys: list[str], *, timeout: float) -> int:
        """Delete keys; returns how many existed."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, *, timeout: float) -> int:
        """Add to an integer counter (created at 0). Never retried: may raise OutcomeUnknown."""

    @abc.abstractmethod
    async def expire(self, key: str, ttl: float, *, timeout: float) -> bool:
        """Set a key's TTL; returns False when the key does not exist."""

    @abc.abstractmethod
    async def ttl(self, key: str, *, timeout: float) -> float | None:
        """Seconds left to live; None when the key has no TTL or does not exist."""

    @abc.abstractmethod
    async def hset(self, key: str, mapping: Mapping[str, bytes], *, timeout: float) -> int:
        """Set hash fields; returns how many fields were new."""

    @abc.abstractmethod
    async def hget(self, key: str, field: str, *, timeout: float) -> bytes | None: ...

    @abc.abstractmethod
    async def hgetall(self, key: str, *, timeout: float) -> dict[str, bytes]: ...

    @abc.abstractmethod
    async def hdel(self, key: str, fields: list[str], *, timeout: float) -> int: ...

    # -- leases --------------------------------------------------------------------
    def lease_store(self, *, keys: Keyspace, session: str, owner: str) -> LeaseStore:
        """The lease state of this backend for one coordinator (see :mod:`.lease_store`).

        ``session`` identifies the coordinator instance, ``owner`` its member name.
        Drivers with :attr:`Capability.LOCKS` override this.
        """
        raise CapabilityError(self.name, [Capability.LOCKS.value], hint="choose a driver that offers locks")

    # -- membership ----------------------------------------------------------------
    def member_store(self, keys: Keyspace) -> MemberStore:
        """Agents, heartbeats and ownership for one namespace (see :mod:`.member_store`)."""
        raise CapabilityError(self.name, ["membership"], hint="use memory://, file:// or redis://")

    # -- messaging -----------------------------------------------------------------
    def message_store(self, keys: Keyspace) -> MessageStore:
        """This backend's messaging for one coordinator (see :mod:`.message_store`).

        Drivers with :attr:`Capability.PUBSUB` override this.
        """
        raise CapabilityError(
            self.name,
            [Capability.PUBSUB.value],
            hint="choose a driver that offers messaging: memory://, file://, redis:// or redis+streams://",
        )

    # -- rate limits ---------------------------------------------------------------
    def rate_store(self, keys: Keyspace, name: str, rule: Any) -> RateStore:
        """The counters of one named rate limit (see :mod:`.rate_store`); ``rule`` is a
        :class:`~lockstep._core.RateRule`. Drivers with :attr:`Capability.RATE_LIMIT` override this."""
        raise CapabilityError(
            self.name, [Capability.RATE_LIMIT.value], hint="use memory://, file://, redis:// or redis+streams://"
        )

    # -- signals -------------------------------------------------------------------
    def signal_store(self) -> SignalStore:
        """This backend's append-only signal logs (see :mod:`.signal_store`)."""
        raise CapabilityError(self.name, ["signals"], hint="use memory://, file://, redis:// or redis+streams://")

    # -- helpers for subclasses ----------------------------------------------------
    async def guard(
        self, op: str, call: Callable[[], Awaitable[T]], *, timeout: float, idempotent: bool
    ) -> T:
        """Run one backend operation under its deadline, mapping failures to lockstep errors.

        ``op`` names the operation in error messages. Subclasses extend
        :meth:`_translate` for their client library's exceptions.
        """
        try:
            async with asyncio.timeout(timeout):
                return await call()
        except LockstepError:
            # Already decided by the driver (lockstep.Timeout is a TimeoutError too:
            # it must not be re-read as a deadline overrun).
            raise
        except TimeoutError as exc:
            if idempotent:
                raise Timeout(f"{self.name}: {op} did not finish within {timeout:g} s") from exc
            raise OutcomeUnknown(
                f"{self.name}: {op} was sent but no reply came within {timeout:g} s; "
                "it may or may not have taken effect"
            ) from exc
        except Exception as exc:
            translated = self._translate(op, exc, idempotent=idempotent)
            if translated is None:
                raise
            raise translated from exc

    def _translate(self, op: str, exc: BaseException, *, idempotent: bool) -> Exception | None:
        """Map a client library exception to a lockstep error, or None to re-raise it."""
        if isinstance(exc, OSError):
            if idempotent:
                return BackendUnavailable(f"{self.name}: {op} failed: {exc}")
            return OutcomeUnknown(f"{self.name}: {op} may or may not have run: {exc}")
        return None
