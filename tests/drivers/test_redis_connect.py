"""Connecting to real redis-servers: ACL users, passwords, TLS, unreachable hosts, URL options."""

from __future__ import annotations

import asyncio

import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import lockstep
from lockstep.drivers.redis import RedisDriver
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer, free_port
from tests.support.tls import make_tls_files


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(
        tmp_path_factory.mktemp("acl"), acl_users={"alice": "secret", "carol": "p:w@/x%"}
    ) as server:
        server.client().acl_setuser(
            "limited",
            enabled=True,
            passwords=["+limitedpw"],
            keys=["*"],
            commands=["+@all", "-incrby", "-config"],
        )
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("tls"), tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def tls_acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("tlsacl"), tls=True, acl_users={"alice": "secret"}) as server:
        yield server


def error_text(exc: BaseException | None) -> str:
    """What a user could see of an error: the message and repr of it and of every cause."""
    seen: list[str] = []
    while exc is not None and len(seen) < 20:
        seen += [*traceback.format_exception_only(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(seen)


def redis_driver(coord: lockstep.Coordinator) -> RedisDriver:
    assert isinstance(coord.driver, RedisDriver)
    return coord.driver


async def roundtrip(url: str) -> lockstep.Coordinator:
    async with lockstep.connect(url, timeout=3) as coord:
        assert await coord.ping() < 1.0
        key = coord.keys.key("test", uuid.uuid4().hex)
        assert await coord.driver.set(key, b"v", timeout=2)
        assert await coord.driver.get(key, timeout=2) == b"v"
    return coord


# -- authentication ------------------------------------------------------------------
async def test_acl_user_with_password_connects(acl_server: RedisServer) -> None:
    url = f"redis://alice:secret@127.0.0.1:{acl_server.port}/0"
    async with lockstep.connect(url, timeout=3) as coord:
        assert await redis_driver(coord).client.acl_whoami() == "alice"
        assert await coord.ping() < 1.0


async def test_user_and_password_are_url_decoded(acl_server: RedisServer) -> None:
    url = acl_server.url(user="carol", password="p:w@/x%")  # percent-encoded by url()
    assert "p:w@/x%" not in url
    await roundtrip(url)


async def test_wrong_password_is_unavailable_and_never_shown(acl_server: RedisServer) -> None:
    url = f"redis://alice:Wr0ngPassw0rd@127.0.0.1:{acl_server.port}/0"
    with pytest.raises(lockstep.BackendUnavailable) as info:
        await lockstep.connect(url, timeout=3).open()
    assert "authentication failed for user 'alice'" in str(info.value)
    assert f"127.0.0.1:{acl_server.port}" in str(info.value)
    assert "Wr0ngPassw0rd" not in error_text(info.value)


async def test_disabled_default_user_is_refused(acl_server: RedisServer) -> None:
    with pytest.raises(lockstep.BackendUnavailable, match="authentication failed for user 'default'"):
        await lockstep.connect(f"redis://127.0.0.1:{acl_server.port}/0", timeout=3).open()


async def test_requirepass_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="hunter2") as server:
        await roundtrip(f"redis://:hunter2@127.0.0.1:{server.port}/0")
        with pytest.raises(lockstep.BackendUnavailable, match="authentication failed") as info:
            await lockstep.connect(f"redis://:hunter3@127.0.0.1:{server.port}/0", timeout=3).open()
        assert "hunter3" not in error_text(info.value)


async def test_acl_denial_is_a_backend_error_naming_the_command(acl_server: RedisServer) -> None:
    url = acl_server.url(user="limited", password="limitedpw")
    async with lockstep.connect(url, timeout=3) as coord:
        key = coord.keys.key("test", uuid.uuid4().hex)
        with pytest.raises(lockstep.BackendError) as info:
            await coord.driver.incr(key, timeout=2)
        assert not isinstance(info.value, lockstep.BackendUnavailable | lockstep.OutcomeUnknown)
        assert "incr" in str(info.value).lower() and "limited" in str(info.value)
        # CONFIG is denied too: server_info still answers, and says what it could not learn
        facts = await coord.server_info()
        assert facts.durable is True
        assert facts.persistence == "aof (fsync policy unknown)"
        assert any("CONFIG GET is denied" in w for w in facts.warnings)


# -- TLS -----------------------------------------------------------------------------
async def test_tls_connects_and_pings(tls_server: RedisServer) -> None:
    assert tls_server.tls is not None and tls_server.tls_port is not None
    url = f"rediss://127.0.0.1:{tls_server.tls_port}/0?ssl_ca_certs={tls_server.tls.ca_cert}"
    coord = await roundtrip(url)
    assert redis_driver(coord).tls


async def test_tls_with_acl_user(tls_acl_server: RedisServer) -> None:
    assert tls_acl_server.tls is not None
    url = f"rediss://alice:secret@127.0.0.1:{tls_acl_server.tls_port}/0?ssl_ca_certs={tls_acl_server.tls.ca_cert}"
    async with lockstep.connect(url, timeout=3) as coord:
        assert await redis_driver(coord).client.acl_whoami() == "alice"
        info = await coord.server_info()
        assert info.details["tls"] is True and info.details["user"] == "alice"
        # the lease store's own connections (pipelined calls, wake-ups) log in over TLS too
        lease = await coord.lock("tls-acl", ttl=5, wait=0)
        waiter = asyncio.ensure_future(coord.lock("tls-acl", ttl=5, wait=5))
        await asyncio.sleep(0.1)
        assert await lease.release()
        handed = await asyncio.wait_for(waiter, 5)
        assert handed.fence == lease.fence + 1 and await handed.release()


async def test_rediss_streams_uses_tls(tls_server: RedisServer) -> None:
    await roundtrip(tls_server.url("rediss+streams"))


async def test_plain_text_to_the_tls_port_fails(tls_server: RedisServer) -> None:
    with pytest.raises(lockstep.BackendUnavailable):
        await lockstep.connect(f"redis://127.0.0.1:{tls_server.tls_port}/0", timeout=1).open()


async def test_untrusted_certificate_is_refused_unless_verification_is_off(
    tls_server: RedisServer, tmp_path: Path
) -> None:
    other_ca = make_tls_files(tmp_path / "other").ca_cert
    with pytest.raises(lockstep.BackendUnavailable, match="certificate"):
        await lockstep.connect(tls_server.url("rediss", ssl_ca_certs=other_ca), timeout=3).open()
    await roundtrip(tls_server.url("rediss", ssl_ca_certs=other_ca, ssl_cert_reqs="none"))


async def test_mutual_tls_client_certificate(tmp_path: Path) -> None:
    with RedisServer(tmp_path, tls=True, extra={"tls-auth-clients": "yes"}) as server:
        assert server.tls is not None
        with pytest.raises(lockstep.BackendUnavailable):
            await lockstep.connect(server.url("rediss"), timeout=3).open()
        await roundtrip(
            server.url("rediss", ssl_certfile=server.tls.client_cert, ssl_keyfile=server.tls.client_key)
        )


# -- unreachable -----------------------------------------------------------------------
async def test_unreachable_port_fails_within_the_deadline() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(lockstep.BackendUnavailable) as info:
        await lockstep.connect(f"redis://127.0.0.1:{port}/0", timeout=0.5).open()
    assert time.monotonic() - started < 1.5
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_silent_server_fails_within_the_deadline(redis_server: RedisServer) -> None:
    with FaultProxy(redis_server.host, redis_server.port) as proxy:
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(lockstep.BackendUnavailable, match=r"within 0\.5 s"):
            await lockstep.connect(redis_server.url(port=proxy.port), timeout=0.5).open()
        assert time.monotonic() - started < 1.0


# -- URL and options -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "option"),
    [
        ("max_conections=3", "max_conections"),
        ("socket_timeout=abc", "socket_timeout"),
        ("socket_timeout=0", "socket_timeout"),
        ("max_connections=0", "max_connections"),
        ("health_check_interval=-1", "health_check_interval"),
        ("client_name=two words", "client_name"),
    ],
)
def test_bad_options_name_the_option(redis_server: RedisServer, query: str, option: str) -> None:
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect(f"{redis_server.url()}?{query}")
    assert info.value.option == option
    assert option in str(info.value)


