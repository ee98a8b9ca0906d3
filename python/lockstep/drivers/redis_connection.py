"""A raw Redis connection for the messaging hot path: pipelined writes, bulk replies.

redis-py parses each reply into Python objects one at a time and serialises commands
one by one; messaging needs a whole socket read turned into messages in one Rust call
(``ReplyReader``) and a whole batch of commands written in one buffer. This is that
connection: an ``asyncio.Protocol`` (no stream layer in between) speaking RESP2, with
the same address, TLS options, login and database as the driver's redis-py pool, and
no retries of anything (see :mod:`.redis`).

Two modes. Request mode: :meth:`RespConnection.request` writes a buffer and returns a
future resolved by a *taker* once its replies arrived (replies come back in order, so
takers wait in a FIFO; a caller that gave up leaves its taker in line, so the replies
after it still find theirs). A reply that no taker waits for means the stream is out of
step: the connection closes. Push mode (a subscriber): every read goes to ``push_handler``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _core
from ..errors import BackendUnavailable, OutcomeUnknown, ProtocolError

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = [
    "LOADING_PAUSE", "ConnectionLost", "Replies", "RespConnection", "SkipReplies", "is_loading", "send_or_unknown",
    "tls_context",
]

Taker = Callable[[_core.ReplyReader], Any]
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer shut down its side
INCOMPLETE: Any = object()  # a taker's "not all my replies are here yet"


LOADING_PAUSE = 0.1  # s between tries while a restarted server loads its dataset


def is_loading(reply: Any) -> bool:
    """``-LOADING``: the server restarted and is still reading its AOF/RDB. Nothing ran,
    and what a command would have said (a group, a stream's length) is not known yet."""
    return isinstance(reply, _core.RespError) and reply.code == "LOADING"


class ConnectionLost(ConnectionError):
    """The connection closed while replies were awaited: what was sent may have run."""


class Replies:
    """A taker for ``count`` generic replies."""

    __slots__ = ("count", "got")

    def __init__(self, count: int) -> None:
        self.count = count
        self.got: list[Any] = []

    def __call__(self, reader: _core.ReplyReader) -> Any:
        self.got += reader.take(self.count - len(self.got))
        return self.got if len(self.got) == self.count else INCOMPLETE


class SkipReplies:
    """A taker for ``count`` replies nobody needs (PUBLISH counts, XADD ids): consumed in
    Rust without building them; the result is the first error reply, or None."""

    __slots__ = ("error", "left")

    def __init__(self, count: int) -> None:
        self.left = count
        self.error: Any = None

    def __call__(self, reader: _core.ReplyReader) -> Any:
        taken, error = reader.skip(self.left)
        self.left -= taken
        if error is not None and self.error is None:
            self.error = error
        return INCOMPLETE if self.left else self.error


def tls_context(opts: dict[str, Any]) -> ssl.SSLContext:
    """The TLS settings of a ``rediss://`` URL, as redis-py applies them."""
    context = ssl.create_default_context(cafile=opts.get("ssl_ca_certs"))
    reqs = opts.get("ssl_cert_reqs", "required")
    context.check_hostname = bool(opts.get("ssl_check_hostname", True)) and reqs != "none"
    context.verify_mode = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}.get(reqs, ssl.CERT_REQUIRED)
    if opts.get("ssl_certfile"):
        context.load_cert_chain(opts["ssl_certfile"], opts.get("ssl_keyfile"))
    return context


