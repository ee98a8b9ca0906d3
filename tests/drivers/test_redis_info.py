"""server_info, time and run_id tell the truth about the server, in each persistence mode."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import lockstep
from lockstep.drivers.redis import AOF_OFF_WARNING
from tests.support.redis_server import RedisServer


def server_version(server: RedisServer) -> str:
    with server.client() as c:
        return str(c.info("server")["redis_version"])


async def test_durable_server_reports_aof_and_no_warnings(redis_server: RedisServer) -> None:
    async with lockstep.connect(redis_server.url(), timeout=3) as coord:
        info = await coord.server_info()
    assert info.driver == "redis"
    assert info.version == server_version(redis_server)
    assert info.persistence == "aof everysec"
    assert info.durable is True
    assert info.warnings == []
    assert info.details["run_id"] == redis_server.run_id
    assert info.details["tcp_port"] == redis_server.port
    assert info.details["role"] == "master"
    assert info.details["maxmemory_policy"] == "noeviction"


async def test_streams_driver_names_itself(redis_server: RedisServer) -> None:
    async with lockstep.connect(redis_server.url("redis+streams"), timeout=3) as coord:
        assert (await coord.server_info()).driver == "redis+streams"


@pytest.mark.parametrize(
    ("appendonly", "persistence", "durable"),
    [("always", "aof always", True), ("no", "rdb only (save 1 1)", False)],
)
async def test_persistence_modes(tmp_path: Path, appendonly: str, persistence: str, durable: bool) -> None:
    with RedisServer(tmp_path, appendonly=appendonly) as server:  # type: ignore[arg-type]
        async with lockstep.connect(server.url(), timeout=3) as coord:
            info = await coord.server_info()
    assert info.persistence == persistence
    assert info.durable is durable
    assert (AOF_OFF_WARNING in info.warnings) is (not durable)


async def test_no_persistence_at_all_is_reported(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly="no", extra={"save": '""'}) as server:
        async with lockstep.connect(server.url(), timeout=3) as coord:
            info = await coord.server_info()
    assert info.persistence == "none"
    assert info.durable is False
    assert AOF_OFF_WARNING in info.warnings


async def test_evicting_memory_policy_is_warned_about(tmp_path: Path) -> None:
    with RedisServer(tmp_path, extra={"maxmemory-policy": "allkeys-lru"}) as server:
        async with lockstep.connect(server.url(), timeout=3) as coord:
            info = await coord.server_info()
    assert info.durable is True
    assert info.details["maxmemory_policy"] == "allkeys-lru"
    assert [w for w in info.warnings if "allkeys-lru" in w and "noeviction" in w]


async def test_run_id_changes_when_the_server_restarts(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        coord = lockstep.connect(server.url(), timeout=3)
        async with coord:
            first = coord.driver.run_id  # type: ignore[attr-defined]
            assert first == server.run_id
        server.kill()
        server.restart()
        async with coord:
            assert coord.driver.run_id == server.run_id != first  # type: ignore[attr-defined]


async def test_time_is_the_servers_clock(redis_server: RedisServer) -> None:
    async with lockstep.connect(redis_server.url(), timeout=3) as coord:
        backend = await coord.time()
    with redis_server.client() as c:
        seconds, micros = c.time()
    assert abs(backend - (seconds + micros / 1e6)) < 1.0
    assert isinstance(backend, float)
    assert abs(backend - time.time()) < 5.0
