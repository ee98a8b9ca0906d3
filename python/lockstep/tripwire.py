"""A condition that trips once and stays tripped: ``lease.lost`` and ``agent.reaped``.

Awaitable (returns once tripped), ``is_set()`` for a cheap check in guarded code, and
``reason`` saying why. Firing twice keeps the first reason: the first cause is the one a
user needs to read in a log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any


class Tripwire:
    __slots__ = ("_event", "reason")

    #: Words for ``repr``: what it means once tripped, and before.
    tripped_word = "tripped"
    armed_word = "not tripped"

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def fire(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def __await__(self) -> Generator[Any, None, bool]:
        return self._event.wait().__await__()

    def __repr__(self) -> str:
        state = f"{self.tripped_word}: {self.reason}" if self._event.is_set() else self.armed_word
        return f"<{type(self).__name__} {state}>"
