"""The seed's orphan detector and memory tracker (Assumption 3), over lockstep's primitives.

    detector = OrphanDetector(coord, threshold=120, interval=60)
    result = await detector.detect_and_cleanup_orphans()   # orphans_cleaned, agents, keys_deleted
    detector.start(); ...; await detector.stop()           # or: async with detector: ...

    tracker = MemoryTracker(coord, leak_threshold=100 * 2**20)
    await tracker.record_baseline()
    leak = await tracker.check_for_memory_leak()           # detected, growth

The detector is a periodic ``coord.sweep(threshold=...)``: an agent silent for longer
than ``threshold`` (on the backend's clock) or whose local process is gone is reaped,
its leases freed and exactly the keys it owned deleted; so an orphan is cleaned no
later than ``threshold + interval`` after its last heartbeat. The tracker reads
``coord.memory_usage().backend_bytes`` (Redis ``used_memory``, the SQLite pages in
use, the memory driver's estimate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, LockstepError
from ..reaping import SweepReport

if TYPE_CHECKING:
    from ..coordinator import Coordinator

__all__ = ["LeakCheck", "MemoryTracker", "OrphanDetector", "OrphanResult"]

log = logging.getLogger("lockstep.cfn")


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{what} must be a positive number, got {value!r}")
    return float(value)


@dataclass
class OrphanResult:
    orphans_cleaned: int
    agents: list[str]
    keys_deleted: int
    leases_freed: int = 0
    report: SweepReport = field(default_factory=SweepReport)


class OrphanDetector:
    """Find agents silent for longer than ``threshold`` seconds and clean up after them."""

    def __init__(self, coord: Coordinator, *, threshold: float = 120.0, interval: float = 60.0) -> None:
        self.coord = coord
        self.threshold = _positive(threshold, "threshold")
        self.interval = _positive(interval, "interval")
        self.history: list[OrphanResult] = []  #: results of the periodic loop, newest last (bounded)
        self._task: asyncio.Task[None] | None = None

    async def detect_and_cleanup_orphans(self) -> OrphanResult:
        report = await self.coord.sweep(threshold=self.threshold)
        return OrphanResult(
            orphans_cleaned=len(report.reaped),
            agents=report.agents,
            keys_deleted=report.keys_deleted,
            leases_freed=len(report.leases_freed),
            report=report,
        )

    # -- the periodic loop -------------------------------------------------------------
    def start(self) -> None:
        """Sweep every ``interval`` seconds in the background until :meth:`stop`."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="lockstep-orphan-detector")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                result = await self.detect_and_cleanup_orphans()
            except LockstepError as exc:  # the next round tries again; the dead stay dead
                log.warning("orphan detection failed, retrying in %g s: %s", self.interval, exc)
            else:
                if result.orphans_cleaned:
                    log.info("cleaned %d orphan(s): %s", result.orphans_cleaned, ", ".join(result.agents))
                self.history.append(result)
                del self.history[:-100]
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    async def __aenter__(self) -> OrphanDetector:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:  # fmt: skip
        await self.stop()


@dataclass
class LeakCheck:
    detected: bool
    growth: int  #: bytes since the baseline (negative: shrank)
    baseline: int
    current: int
    leak_threshold: int


class MemoryTracker:
    """Backend memory against a baseline; a leak is growth above ``leak_threshold`` bytes."""

    def __init__(self, coord: Coordinator, *, leak_threshold: int = 100 * 2**20) -> None:
        if isinstance(leak_threshold, bool) or not isinstance(leak_threshold, int) or leak_threshold <= 0:
            raise InvalidInputError(f"leak_threshold must be a positive number of bytes, got {leak_threshold!r}")
        self.coord = coord
        self.leak_threshold = leak_threshold
        self.baseline: int | None = None

    async def get_total_memory_usage(self) -> int:
        return (await self.coord.memory_usage()).backend_bytes

    async def record_baseline(self) -> int:
        self.baseline = await self.get_total_memory_usage()
        return self.baseline

    async def check_for_memory_leak(self) -> LeakCheck:
        """Growth since the baseline (recorded now, if none was, so the first check shows 0)."""
        if self.baseline is None:
            await self.record_baseline()
        assert self.baseline is not None
        current = await self.get_total_memory_usage()
        growth = current - self.baseline
        return LeakCheck(growth > self.leak_threshold, growth, self.baseline, current, self.leak_threshold)