def test_misspelt_option_suggests_the_right_one(redis_server: RedisServer) -> None:
    with pytest.raises(lockstep.BadOptionError, match="did you mean 'max_connections'"):
        lockstep.connect(f"{redis_server.url()}?max_conections=3")


def test_bad_tls_options_name_the_option(tls_server: RedisServer) -> None:
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect(tls_server.url("rediss", ssl_cert_reqs="maybe"))
    assert info.value.option == "ssl_cert_reqs" and "maybe" in str(info.value)
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect(tls_server.url("rediss", ssl_ca_certs="/no/such/ca.pem"))
    assert info.value.option == "ssl_ca_certs" and "/no/such/ca.pem" in str(info.value)


def test_tls_options_need_the_rediss_scheme(tls_server: RedisServer) -> None:
    assert tls_server.tls is not None
    with pytest.raises(lockstep.BadOptionError, match="rediss://") as info:
        lockstep.connect(f"redis://127.0.0.1:{tls_server.port}/0?ssl_ca_certs={tls_server.tls.ca_cert}")
    assert info.value.option == "ssl_ca_certs"


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis://127.0.0.1:6379/abc", "'/abc'"),
        ("redis://127.0.0.1:6379/-1", "'/-1'"),
        ("redis://u:TopSecret1@127.0.0.1:99999/0", "99999"),
        ("redis://u:TopSecret1@127.0.0.1:port/0", "port"),
        ("redis:///0", "no host"),
    ],
)
def test_bad_url_parts_are_config_errors_naming_them(url: str, names: str) -> None:
    with pytest.raises(lockstep.ConfigError) as info:
        lockstep.connect(url)
    assert names in str(info.value)
    assert "TopSecret1" not in error_text(info.value)


def test_url_parts_are_parsed() -> None:
    coord = lockstep.connect("rediss://bob:s%3Acret@example.test/4?client_name=w1&max_connections=7")
    driver = coord.driver
    assert isinstance(driver, RedisDriver)
    a = driver.address
    assert (a.host, a.port, a.db, a.username, a.password) == ("example.test", 6379, 4, "bob", "s:cret")
    assert driver.tls and driver.opts["client_name"] == "w1" and driver.opts["max_connections"] == 7
    assert "s:cret" not in repr(a)


async def test_options_reach_the_connections(redis_server: RedisServer) -> None:
    url = redis_server.url(db=3, client_name="lockstep-w1", max_connections=4)
    async with lockstep.connect(url, timeout=3) as coord:
        key = coord.keys.key("test", uuid.uuid4().hex)
        await coord.driver.set(key, b"in-db-3", timeout=2)
        clients = redis_server.client().client_list()
        assert any(c["name"] == "lockstep-w1" and c["db"] == "3" for c in clients)
        assert redis_driver(coord).client.connection_pool.max_connections == 4
    assert redis_server.client(db=3).get(key) == b"in-db-3"
    assert redis_server.client(db=0).get(key) is None
