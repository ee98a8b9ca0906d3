"""The Redis driver: ``redis://`` and ``rediss://`` (TLS), over redis-py's asyncio client.

URL: ``redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB][?option=value...]`` (user and
password percent-encoded). One ``BlockingConnectionPool`` serves every call.

Retries. redis-py retries a command after a connection error or timeout by
default (``Redis()`` builds ``Retry(ExponentialWithJitterBackoff(...), 10)``), so
a reply lost in transit can apply one ``INCR`` twice. This driver builds its own
pool with ``retry=Retry(NoBackoff(), 0)`` and ``retry_on_error=[]``, so neither
redis-py's connection handshake nor any command on :attr:`RedisDriver.client` is
ever retried behind lockstep's back. It decides itself: an idempotent read is
tried once more after a connection error; a non-idempotent command is never
retried, and when it was sent but got no reply it raises
:class:`~lockstep.errors.OutcomeUnknown`. One that provably never left (no
connection could be opened) raises ``BackendUnavailable`` or ``Timeout`` instead:
it did not run, so calling again is safe.

To know whether a command was sent, calls run on a pooled connection in two
phases: check out a connected, healthy connection (nothing of ours sent yet), then
send the command and read the raw RESP reply.
"""

from __future__ import annotations

import math
import select
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.connection import BlockingConnectionPool, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..errors import (
    BackendError,
    BackendUnavailable,
    BadOptionError,
    InvalidInputError,
    OutcomeUnknown,
    Timeout,
)
from ..keys import Keyspace
from .base import Capability, Driver, ServerInfo
from .redis_leases import RedisLeaseStore
from .redis_info import AOF_OFF_WARNING, describe_server, pairs, parse_info, text_pairs
from .redis_url import OPTIONS, RedisAddress

__all__ = ["AOF_OFF_WARNING", "RedisDriver"]

#: redis-py raises these subclasses of ConnectionError for answers, not for broken
#: connections: trying again at once cannot help.
_NOT_RETRYABLE = (
    rx.AuthenticationError,
    rx.AuthorizationError,
    rx.BusyLoadingError,
    rx.MaxConnectionsError,
)


@dataclass
class _Attempt:
    """Whether the command of the current try left this process."""

    sent: bool = False


