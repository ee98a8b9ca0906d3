"""Drivers from other packages register through the `lockstep.drivers` entry-point group."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import lockstep
from lockstep.drivers import known_schemes

PLUGIN = '''
from lockstep.drivers.memory import MemoryDriver

class EchoDriver(MemoryDriver):
    """A third-party driver: the memory driver under another scheme."""
    schemes = ("echo",)

class NotADriver:
    pass
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [lockstep.drivers]
            echo = echo_plugin:EchoDriver
            broken = echo_plugin:NotADriver
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))


async def test_plugin_driver_is_found_by_scheme(plugin: None) -> None:
    assert "echo" in known_schemes()
    async with lockstep.connect("echo://space") as coord:
        assert coord.driver.name == "echo"
        assert await coord.ping() >= 0


def test_plugin_that_is_not_a_driver_is_refused(plugin: None) -> None:
    with pytest.raises(lockstep.ConfigError, match="not a lockstep Driver"):
        lockstep.connect("broken://x")


def test_unknown_scheme_lists_plugins_too(plugin: None) -> None:
    with pytest.raises(lockstep.UnknownSchemeError) as info:
        lockstep.connect("ecko://x")
    assert "echo" in info.value.known
    assert info.value.closest == "echo"
