"""The fault proxy does to real Redis traffic exactly what each mode says."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port) as p:
        yield p


@pytest.fixture
def key() -> str:
    return f"proxytest:{uuid.uuid4().hex}"


def resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def raw_connection(proxy: FaultProxy, timeout: float = 0.5) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def read_reply(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    assert data, "the proxy closed the connection"
    return data


def via(proxy: FaultProxy) -> redis.Redis:
    return redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))


def test_passthrough_relays_and_counts(proxy: FaultProxy, key: str) -> None:
    with via(proxy) as c:
        assert c.set(key, "v")
        assert c.get(key) == b"v"
    stats = proxy.stats
    assert stats.connections_total == 1
    assert stats.bytes_up > 0 and stats.bytes_down > 0
    assert stats.bytes_dropped == 0


def test_delay_holds_each_chunk_both_ways(proxy: FaultProxy) -> None:
    with via(proxy) as c:
        c.ping()  # connect and handshake before the delay
        proxy.delay(0.25)
        started = time.monotonic()
        c.ping()
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5  # 0.25 s up + 0.25 s down


def test_blackhole_holds_bytes_until_passthrough(
    proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    with raw_connection(proxy) as sock:
        sock.sendall(resp("PING"))
        assert read_reply(sock) == b"+PONG\r\n"
        proxy.blackhole()
        sock.sendall(resp("INCR", key))
        with pytest.raises(TimeoutError):
            read_reply(sock)
        assert redis_server.client().get(key) is None  # the command has not reached the server
        assert proxy.stats.connections_active == 1  # and the connection is still open
        proxy.passthrough()
        assert read_reply(sock) == b":1\r\n"
    assert redis_server.client().get(key) == b"1"


def test_blackhole_accepts_new_connections_but_answers_nothing(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with raw_connection(proxy) as sock:
        sock.sendall(resp("PING"))
        with pytest.raises(TimeoutError):
            read_reply(sock)


def test_drop_replies_runs_the_command_and_loses_its_reply(
    proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    with raw_connection(proxy) as sock:
        sock.sendall(resp("PING"))
        assert read_reply(sock) == b"+PONG\r\n"
        proxy.drop_replies()
        sock.sendall(resp("INCR", key))
        with pytest.raises(TimeoutError):
            read_reply(sock)
    assert redis_server.client().get(key) == b"1"
    assert proxy.stats.chunks_dropped == 1
    assert proxy.stats.bytes_dropped == len(b":1\r\n")


def test_drop_replies_with_a_count_then_passes_through(
    proxy: FaultProxy, redis_server: RedisServer, key: str
) -> None:
    with raw_connection(proxy) as sock:
        sock.sendall(resp("PING"))
        read_reply(sock)
        proxy.drop_replies(count=1)
        sock.sendall(resp("INCR", key))
        with pytest.raises(TimeoutError):
            read_reply(sock)
        assert proxy.mode == "passthrough"
        sock.sendall(resp("INCR", key))
        assert read_reply(sock) == b":2\r\n"
    assert redis_server.client().get(key) == b"2"


def test_reset_connections_breaks_open_connections(proxy: FaultProxy) -> None:
    with via(proxy) as c:
        c.ping()
        assert proxy.reset_connections() == 1
        assert proxy.stats.connections_reset == 1
        # redis-py sees the dead socket at checkout and opens a new one; the proxy keeps serving
        assert c.ping()
    assert proxy.stats.connections_total == 2


def test_reset_sends_rst(proxy: FaultProxy) -> None:
    with raw_connection(proxy) as sock:
        sock.sendall(resp("PING"))
        read_reply(sock)
        proxy.reset_connections()
        time.sleep(0.05)
        with pytest.raises(ConnectionResetError):
            sock.sendall(resp("PING"))
            sock.recv(100)


def test_unreachable_target_closes_the_client_connection() -> None:
    with FaultProxy("127.0.0.1", free_port()) as proxy, raw_connection(proxy) as sock:
        assert sock.recv(100) == b""


def test_stop_is_idempotent_and_modes_need_a_running_proxy(redis_server: RedisServer) -> None:
    proxy = FaultProxy(redis_server.host, redis_server.port)
    with pytest.raises(RuntimeError, match="start"):
        proxy.blackhole()
    proxy.start()
    port = proxy.port
    proxy.stop()
    proxy.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5)


def test_bad_arguments_are_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="delay"):
        proxy.delay(-1)
    with pytest.raises(ValueError, match="count"):
        proxy.drop_replies(count=0)


def test_listens_on_loopback_only(proxy: FaultProxy) -> None:
    assert proxy.host == "127.0.0.1"
    assert proxy._server is not None
    assert {s.getsockname()[0] for s in proxy._server.sockets} == {"127.0.0.1"}
