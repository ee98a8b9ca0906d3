"""Every driver connects, answers, reports itself truthfully and closes cleanly."""

from __future__ import annotations

import time

import pytest

import lockstep
from lockstep import Capability


async def test_connects_and_pings(coord: lockstep.Coordinator) -> None:
    assert coord.is_open
    rtt = await coord.ping()
    assert 0 <= rtt < 1.0


async def test_declares_capabilities(coord: lockstep.Coordinator) -> None:
    caps = coord.capabilities
    assert Capability.KV in caps
    scheme = coord.settings.scheme
    if scheme == "memory":
        assert Capability.CROSS_PROCESS not in caps
    else:
        assert Capability.CROSS_PROCESS in caps
        assert Capability.PERSISTENT in caps
    if scheme.startswith("redis"):
        assert {Capability.CROSS_HOST, Capability.SERVER_CLOCK} <= caps
    else:
        assert Capability.CROSS_HOST not in caps
        assert Capability.SERVER_CLOCK not in caps


async def test_server_info(coord: lockstep.Coordinator) -> None:
    info = await coord.server_info()
    assert info.driver
    assert info.version and info.version[0].isdigit()
    assert isinstance(info.durable, bool)
    assert info.persistence


async def test_backend_clock_is_unix_time(coord: lockstep.Coordinator) -> None:
    backend = await coord.time()
    assert abs(backend - time.time()) < 5.0


async def test_require_present_capability_is_accepted(url: str) -> None:
    async with lockstep.connect(url, require=["kv"]) as c:
        assert c.is_open


async def test_close_is_idempotent(url: str) -> None:
    c = await lockstep.connect(url)
    await c.close()
    await c.close()
    assert not c.is_open


async def test_reopen_after_close(url: str) -> None:
    c = lockstep.connect(url)
    async with c:
        await c.ping()
    async with c:
        await c.ping()


def test_missing_capability_is_refused_naming_it(url: str) -> None:
    # The error lists exactly what is missing; a driver that promises every capability
    # (redis+streams, once messaging landed) is accepted when all are required.
    all_caps = [c.value for c in Capability]
    if {c.value for c in lockstep.connect(url).capabilities} == set(all_caps):
        assert lockstep.connect(url, require=all_caps).capabilities == frozenset(Capability)
        return
    with pytest.raises(lockstep.CapabilityError) as info:
        lockstep.connect(url, require=all_caps)
    err = info.value
    assert err.missing
    for name in err.missing:
        assert name in str(err)
    cls_caps = {c.value for c in lockstep.connect(url).capabilities}
    assert set(err.missing) == set(all_caps) - cls_caps


def test_unknown_capability_is_a_config_error(url: str) -> None:
    with pytest.raises(lockstep.ConfigError, match="telepathy"):
        lockstep.connect(url, require=["telepathy"])


def test_unknown_option_names_the_option(url: str) -> None:
    sep = "&" if "?" in url else "?"
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect(f"{url}{sep}no_such_option=1")
    assert info.value.option == "no_such_option"
    assert "no_such_option" in str(info.value)
