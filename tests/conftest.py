"""Shared fixtures: a real redis-server per session, and a coordinator per driver.

``redis_server`` starts Debian's ``redis-server`` on a free loopback port in a
temporary directory (AOF on, so it behaves like the durable config users are
told to run). When the binary is missing the suite fails loudly: it never skips.
``coord`` is parametrized over the four drivers; contract tests take it and run
once per driver.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import lockstep
import pytest

from tests.support.redis_server import RedisServer

DRIVERS = ["memory", "file", "redis", "redis+streams"]
ConnectAs = Callable[[str], Awaitable[lockstep.Coordinator]]  #: the ``connect_as`` fixture
_ns_counter = itertools.count()


def pytest_sessionstart(session: pytest.Session) -> None:
    if shutil.which("redis-server") is None:
        pytest.exit(
            "redis-server is not installed: run `scripts/test` (it installs Debian's "
            "redis-server package) or `apt-get install redis-server`",
            returncode=3,
        )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly="everysec")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def driver_url(driver: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if driver == "memory":
        return f"memory://t{next(_ns_counter)}"
    if driver == "file":
        return f"file://{tmp_path / 'coord.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url(scheme=driver)


@pytest.fixture(params=DRIVERS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A backend URL per driver; each test gets a fresh namespace or file."""
    return driver_url(request.param, request, tmp_path)


@pytest.fixture
def namespace() -> str:
    return f"t{next(_ns_counter)}"


@pytest.fixture
async def coord(url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    async with lockstep.connect(url, namespace=namespace, timeout=5.0) as c:
        yield c


@pytest.fixture
async def connect_as(url: str, namespace: str) -> AsyncIterator[ConnectAs]:
    """``await connect_as("alice")``: another coordinator on the test's backend and namespace,
    as member ``alice`` (stands for another process); all are closed at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def connect(member: str) -> lockstep.Coordinator:
            return await stack.enter_async_context(
                lockstep.connect(url, namespace=namespace, member=member, timeout=5.0)
            )

        yield connect
