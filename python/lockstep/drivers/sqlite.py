"""The SQLite driver: ``file:///abs/path/coord.db`` or ``file://./relative/coord.db``.

State is shared by every process on this host that opens the same file, and
outlives them. The database runs in WAL mode, so readers never wait for the
writer; writers take the write lock up front (``BEGIN IMMEDIATE``) and wait up
to ``busy_timeout`` seconds for it, never longer than the call's deadline.

sqlite3 blocks, so each driver owns ONE worker thread holding its connection,
and every statement runs there, awaited from asyncio. When a call's deadline
passes while its statement still runs, the statement is interrupted
(``sqlite3_interrupt``) so the thread frees up, and the caller gets
:class:`~lockstep.errors.Timeout` for a read or
:class:`~lockstep.errors.OutcomeUnknown` for a write (it may have committed).

Semantics are Redis's, exactly as the memory driver's (see
:mod:`lockstep.drivers.memory`). TTLs are judged on the host's clock
(``time.time()``): every process sharing the file shares that clock, but a
wall-clock jump moves every deadline with it.

Options: ``busy_timeout`` (seconds, default 5), ``synchronous`` (``normal``, the
default: a power loss may drop the last commits but never tears the database;
``full``: fsync every commit), ``allow_network_fs`` (default off: SQLite's
locks are not reliable over NFS, SMB and the like; see :mod:`.fsinfo`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from ..errors import BackendError, BackendUnavailable, ConfigError, LockstepError, OutcomeUnknown, Timeout
from . import fsinfo
from . import sqlite_schema as tables
from .base import Capability, Driver, Option, ServerInfo, parse_bool, parse_seconds
from .local_rules import check_amount, check_field, check_fields, check_key, check_keys, check_ttl, check_value
from .sqlite_leases import SqliteLeaseStore
from .sqlite_schema import SCHEMA_VERSION, create_private_file, enable_wal, migrate, resolve_path

__all__ = ["SqliteDriver"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection, float], T]

BUSY_MARGIN = 0.05  # s: give up waiting for the lock just before the deadline, with a clear error
CLOSE_GRACE = 5.0  # s: how long close() waits for an in-flight statement


def _parse_synchronous(text: str) -> str:
    value = text.strip().lower()
    if value not in ("normal", "full"):
        raise ValueError(f"expected normal or full, got {text!r}")
    return value


class _ConnectionThread:
    """One worker thread owning one connection; every statement of a driver runs on it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockstep-sqlite")
        self.conn: sqlite3.Connection | None = None
        self._busy_ms = -1
        self._lock = threading.Lock()
        self._running: object | None = None  # token of the job on the thread now

    def connection(self) -> sqlite3.Connection:
        if self.conn is None:
            raise BackendUnavailable(f"{self.label}: the connection is closed")
        return self.conn

    def limit_busy_wait(self, seconds: float) -> None:
        """How long SQLite may wait for another connection's lock (on the thread)."""
        ms = max(0, int(seconds * 1000)) // 10 * 10
        if ms != self._busy_ms:
            self.connection().execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_ms = ms

    async def run(self, fn: Callable[[], T]) -> T:
        token = object()
        try:
            future = self.pool.submit(self._execute, token, fn)
        except RuntimeError:  # the pool is shut down
            raise BackendUnavailable(f"{self.label}: the connection is closed") from None
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # Not started: cancelled, it never runs. Running: interrupt it so the thread
            # frees up; the lock makes sure the interrupt cannot hit the next job.
            if not future.cancel():
                with self._lock:
                    if self._running is token and self.conn is not None:
                        self.conn.interrupt()
            raise

    def _execute(self, token: object, fn: Callable[[], T]) -> T:
        with self._lock:
            self._running = token
        try:
            return fn()
        finally:
            with self._lock:
                self._running = None

    def close_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def shutdown(self) -> None:
        """Close the connection once queued jobs are done, and let the thread end."""
        self.pool.submit(self.close_connection)
        self.pool.shutdown(wait=False)


