"""Lua scripts run by ``EVALSHA``, sent whole with ``EVAL`` only when the server answers
``NOSCRIPT``.

``NOSCRIPT`` means nothing ran (the script cache was flushed, or this is a new or restarted
server), so sending the source is safe even for a script that is not idempotent. A script's
source is its shared prelude (helpers several scripts use) followed by its body, both read
from ``drivers/lua``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.exceptions as rx

from ..errors import BackendError

if TYPE_CHECKING:
    from .redis import RedisDriver

__all__ = ["LuaScript"]

LUA = Path(__file__).with_name("lua")


class LuaScript:
    """One script: ``run`` sends it over the driver's command client with the driver's error
    mapping, retrying a lost connection only when ``idempotent``."""

    __slots__ = ("idempotent", "name", "sha", "source")

    def __init__(self, name: str, *, prelude: str | None = None, idempotent: bool) -> None:
        self.name = name
        self.idempotent = idempotent
        parts = [(LUA / f"{prelude}.lua").read_text()] if prelude else []
        self.source = "\n".join([*parts, (LUA / f"{name}.lua").read_text()])
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, driver: RedisDriver, keys: Sequence[str], args: Sequence[Any], *, timeout: float) -> Any:
        give_up = time.monotonic() + timeout
        call = {"idempotent": self.idempotent}
        try:
            return await driver._call(self.name, "EVALSHA", self.sha, len(keys), *keys, *args, timeout=timeout, **call)
        except BackendError as exc:
            if not isinstance(exc.__cause__, rx.NoScriptError):
                raise
        left = max(0.001, give_up - time.monotonic())
        return await driver._call(self.name, "EVAL", self.source, len(keys), *keys, *args, timeout=left, **call)