class RedisDriver(Driver):
    """lockstep's driver for one Redis server (standalone or a primary)."""

    schemes = ("redis", "rediss")
    capabilities = frozenset(
        {
            Capability.KV,
            Capability.CROSS_PROCESS,
            Capability.CROSS_HOST,
            Capability.PERSISTENT,
            Capability.SERVER_CLOCK,
            Capability.TLS,
            Capability.AUTH,
            Capability.LOCKS,
            Capability.PUBSUB,
            Capability.RATE_LIMIT,
        }
    )
    options = OPTIONS

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.opts = {**{name: spec.default for name, spec in OPTIONS.items()}, **self.opts}
        self.address = RedisAddress.parse(settings.location, settings.scheme)
        self.tls = settings.scheme.startswith("rediss")
        if not self.tls:
            for name in settings.query:
                if name.startswith("ssl_"):
                    raise BadOptionError(
                        name,
                        f"applies only to TLS connections; write rediss:// instead of {settings.scheme}://",
                    )
        #: the server's run_id when connect() last succeeded; it changes when Redis restarts
        self.run_id: str | None = None
        self._pool: BlockingConnectionPool | None = None
        self._client: aioredis.Redis | None = None

    # -- connections ---------------------------------------------------------------
    def _make_pool(self) -> BlockingConnectionPool:
        o, a = self.opts, self.address
        kwargs: dict[str, Any] = {
            "host": a.host,
            "port": a.port,
            "db": a.db,
            "username": a.username,
            "password": a.password,
            "socket_timeout": o["socket_timeout"],
            "socket_connect_timeout": o["connect_timeout"],
            "socket_keepalive": True,
            "health_check_interval": o["health_check_interval"],
            "client_name": o["client_name"],
            # No retries inside redis-py, for anything: see the module docstring.
            "retry": Retry(NoBackoff(), 0),
            "retry_on_error": [],
            "connection_class": Connection,
            # RESP2, pinned: redis-py 8 defaults to RESP3, which also switches on "maintenance
            # notifications" (an extra command per connection, and timeouts it may relax).
            # Replies are parsed raw here, so their shapes must not depend on a library default.
            "protocol": 2,
        }
        if self.tls:
            kwargs.update(
                connection_class=SSLConnection,
                ssl_ca_certs=o["ssl_ca_certs"],
                ssl_certfile=o["ssl_certfile"],
                ssl_keyfile=o["ssl_keyfile"],
                ssl_cert_reqs=o["ssl_cert_reqs"],
                ssl_check_hostname=o["ssl_check_hostname"],
            )
        # timeout: how long a call waits for a free connection when all are busy.
        return BlockingConnectionPool(
            max_connections=o["max_connections"], timeout=o["connect_timeout"], **kwargs
        )

    @property
    def client(self) -> aioredis.Redis:
        """The raw ``redis.asyncio.Redis`` on this driver's pool (retries off), for scripts and pub/sub."""
        if self._client is None:
            raise BackendError(f"{self.name}: not connected to {self.address.where}; call connect() first")
        return self._client

    async def connect(self, *, timeout: float) -> None:
        if self._pool is not None:
            return
        self._pool = self._make_pool()
        self._client = aioredis.Redis(connection_pool=self._pool)
        try:
            self.run_id = await self.guard("connect", self._handshake, timeout=timeout, idempotent=True)
        except Timeout as exc:
            await self.close()
            raise BackendUnavailable(
                f"{self.name}: cannot reach {self.address.where} within {timeout:g} s"
            ) from exc
        except BaseException:
            await self.close()
            raise

    async def _handshake(self) -> str | None:
        await self._run(("PING",), idempotent=True)
        try:
            raw = await self._run(("INFO", "server"), idempotent=True)
        except rx.NoPermissionError:
            return None  # an ACL user without INFO: restarts cannot be told by run_id
        return parse_info(raw).get("run_id")

    async def close(self) -> None:
        client, pool = self._client, self._pool
        self._client = self._pool = None
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.aclose()

    def lease_store(self, *, keys: Keyspace, session: str, owner: str) -> RedisLeaseStore:
        return RedisLeaseStore(self, keys, session=session, owner=owner)

    def member_store(self, keys: Keyspace) -> Any:
        from .redis_members import RedisMemberStore

        return RedisMemberStore(self, keys)

    def message_store(self, keys: Keyspace) -> Any:
        """PUBLISH/SUBSCRIBE (see :mod:`.redis_pubsub`); redis+streams:// overrides it."""
        from .redis_pubsub import RedisPubSubStore

        return RedisPubSubStore(self, keys)

    def rate_store(self, keys: Keyspace, name: str, rule: Any) -> Any:
        from .redis_rates import RedisRateStore

        return RedisRateStore(self, keys, name, rule)

    def signal_store(self) -> Any:
        from .redis_signals import RedisSignalStore

        return RedisSignalStore(self)

    # -- running commands ----------------------------------------------------------
    async def _execute(self, attempt: _Attempt, args: Sequence[Any]) -> Any:
        """One try: check out a healthy connection, then send and read the raw reply."""
        pool = self._pool
        if pool is None:
            raise rx.ConnectionError(f"not connected to {self.address.where}; call connect() first")
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            if _peer_closed(conn):  # e.g. Redis restarted: open a fresh one; nothing was sent
                await conn.disconnect()
                await conn.connect()
            await conn.check_health()  # PINGs a connection idle past health_check_interval
            attempt.sent = True
            await conn.send_command(*args, check_health=False)
            return await conn.read_response()
        finally:
            await pool.release(conn)

    async def _run(self, args: Sequence[Any], *, idempotent: bool, attempt: _Attempt | None = None) -> Any:
        """Send one command; an idempotent one is tried once more after a connection error."""
        attempt = attempt or _Attempt()
        try:
            return await self._execute(attempt, args)
        except rx.ConnectionError as exc:
            if isinstance(exc, _NOT_RETRYABLE) or not idempotent:
                raise
        return await self._execute(attempt, args)

    async def _call(self, op: str, *args: Any, idempotent: bool, timeout: float) -> Any:
        """Run one command under its deadline, mapped to lockstep errors."""
        attempt = _Attempt()
        try:
            return await self.guard(
                op,
                lambda: self._run(args, idempotent=idempotent, attempt=attempt),
                timeout=timeout,
                idempotent=idempotent,
            )
        except OutcomeUnknown as exc:
            if attempt.sent:
                raise
            # The command never left: it did not run, so calling again is safe.
            cause = exc.__cause__
            if isinstance(cause, TimeoutError | rx.TimeoutError):
                raise Timeout(
                    f"{self.name}: {op} was not sent: no connection to {self.address.where} "
                    f"within {timeout:g} s; it did not run"
                ) from cause
            raise BackendUnavailable(
                f"{self.name}: {op} was not sent: cannot reach {self.address.where} ({cause}); "
                "it did not run"
            ) from cause

    def _translate(self, op: str, exc: BaseException, *, idempotent: bool) -> Exception | None:
        where, user = self.address.where, self.address.username or "default"
        if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError):
            return BackendUnavailable(
                f"{self.name}: authentication failed for user {user!r} at {where}: {exc}"
            )
        if isinstance(exc, rx.NoPermissionError):
            return BackendError(
                f"{self.name}: {op} was denied by the server's ACL for user {user!r}: {exc}"
            )
        if isinstance(exc, rx.BusyLoadingError):
            return BackendUnavailable(f"{self.name}: {op} refused: {where} is still loading its dataset")
        if isinstance(exc, rx.TimeoutError):
            if idempotent:
                return Timeout(f"{self.name}: {op} timed out talking to {where}: {exc}")
            return OutcomeUnknown(
                f"{self.name}: {op} was sent to {where} but timed out ({exc}); "
                "it may or may not have taken effect"
            )
        if isinstance(exc, rx.ConnectionError):
            if idempotent:
                return BackendUnavailable(f"{self.name}: {op} failed: cannot reach {where}: {exc}")
            return OutcomeUnknown(
                f"{self.name}: {op} was sent to {where} but the connection failed ({exc}); "
                "it may or may not have taken effect"
            )
        if isinstance(exc, rx.DataError):
            return InvalidInputError(f"{self.name}: {op}: {exc}")
        if isinstance(exc, rx.RedisError):  # ResponseError (WRONGTYPE, not an integer, READONLY, ...)
            return BackendError(f"{self.name}: {op} failed at {where}: {exc}")
        return super()._translate(op, exc, idempotent=idempotent)

    # -- backend facts -------------------------------------------------------------
    async def ping(self, *, timeout: float) -> float:
        async def timed() -> float:
            started = _time.perf_counter()
            await self._run(("PING",), idempotent=True)
            return _time.perf_counter() - started

        return await self.guard("ping", timed, timeout=timeout, idempotent=True)

    async def time(self, *, timeout: float) -> float:
        seconds, micros = await self._call("time", "TIME", idempotent=True, timeout=timeout)
        return int(seconds) + int(micros) / 1_000_000

    async def server_info(self, *, timeout: float) -> ServerInfo:
        async def gather() -> tuple[dict[str, str], dict[str, str] | None]:
            info = parse_info(await self._run(("INFO",), idempotent=True))
            try:
                flat = await self._run(("CONFIG", "GET", "appendfsync", "save"), idempotent=True)
            except rx.NoPermissionError:
                return info, None  # an ACL user without CONFIG: described as unknown
            return info, text_pairs(flat)

        info, config = await self.guard("server_info", gather, timeout=timeout, idempotent=True)
        return describe_server(info, config, driver=self.name, address=self.address, tls=self.tls)

    # -- key/value -----------------------------------------------------------------
    async def get(self, key: str, *, timeout: float) -> bytes | None:
        reply: bytes | None = await self._call("get", "GET", _key(key), idempotent=True, timeout=timeout)
        return reply

    async def mget(self, keys: list[str], *, timeout: float) -> list[bytes | None]:
        if not keys:
            return []
        return list(await self._call("mget", "MGET", *map(_key, keys), idempotent=True, timeout=timeout))

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
        timeout: float,
    ) -> bool:
        args: list[Any] = ["SET", _key(key), _value(value, key)]
        if ttl is not None:
            args += ["PX", _millis(ttl, "ttl")]
        if only_if_absent:
            args.append("NX")
        return await self._call("set", *args, idempotent=False, timeout=timeout) is not None

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        if not keys:
            return 0
        return int(await self._call("delete", "DEL", *map(_key, keys), idempotent=False, timeout=timeout))

    async def incr(self, key: str, amount: int = 1, *, timeout: float) -> int:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidInputError(f"incr amount must be an integer, got {amount!r}")
        return int(await self._call("incr", "INCRBY", _key(key), amount, idempotent=False, timeout=timeout))

    async def expire(self, key: str, ttl: float, *, timeout: float) -> bool:
        millis = _millis(ttl, "ttl")
        return bool(
            await self._call("expire", "PEXPIRE", _key(key), millis, idempotent=False, timeout=timeout)
        )

    async def ttl(self, key: str, *, timeout: float) -> float | None:
        millis = int(await self._call("ttl", "PTTL", _key(key), idempotent=True, timeout=timeout))
        return None if millis < 0 else millis / 1000  # -2: no key, -1: no TTL

    async def hset(self, key: str, mapping: Mapping[str, bytes], *, timeout: float) -> int:
        if not mapping:
            return 0
        flat: list[Any] = []
        for name, value in mapping.items():
            flat += [_field(name), _value(value, f"{key}[{name}]")]
        return int(await self._call("hset", "HSET", _key(key), *flat, idempotent=False, timeout=timeout))

    async def hget(self, key: str, field: str, *, timeout: float) -> bytes | None:
        reply: bytes | None = await self._call(
            "hget", "HGET", _key(key), _field(field), idempotent=True, timeout=timeout
        )
        return reply

    async def hgetall(self, key: str, *, timeout: float) -> dict[str, bytes]:
        flat = await self._call("hgetall", "HGETALL", _key(key), idempotent=True, timeout=timeout)
        return {name.decode("utf-8", "surrogateescape"): value for name, value in pairs(flat)}

    async def hdel(self, key: str, fields: list[str], *, timeout: float) -> int:
        if not fields:
            return 0
        return int(
            await self._call(
                "hdel", "HDEL", _key(key), *map(_field, fields), idempotent=False, timeout=timeout
            )
        )


_POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer shut down its side


def _peer_closed(conn: Connection) -> bool:
    """Whether the server closed or reset this idle pooled connection, by one poll(2).

    redis-py's checkout misses a FIN or RST that the event loop has not processed
    yet; the command would then fail after sending and look like OutcomeUnknown.
    """
    writer = getattr(conn, "_writer", None)  # redis-py's asyncio StreamWriter (private)
    if writer is None:
        return False
    if writer.transport.is_closing():  # the loop already saw the FIN or RST
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    if sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | _POLLRDHUP)
    return any(events & (select.POLLHUP | select.POLLERR | _POLLRDHUP) for _, events in poller.poll(0))


# -- argument checks and reply parsing ---------------------------------------------
def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"a key must be a non-empty str, got {key!r}")
    return key


def _field(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"a hash field name must be a str, got {name!r}")
    return name


def _value(value: bytes, where: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInputError(f"the value for {where!r} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _millis(seconds: float, what: str) -> int:
    """Seconds to whole milliseconds, rounded up so a short TTL never becomes 0 (no TTL)."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (seconds > 0 and math.isfinite(seconds))
    ):
        raise InvalidInputError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return max(1, math.ceil(seconds * 1000))