class SqliteDriver(Driver):
    """State in one SQLite file shared by the processes of this host; see the module docstring."""

    schemes: ClassVar[tuple[str, ...]] = ("file",)
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.KV,
            Capability.CROSS_PROCESS,
            Capability.PERSISTENT,
            Capability.LOCKS,
            Capability.PUBSUB,
            Capability.DURABLE_MESSAGES,
            Capability.RATE_LIMIT,
        }
    )
    options: ClassVar[Mapping[str, Option]] = {
        "busy_timeout": Option(
            "busy_timeout", parse_seconds, 5.0, "seconds to wait for another process's write lock"
        ),
        "synchronous": Option(
            "synchronous", _parse_synchronous, "normal", "normal or full (fsync every commit)"
        ),
        "allow_network_fs": Option(
            "allow_network_fs", parse_bool, False, "1 to accept a database on NFS, SMB, ..."
        ),
    }

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        for name, spec in self.options.items():
            self.opts.setdefault(name, spec.default)
        self.path = resolve_path(settings.location, settings.base_dir)
        self._thread: _ConnectionThread | None = None
        self._network_mount: fsinfo.Mount | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def connect(self, *, timeout: float) -> None:
        if self._thread is not None:
            return
        thread = _ConnectionThread(f"file: {self.path}")
        try:
            await self.guard(
                "connect",
                lambda: thread.run(lambda: self._open(thread, timeout)),
                timeout=timeout,
                idempotent=True,
            )
        except Timeout as exc:
            thread.shutdown()
            raise BackendUnavailable(
                f"file: could not open {self.path} within {timeout:g} s "
                "(is another process holding it locked?)"
            ) from exc
        except BaseException:
            thread.shutdown()
            raise
        self._thread = thread

    def _open(self, thread: _ConnectionThread, timeout: float) -> None:
        """On the thread: check the filesystem, create the file privately, set WAL, migrate."""
        mount = fsinfo.network_mount_for(str(self.path))
        if mount is not None and not self.opts["allow_network_fs"]:
            raise ConfigError(
                f"file: {self.path} is on a network filesystem ({mount.describe()}); SQLite's locks "
                "are not reliable there, so two processes could both hold a lock. Use redis:// for "
                "coordination across hosts, or add ?allow_network_fs=1 to accept the risk"
            )
        self._network_mount = mount
        create_private_file(self.path)
        busy = min(self.opts["busy_timeout"], max(0.0, timeout - BUSY_MARGIN))
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=busy, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"file: cannot open {self.path}: {exc}") from exc
        try:
            enable_wal(conn, self.path, give_up_at=time.monotonic() + busy)
            conn.execute(f"PRAGMA synchronous = {self.opts['synchronous'].upper()}")
            migrate(conn, self.path)
        except sqlite3.Error as exc:
            conn.close()
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_NOTADB:
                raise ConfigError(f"file: {self.path} is not an SQLite database ({exc})") from exc
            raise BackendUnavailable(f"file: cannot open {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        thread.conn = conn

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            await asyncio.wait_for(thread.run(thread.close_connection), CLOSE_GRACE)
        except (TimeoutError, sqlite3.Error, LockstepError):
            pass  # the thread closes the connection once its current statement ends
        finally:
            thread.shutdown()

    def lease_store(self, *, keys: Any, session: str, owner: str) -> SqliteLeaseStore:
        return SqliteLeaseStore(self, session=session, owner=owner, keys=keys)

    def member_store(self, keys: Any) -> Any:
        from .sqlite_members import SqliteMemberStore

        return SqliteMemberStore(self, keys)

    def message_store(self, keys: Any) -> Any:
        """The log tables of :mod:`.sqlite_messages`, for the coordinator's namespace."""
        from .sqlite_messages import SqliteMessageStore

        return SqliteMessageStore(self, keys)

    def rate_store(self, keys: Any, name: str, rule: Any) -> Any:
        from .sqlite_rates import SqliteRateStore

        return SqliteRateStore(self, keys, name, rule)

    def signal_store(self) -> Any:
        from .sqlite_signals import SqliteSignalStore

        return SqliteSignalStore(self)

    async def _run(
        self, op: str, job: Job[T], *, timeout: float, write: bool, precheck: Job[T | None] | None = None
    ) -> T:
        """Run ``job(conn, now)`` on the worker thread within ``timeout``; writes in one transaction.
        A write's ``precheck(conn, now)`` runs first on the thread, outside the transaction; a
        result other than None is returned as is, without taking the write lock (rate limits:
        a refusal reads, an admission writes, in one turn of the thread)."""
        thread = self._thread
        if thread is None:
            raise BackendUnavailable(f"file: {op}: the driver for {self.path} is not connected")
        deadline = time.monotonic() + timeout
        busy_cap = self.opts["busy_timeout"]

        def call() -> T:
            conn = thread.connection()
            thread.limit_busy_wait(min(busy_cap, deadline - time.monotonic() - BUSY_MARGIN))
            now = time.time()
            if not write:
                return job(conn, now)
            if precheck is not None and (early := precheck(conn, now)) is not None:
                return early
            conn.execute("BEGIN IMMEDIATE")
            try:
                tables.purge_expired(conn, now)
                result = job(conn, now)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    # The first error says more; SQLite rolls back on close anyway.
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise

        # Every write may commit after its deadline passed: OutcomeUnknown, never Timeout.
        return await self.guard(op, lambda: thread.run(call), timeout=timeout, idempotent=not write)

    def _translate(self, op: str, exc: BaseException, *, idempotent: bool) -> Exception | None:
        if isinstance(exc, LockstepError):
            return None
        if not isinstance(exc, sqlite3.Error):
            return super()._translate(op, exc, idempotent=idempotent)
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        where = f"file: {op} on {self.path}"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return Timeout(
                f"{where}: the database stayed locked by another connection for the whole busy "
                f"timeout ({self.opts['busy_timeout']:g} s, capped by the call's deadline); nothing changed"
            )
        if code == sqlite3.SQLITE_INTERRUPT:
            if idempotent:
                return Timeout(f"{where} was interrupted at its deadline")
            return OutcomeUnknown(
                f"{where} was interrupted at its deadline; it may or may not have taken effect"
            )
        if code == sqlite3.SQLITE_FULL:
            return BackendError(f"{where} failed: the disk (or database size limit) is full: {exc}")
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
            return BackendError(f"{where} failed: the file or its folder is read-only or inaccessible: {exc}")
        if code == sqlite3.SQLITE_IOERR and not idempotent:
            return OutcomeUnknown(f"{where} hit an I/O error and may or may not have taken effect: {exc}")
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return BackendError(f"{where} failed: the database file is damaged: {exc}")
        return BackendError(f"{where} failed: {exc}")

    # -- facts ----------------------------------------------------------------------------
    async def ping(self, *, timeout: float) -> float:
        start = time.monotonic()
        await self._run(
            "ping", lambda conn, now: conn.execute("SELECT 1").fetchone(), timeout=timeout, write=False
        )
        return time.monotonic() - start

    async def time(self, *, timeout: float) -> float:
        return await self._run("time", lambda conn, now: now, timeout=timeout, write=False)

    async def server_info(self, *, timeout: float) -> ServerInfo:
        def facts(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
            def pragma(name: str) -> Any:
                return conn.execute(f"PRAGMA {name}").fetchone()[0]

            return {
                "path": str(self.path),
                "size_bytes": pragma("page_count") * pragma("page_size"),
                "journal_mode": pragma("journal_mode"),
                "schema_version": pragma("user_version"),
                "keys": tables.live_keys(conn, now),
                "busy_timeout_s": self.opts["busy_timeout"],
                "clock": "host (time.time())",
            }

        details = await self._run("server_info", facts, timeout=timeout, write=False)
        warnings = []
        if self._network_mount is not None:
            warnings.append(
                f"{self.path} is on a network filesystem ({self._network_mount.describe()}), allowed by "
                "allow_network_fs=1: locks may not be exclusive across hosts"
            )
        if details["schema_version"] != SCHEMA_VERSION:
            warnings.append(f"schema version {details['schema_version']}, expected {SCHEMA_VERSION}")
        return ServerInfo(
            driver="file",
            version=sqlite3.sqlite_version,
            persistence=f"sqlite wal (synchronous={self.opts['synchronous']})",
            durable=True,
            warnings=warnings,
            details=details,
        )

    # -- key/value: validate here, run the statements of sqlite_schema on the thread -----------
    async def get(self, key: str, *, timeout: float) -> bytes | None:
        check_key(key)
        return await self._run("get", lambda c, now: tables.get(c, now, key), timeout=timeout, write=False)

    async def mget(self, keys: list[str], *, timeout: float) -> list[bytes | None]:
        if not check_keys(keys):
            return []
        return await self._run("mget", lambda c, now: tables.mget(c, now, keys), timeout=timeout, write=False)

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
        timeout: float,
    ) -> bool:
        data = check_value(check_key(key), value)
        seconds = None if ttl is None else check_ttl(key, ttl)

        def job(c: sqlite3.Connection, now: float) -> bool:
            return tables.set_value(c, now, key, data, seconds, only_if_absent)

        return await self._run("set", job, timeout=timeout, write=True)

    async def delete(self, keys: list[str], *, timeout: float) -> int:
        if not check_keys(keys):
            return 0
        return await self._run(
            "delete", lambda c, now: tables.delete(c, now, keys), timeout=timeout, write=True
        )

    async def incr(self, key: str, amount: int = 1, *, timeout: float) -> int:
        step = check_amount(check_key(key), amount)
        return await self._run(
            "incr", lambda c, now: tables.incr(c, now, key, step), timeout=timeout, write=True
        )

    async def expire(self, key: str, ttl: float, *, timeout: float) -> bool:
        seconds = check_ttl(check_key(key), ttl)
        return await self._run(
            "expire", lambda c, now: tables.expire(c, now, key, seconds), timeout=timeout, write=True
        )

    async def ttl(self, key: str, *, timeout: float) -> float | None:
        check_key(key)
        return await self._run("ttl", lambda c, now: tables.ttl(c, now, key), timeout=timeout, write=False)

    async def hset(self, key: str, mapping: Mapping[str, bytes], *, timeout: float) -> int:
        fields = check_fields(check_key(key), mapping)
        if not fields:
            return 0
        return await self._run(
            "hset", lambda c, now: tables.hset(c, now, key, fields), timeout=timeout, write=True
        )

    async def hget(self, key: str, field: str, *, timeout: float) -> bytes | None:
        check_field(check_key(key), field)
        return await self._run(
            "hget", lambda c, now: tables.hget(c, now, key, field), timeout=timeout, write=False
        )

    async def hgetall(self, key: str, *, timeout: float) -> dict[str, bytes]:
        check_key(key)
        return await self._run(
            "hgetall", lambda c, now: tables.hgetall(c, now, key), timeout=timeout, write=False
        )

    async def hdel(self, key: str, fields: list[str], *, timeout: float) -> int:
        if not [check_field(check_key(key), name) for name in fields]:
            return 0
        return await self._run(
            "hdel", lambda c, now: tables.hdel(c, now, key, fields), timeout=timeout, write=True
        )
