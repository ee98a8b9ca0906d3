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

import asyncio
import math
import os
from collections.abc import Generator, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .config import Settings, load_settings
from .drivers import driver_class
from .drivers.base import Capability, Driver, ServerInfo, parse_options
from .errors import CapabilityError, ConfigError
from .keys import Keyspace
from .membership import Agent, AgentRequest, MemberInfo, Membership
from .drivers.member_store import MemoryUsage
from .lease_manager import LeaseManager
from .drivers.lease_store import ResourceLeases
from .drivers.message_store import GroupInfo
from .leases import HolderInfo, LeaseRequest
from .leases import request as lease_request
from .messaging import Consumer, Messaging, Subscription
from .names import validate_name

if TYPE_CHECKING:
    from .acks import Ack, AckResult
    from .claims import ClaimRequest
    from .ports import PortsRequest
    from .barriers import BarrierResult
    from .ratelimit import RateLimiter, RateLimits
    from .signals import Signal, Signals
    from .reaping import SweepReport

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
        self._messaging: Messaging | None = None
        self._leases: LeaseManager | None = None
        self._membership: Membership | None = None
        self._signals: Signals | None = None
        self._rate_limits: RateLimits | None = None

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
        """Release held leases, close every connection. Idempotent."""
        signals, self._signals = self._signals, None
        if signals is not None:  # its wake-up subscription first, while messaging is open
            await signals.shared.close()
        messaging, self._messaging = self._messaging, None
        if messaging is not None:
            await messaging.close()
        membership, self._membership = self._membership, None
        if membership is not None:  # before leases: leaving agents release what they own
            await membership.close()
        leases, self._leases = self._leases, None
        if leases is not None:
            await leases.close()
        rate_limits, self._rate_limits = self._rate_limits, None
        if rate_limits is not None:  # leased units go back, the script connection closes
            await rate_limits.close()
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

    # -- signals, ACKs, barriers (see lockstep.signals, lockstep.acks, lockstep.barriers) ----
    def signals(self, *, secret: bytes | str | None = None, keep: int = 100, poll: float = 0.25) -> Signals:
        """Signals, ACKs and barriers; with ``secret``, ACKs are signed (HMAC-SHA256) and only
        validly signed ones count. ``keep``: entries retained per signal log; ``poll``: the
        longest a waiter goes without checking the backend. ``coord.signal()`` & co. use
        the defaults."""
        from .signals import Signals, SignalsShared

        if self._signals is None:
            self._signals = Signals(self, SignalsShared(self))
        if secret is None and keep == 100 and poll == 0.25:
            return self._signals
        return Signals(self, self._signals.shared, secret=secret, keep=keep, poll=poll)

    async def signal(self, target: str, name: str, data: Any = None, *, timeout: float | None = None) -> Signal:
        """Append signal ``name`` to ``target``'s log (durable; the next generation) and wake waiters."""
        return await self.signals().signal(target, name, data, timeout=timeout)

    async def wait_signal(
        self, source: str, name: str, *, timeout: float, after_generation: int | None = None
    ) -> Signal:
        """The newest signal ``name`` of ``source`` (or the first after ``after_generation``),
        waiting up to ``timeout`` s; raises WaitTimeout (a lockstep.Timeout) when none comes."""
        return await self.signals().wait_signal(source, name, timeout=timeout, after_generation=after_generation)

    async def ack(self, signal: Signal, *, by: Any = None, data: Any = None, timeout: float | None = None) -> Ack:
        """Acknowledge ``signal`` as ``by`` (an agent or an id; default this member)."""
        return await self.signals().ack(signal, by=by, data=data, timeout=timeout)

    async def wait_acks(self, signal: Signal, parties: Sequence[Any], *, timeout: float) -> AckResult:
        """Wait for ACKs of ``signal`` from ``parties``: ``acked``, ``missing``, ``rejected``;
        never raises for a timeout."""
        return await self.signals().wait_acks(signal, parties, timeout=timeout)

    async def barrier(self, name: str, parties: Sequence[Any], *, timeout: float, me: Any = None) -> BarrierResult:
        """Arrive at barrier ``name`` as ``me`` (default this member); returns by ``timeout``
        as released, timed out (``missing``) or broken (``dead``)."""
        return await self.signals().barrier(name, parties, timeout=timeout, me=me)

    # -- rate limits ---------------------------------------------------------------
    def rate_limit(
        self,
        name: str,
        rate: str | tuple[int, float] = "100/minute",
        *,
        burst: int | None = None,
        algorithm: Literal["gcra", "sliding_window"] = "gcra",
        on_backend_error: Literal["fail_closed", "fail_open", "local"] = "fail_closed",
        lease: int | None = None,
        lease_ttl: float | None = None,
    ) -> RateLimiter:
        """A limit of ``rate`` (``"100/minute"``, ``"50/10s"``, ``(limit, seconds)``) named
        ``name``, shared by every process on this backend; see :mod:`lockstep.ratelimit`
        for ``burst``, the algorithms, the fail modes and leasing."""
        from .ratelimit import RateLimits

        if self._rate_limits is None:
            self._rate_limits = RateLimits(self)
        return self._rate_limits.limiter(
            name,
            rate,
            burst=burst,
            algorithm=algorithm,
            on_backend_error=on_backend_error,
            lease=lease,
            lease_ttl=lease_ttl,
        )

    # -- messaging (see lockstep.messaging) -------------------------------------------
    @property
    def messaging(self) -> Messaging:
        if self._messaging is None:
            self._messaging = Messaging(self)
        return self._messaging

    def publish(self, channel: str, data: Any, *, timeout: float | None = None) -> asyncio.Future[str]:
        """Publish ``data`` (anything msgspec encodes) on ``channel``: ``await`` the result for
        the message id. It is encoded at the call: changing ``data`` afterwards changes
        nothing, and data that cannot be encoded fails this call alone (EnvelopeError). A
        ``msgspec.Raw`` (JSON encoded already) is sent as it is: if it is not one JSON value,
        subscribers get an EnvelopeError in that message's place.

        Returns a Future, not a coroutine, so ``asyncio.gather`` of 10,000 publishes creates
        no tasks; all calls made before the loop next runs go out in one pipelined write.
        A reply lost after sending raises OutcomeUnknown (never resent). Bad arguments (a
        channel name) raise at once."""
        return self.messaging.publish(channel, data, timeout=self._deadline(timeout))

    async def publish_many(
        self, channel: str, items: Iterable[Any], *, timeout: float | None = None
    ) -> Sequence[str]:
        """Publish every item, in order, in one round trip; returns their message ids (a
        sequence that makes each id on demand). The items are encoded when the call runs."""
        future = self.messaging.publish_many(channel, items, timeout=self._deadline(timeout))
        return await future

    def subscribe(
        self,
        *channels: str,
        from_id: str | None = None,
        type: Any = None,
        strict: bool = False,
        max_buffer: int = 50_000,
        timeout: float | None = None,
    ) -> Subscription:
        """Messages of ``channels`` as an async iterator of Message | Gap | EnvelopeError
        (``async with``). ``from_id`` replays from a log position ("0": all retained; durable
        drivers). ``type`` decodes data into it (default: the channel's binding). ``strict``
        raises MessagesLost / EnvelopeError instead of yielding them. See lockstep.subscription."""
        return self.messaging.subscribe(
            channels, from_id=from_id, type=type, strict=strict, max_buffer=max_buffer,
            timeout=self._deadline(timeout),
        )

    def consume(
        self,
        channel: str,
        group: str,
        *,
        consumer: str | None = None,
        start: Literal["0", "$"] = "0",
        batch: int = 64,
        idle: float = 30.0,
        max_deliveries: int = 5,
        dead_letter: bool | str = True,
        type: Any = None,
        strict: bool = False,
        timeout: float | None = None,
    ) -> Consumer:
        """Read ``channel`` as ``consumer`` (default: this member) of consumer ``group``,
        created at ``start`` ("0": the backlog, "$": only new) if missing. Yields Delivery
        (``message``, ``delivery_count``, ``await ack()``) or Gap. Unacked entries come back
        after ``idle`` s; after ``max_deliveries`` they go to ``dead_letter`` (True:
        "<channel>:dead"). Needs DURABLE_MESSAGES. See lockstep.consumer."""
        return self.messaging.consume(
            channel, group, consumer=consumer, start=start, batch=batch, idle=idle,
            max_deliveries=max_deliveries, dead_letter=dead_letter, type=type, strict=strict,
            timeout=self._deadline(timeout),
        )

    def bind_channel(
        self, channel: str, type: Any = None, *, max_len: int | None = 100_000, max_age: float | None = None
    ) -> None:
        """Deliver ``channel``'s data as ``type`` (e.g. a msgspec.Struct) to this coordinator's
        subscribers and consumers; keep at most ``max_len`` entries / ``max_age`` seconds of
        its log on durable drivers (never dropping entries pending in a group)."""
        self.messaging.bind_channel(channel, type, max_len=max_len, max_age=max_age)

    async def consumer_groups(self, *, timeout: float | None = None) -> list[GroupInfo]:
        """Every consumer group of the namespace: channel, group, consumers, entries pending
        (delivered, not acknowledged) and lag (not yet delivered). [] on pub/sub drivers."""
        return await self.messaging.store.groups(timeout=self._deadline(timeout))

    # -- leases (see lockstep.leases) -----------------------------------------------
    def _lease_manager(self) -> LeaseManager:
        if self._leases is None:
            self._leases = LeaseManager(self)
        return self._leases

    def lock(self, name: str, *, ttl: float = 30.0, wait: float = 60.0) -> LeaseRequest:
        """A fenced, auto-renewed lock on ``name``: ``await`` it or ``async with`` it.

        ``wait`` bounds the wait in seconds (0 tries once); LockTimeout names the holder.
        """
        return lease_request(self, "lock", [name], ttl=ttl, wait=wait)

    def semaphore(self, name: str, slots: int, *, ttl: float = 30.0, wait: float = 60.0) -> LeaseRequest:
        """A lease on one of ``slots`` slots of ``name`` (kind ``sem``); as :meth:`lock`."""
        return lease_request(self, "sem", [name], slots=slots, ttl=ttl, wait=wait)

    def acquire_many(
        self, resources: list[str], *, ttl: float = 30.0, wait: float = 60.0, kind: str = "lock"
    ) -> LeaseRequest:
        """One lease on every resource or none, atomically (FIFO with other waiters).

        When ``wait`` runs out, ClaimConflict maps each conflicting resource to its holder.
        ``kind`` separates resource families ("lock" shares names with :meth:`lock`).
        """
        return lease_request(self, kind, resources, ttl=ttl, wait=wait)

    def ports(
        self, count: int = 1, *, range: tuple[int, int] = (20000, 29999), ttl: float = 30.0, wait: float = 60.0
    ) -> PortsRequest:
        """``count`` TCP ports leased all or none (kind "port"): unique across every process on
        the backend and probe-bound free on this host; ``lease.ports`` lists them. ``range``
        (both ends included) defaults to 20000-29999, below the kernel's ephemeral ports.
        ``wait`` bounds the wait when the range has no ``count`` free ports. See lockstep.ports."""
        from .ports import PortsRequest

        return PortsRequest(self, count, port_range=range, ttl=ttl, wait=wait)

    def claim(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        ttl: float = 30.0,
        wait: float = 0.0,
        root: str | os.PathLike[str] | None = None,
        holder: str | None = None,
    ) -> ClaimRequest:
        """Claim every path (kind "claim") or none; ClaimConflict maps each conflicting path to
        its holder. Paths are normalised relative to ``root`` (default: the current directory),
        so "./a.py" and "a.py" conflict. ``holder`` names this claim to others (default: this
        member), e.g. a sprint id. See lockstep.claims."""
        from .claims import ClaimRequest

        return ClaimRequest(self, paths, ttl=ttl, wait=wait, root=root, holder=holder)

    async def lease_holders(self, name: str, *, kind: str = "lock", timeout: float | None = None) -> list[HolderInfo]:
        """Who holds ``name`` now: owner member, fence, seconds left (kind "sem" for semaphores)."""
        req = lease_request(self, kind, [name], ttl=1.0, wait=0.0)
        return await self._lease_manager().store.holders(req.kind, req.names[0], timeout=self._deadline(timeout))

    async def leases(self, *, timeout: float | None = None) -> list[ResourceLeases]:
        """Every resource of the namespace someone holds or waits for, by (kind, name): its
        holders (owner, token, fence, seconds left on the backend's clock) and its queue in
        order. Read from an index on Redis, never by scanning the keyspace."""
        return await self._lease_manager().store.list_resources(timeout=self._deadline(timeout))

    async def purge_lease(self, name: str, *, kind: str = "lock", timeout: float | None = None) -> bool:
        """Forget an idle resource: its fence counter and fenced values. False (nothing
        changed) while anyone holds or waits for it. Fences are otherwise permanent: only for
        a namespace being retired (a client that saw the old fences reports data loss)."""
        req = lease_request(self, kind, [name], ttl=1.0, wait=0.0)
        return await self._lease_manager().store.purge(req.kind, req.names[0], timeout=self._deadline(timeout))

    async def fenced_get(
        self, name: str, key: str, *, kind: str = "lock", timeout: float | None = None
    ) -> bytes | None:
        """Read a value written by ``lease.fenced_set(key, ...)`` on resource ``name``."""
        req = lease_request(self, kind, [name], ttl=1.0, wait=0.0)
        validate_name(key, what="key")
        return await self._lease_manager().store.fenced_get(
            req.kind, req.names[0], key, timeout=self._deadline(timeout)
        )

    # -- membership (see lockstep.membership and lockstep.reaping) ---------------------
    def _membership_manager(self) -> Membership:
        if self._membership is None:
            self._membership = Membership(self)
        return self._membership

    def agent(
        self, agent_id: str, *, ttl: float = 120.0, interval: float = 30.0, meta: dict[str, Any] | None = None
    ) -> AgentRequest:
        """Register agent ``agent_id`` (``async with`` it, or ``await`` it and ``leave()``).

        It heartbeats every ``interval`` s and is declared dead ``ttl`` s after its last
        heartbeat (backend clock); what it owns is deleted when it leaves or is reaped.
        """
        return self._membership_manager().request(agent_id, ttl=ttl, interval=interval, meta=meta)

    async def members(self, *, timeout: float | None = None) -> list[MemberInfo]:
        """Every registered agent: incarnation, last heartbeat, meta, host, pid, alive or not."""
        return await self._membership_manager().members(timeout=self._deadline(timeout))

    async def sweep(self, *, threshold: float | None = None, timeout: float | None = None) -> SweepReport:
        """Reap agents silent for longer than ``threshold`` s (default: each one's ttl) and
        agents whose local process is gone; free their leases, delete what they owned,
        announce them on ``agent:lifecycle``. ``timeout`` bounds each backend call."""
        from .reaping import sweep

        return await sweep(self, threshold=threshold, timeout=self._deadline(timeout))

    async def memory_usage(self, *, timeout: float | None = None) -> MemoryUsage:
        """Backend bytes in all, and this namespace's share (membership state and owned keys)."""
        return await self._membership_manager().store.memory(timeout=self._deadline(timeout))

    async def put(self, key: str, value: bytes | str, *, ttl: float | None = None, timeout: float | None = None) -> None:
        """``agent.put`` for the agent of the current ``async with coord.agent(...)`` block."""
        await self._current_agent("put").put(key, value, ttl=ttl, timeout=timeout)

    async def get(self, key: str, *, agent: str | None = None, timeout: float | None = None) -> bytes | None:
        """Read scratch value ``key`` of ``agent`` (default: the current task's agent)."""
        agent_id = self._current_agent("get").id if agent is None else validate_name(agent, what="agent")
        full = self.keys.key("agent", agent_id, "kv", validate_name(key, what="key"))
        return await self.driver.get(full, timeout=self._deadline(timeout))

    def _current_agent(self, what: str) -> Agent:
        from .errors import InvalidInputError
        from .ownership import owner_of_current_task

        agent = owner_of_current_task()
        if agent is None or agent.coord is not self:
            raise InvalidInputError(
                f"coord.{what}() needs an agent: call it inside `async with coord.agent(...)`, or use the agent's own method"
            )
        return agent