class RespConnection(asyncio.Protocol):
    """One connection; see the module docs. Open with :meth:`open`."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.reader = _core.ReplyReader()
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[Taker, asyncio.Future[Any]]] = collections.deque()
        self.push_handler: Callable[[_core.ReplyReader], None] | None = None
        self.on_lost: Callable[[BaseException | None], None] | None = None
        self.closed = False
        self.retired = False  #: writes nothing more; closes once no caller waits on it
        self.close_reason: BaseException | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False

    # -- opening -------------------------------------------------------------------------
    @classmethod
    async def open(cls, driver: RedisDriver, *, timeout: float, purpose: str) -> RespConnection:
        """Connect, log in, select the database, name the client. BackendUnavailable if any
        of it fails within ``timeout`` (nothing of the caller's was sent)."""
        address, opts = driver.address, driver.opts
        where = address.where
        loop = asyncio.get_running_loop()
        conn = cls(f"{driver.name} {purpose} {where}")
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: conn,
                    address.host,
                    address.port,
                    ssl=tls_context(opts) if driver.tls else None,
                )
                await conn._handshake(address.username, address.password, address.db, opts.get("client_name"))
        except TimeoutError:
            conn.close()
            raise BackendUnavailable(f"{driver.name}: cannot reach {where} within {timeout:g} s ({purpose})") from None
        except (OSError, ssl.SSLError, ConnectionLost) as e:
            conn.close()
            raise BackendUnavailable(f"{driver.name}: cannot connect to {where} ({purpose}): {e}") from None
        except BaseException:
            conn.close()
            raise
        return conn

    async def _handshake(self, user: str | None, password: str | None, db: int, name: str | None) -> None:
        commands: list[tuple[Any, ...]] = []
        if password is not None:
            commands.append(("AUTH", user, password) if user else ("AUTH", password))
        if db:
            commands.append(("SELECT", db))
        if name:
            commands.append(("CLIENT", "SETNAME", name))
        if not commands:
            return
        replies = await self.call(commands)
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, _core.RespError):
                what = "login" if command[0] == "AUTH" else " ".join(map(str, command[:2]))
                user_text = f" for user {user!r}" if command[0] == "AUTH" and user else ""
                raise BackendUnavailable(f"{self.label}: {what} refused{user_text}: {reply}")  # never the password

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            pending = self.pending
            while pending:
                taker, future = pending[0]
                result = taker(reader)
                if result is INCOMPLETE:
                    return
                pending.popleft()
                if not future.done():
                    future.set_result(result)
            if self.push_handler is not None:
                self.push_handler(reader)
            elif reader.buffered:
                self.close(ProtocolError(f"{self.label}: a reply came that nothing asked for"))
            elif self.retired and self._nobody_waits():
                self.close()
        except ProtocolError as e:  # the byte stream cannot be trusted any more
            self.close(e)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.transport = None
        reason = self.close_reason or exc or ConnectionLost(f"{self.label}: the server closed the connection")
        self.close_reason = reason
        pending, self.pending = self.pending, collections.deque()
        for _, future in pending:
            if not future.done():
                future.set_exception(ConnectionLost(f"{self.label}: connection lost: {reason}"))
        self._wake_drain()
        if self.on_lost is not None:
            self.on_lost(reason)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    def peer_closed(self) -> bool:
        """Whether the server closed or reset this idle connection, by one poll(2): the event
        loop may not have seen the FIN yet, and a write now would turn a safe retry into an
        OutcomeUnknown (the same check the redis-py path makes, see ``redis._peer_closed``)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return True
        sock = transport.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return sock is not None
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | _POLLRDHUP)
        return any(events & (select.POLLHUP | select.POLLERR | _POLLRDHUP) for _, events in poller.poll(0))

    # -- using it ---------------------------------------------------------------------------
    def write(self, buffer: bytes) -> None:
        """Send without awaiting replies (push mode: SUBSCRIBE, PING)."""
        if self.closed or self.retired or self.transport is None:
            raise ConnectionLost(f"{self.label}: not connected")
        self.transport.write(buffer)

    def request(self, buffer: bytes, taker: Taker) -> asyncio.Future[Any]:
        """Write ``buffer``; the future resolves with what ``taker`` makes of its replies.
        Raises ConnectionLost at once (nothing written) when the connection is closed."""
        if self.closed or self.retired or self.transport is None:
            raise ConnectionLost(f"{self.label}: not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.transport.write(buffer)
        self.pending.append((taker, future))
        return future

    async def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one write; their replies (RespError values included)."""
        return list(await self.request(_core.pack_commands(commands), Replies(len(commands))))

    async def drain(self) -> None:
        """Wait while the kernel's send buffer is full (backpressure for publishers)."""
        if self._paused and not self.closed:
            if self._drain is None:
                self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def retire(self) -> None:
        """Write nothing more (callers must open another connection), so no late reply is
        ever matched to a later request; close once no caller waits for a reply on it any
        more (each got its reply or gave up: a server that stopped answering does not keep
        it open)."""
        self.retired = True
        if self._nobody_waits():
            self.close()

    def _nobody_waits(self) -> bool:
        return all(future.done() for _, future in self.pending)

    def close(self, reason: BaseException | None = None) -> None:
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        if self.transport is not None:
            self.transport.close()
        self.closed = True


async def send_or_unknown(
    conn: RespConnection, buffer: bytes, taker: Taker, *, what: str, on_sent: Callable[[], None]
) -> Any:
    """Write and await; map a lost connection to OutcomeUnknown (it was sent) and refuse to
    write on a closed one with BackendUnavailable (nothing sent)."""
    try:
        future = conn.request(buffer, taker)
    except ConnectionLost as e:
        raise BackendUnavailable(f"{what} was not sent: {e}") from None
    on_sent()
    try:
        return await future
    except ConnectionLost as e:
        raise OutcomeUnknown(f"{what} was sent but the connection was lost before the reply ({e}); "
                             "it may or may not have taken effect") from None
