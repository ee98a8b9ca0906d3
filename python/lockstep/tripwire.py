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
    __slots__ = ("_event", "_fired", "reason")

    #: Words for ``repr``: what it means once tripped, and before.
    tripped_word = "tripped"
    armed_word = "not tripped"

    def __init__(self) -> None:
        # The asyncio.Event is made only when someone awaits: most leases are released
        # without anyone waiting on `lost`, and acquire+release is the hot path.
        self._event: asyncio.Event | None = None
        self._fired = False
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._fired

    def fire(self, reason: str) -> None:
        if not self._fired:
            self._fired = True
            self.reason = reason
            if self._event is not None:
                self._event.set()

    def __await__(self) -> Generator[Any, None, bool]:
        if self._event is None:
            self._event = asyncio.Event()
            if self._fired:
                self._event.set()
        return self._event.wait().__await__()

    def __repr__(self) -> str:
        state = f"{self.tripped_word}: {self.reason}" if self._fired else self.armed_word
        return f"<{type(self).__name__} {state}>"
