"""Driver lookup by URL scheme.

Built-in drivers are named lazily (module path, class), as kombu's transport
aliases are, so importing lockstep never imports redis-py or sqlite3 until a URL
asks for them. Other packages add drivers through the entry-point group
``lockstep.drivers``: the entry point's name is the scheme, its value a
:class:`~lockstep.drivers.base.Driver` subclass.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from ..errors import ConfigError, UnknownSchemeError
from .base import Capability, Driver, Option, ServerInfo

__all__ = ["BUILTIN", "Capability", "Driver", "Option", "ServerInfo", "driver_class", "known_schemes"]

ENTRY_POINT_GROUP = "lockstep.drivers"

BUILTIN: dict[str, str] = {
    "memory": "lockstep.drivers.memory:MemoryDriver",
    "file": "lockstep.drivers.sqlite:SqliteDriver",
    "redis": "lockstep.drivers.redis:RedisDriver",
    "rediss": "lockstep.drivers.redis:RedisDriver",
    "redis+streams": "lockstep.drivers.redis_streams:RedisStreamsDriver",
    "rediss+streams": "lockstep.drivers.redis_streams:RedisStreamsDriver",
}


def _plugin_entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    return sorted(set(BUILTIN) | set(_plugin_entry_points()))


def driver_class(scheme: str) -> type[Driver]:
    """The driver class serving ``scheme``; UnknownSchemeError names the known ones."""
    target = BUILTIN.get(scheme)
    if target is not None:
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    else:
        ep = _plugin_entry_points().get(scheme)
        if ep is None:
            known = known_schemes()
            close = difflib.get_close_matches(scheme, known, n=1, cutoff=0.5)
            raise UnknownSchemeError(scheme, known, close[0] if close else None)
        cls = ep.load()  # type: ignore[attr-defined]
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"the driver registered for {scheme!r} is not a lockstep Driver: {cls!r}")
    return cls
