"""The seed's test lock and file-conflict detector (Assumption 2), over lockstep's leases.

    test_lock = TestLockCoordinator(coord, name="test", ttl=900)
    if await test_lock.wait_for_test_slot("sprint-3", timeout=600):
        try: ...                                    # run the tests
        finally: await test_lock.release_test_lock("sprint-3")
    await test_lock.holder()                        # "sprint-3", or None: any process's view

    files = FileConflictDetector(coord, "sprint-3")
    result = await files.claim(["src/auth.py", "src/api.py"])   # all or nothing
    result.granted, result.conflicts                # conflicts: path -> holding sprint id
    await files.release(["src/auth.py"]); await files.detect_file_conflicts()

Both hold ordinary fenced leases (renewed by the coordinator's renewer, freed by their
TTL when the holder dies) whose holder, as every other process sees it, is the sprint
id. So ``holder()`` and a refused claim name the sprint, not the process.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..claims import Claim, normalize_path, resolve_root
from ..errors import ClaimConflict, InvalidInputError, LockstepError, LockTimeout
from ..leases import Lease
from ..leases import request as lease_request
from ..names import validate_name

if TYPE_CHECKING:
    from ..coordinator import Coordinator

__all__ = ["ClaimResult", "FileConflict", "FileConflictDetector", "TestLockCoordinator"]

log = logging.getLogger("lockstep.cfn")


def _seconds(value: object, what: str, *, zero_ok: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and (value > 0 or (zero_ok and value == 0)))
    ):
        kind = "0 or a positive" if zero_ok else "a positive"
        raise InvalidInputError(f"{what} must be {kind} number of seconds, got {value!r}")
    return float(value)


class TestLockCoordinator:
    """One test run at a time across every sprint on the backend: a fenced lock ``name``
    held under the sprint's id. ``ttl`` bounds how long a crashed sprint blocks the others."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, coord: Coordinator, *, name: str = "test", ttl: float = 900.0) -> None:
        self.coord = coord
        self.name = validate_name(name, what="lock")
        self.ttl = _seconds(ttl, "ttl")
        self._held: dict[str, Lease] = {}  # sprint id -> its lease, in this process

    async def wait_for_test_slot(self, sprint_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s (first come, first served) for the lock as ``sprint_id``;
        False if it did not come. True at once if this object already holds it for them."""
        validate_name(sprint_id, what="sprint")
        wait = _seconds(timeout, "timeout", zero_ok=True)
        held = self._held.get(sprint_id)
        if held is not None and not held.lost.is_set() and not held.released:
            return True
        request = lease_request(self.coord, "lock", [self.name], ttl=self.ttl, wait=wait, owner=sprint_id)
        try:
            self._held[sprint_id] = await request
        except LockTimeout as exc:
            log.info("test slot for %s not granted within %g s: %s", sprint_id, wait, exc)
            return False
        return True

    async def release_test_lock(self, sprint_id: str) -> bool:
        """Release the lock ``sprint_id`` holds through this object; False if it held none
        (or it had been lost meanwhile)."""
        lease = self._held.pop(validate_name(sprint_id, what="sprint"), None)
        if lease is None:
            return False
        return await lease.release()

    async def holder(self) -> str | None:
        """The sprint holding the test lock now, seen from the backend; None if free."""
        holders = await self.coord.lease_holders(self.name)
        return holders[0].owner if holders else None


@dataclass
class ClaimResult:
    """``granted``: the paths claimed (all asked, or none); ``conflicts``: path -> holder."""

    granted: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.conflicts


@dataclass(frozen=True)
class FileConflict:
    """A path this sprint asked for that another sprint (``holder``) holds now."""

    path: str
    holder: str
    wanted_by: str


class FileConflictDetector:
    """Exclusive file claims of sprint ``sprint_id`` (all or nothing per :meth:`claim`).

    Paths are normalised against ``root`` (default: the current directory), as by
    ``coord.claim``. A claim is one lease: :meth:`release` frees the paths asked, and
    the lease goes once none of its paths is kept (until then the released ones stay
    held too: holding a file longer is safe, letting one go early is not).
    """

    def __init__(self, coord: Coordinator, sprint_id: str, *, root: str | None = None, ttl: float = 900.0) -> None:
        self.coord = coord
        self.sprint_id = validate_name(sprint_id, what="sprint")
        self.root = root
        self.ttl = _seconds(ttl, "ttl")
        self._claims: list[tuple[Claim, set[str]]] = []  # each claim and its paths still kept
        self._refused: dict[str, str] = {}  # path -> holder met, until claimed

    async def claim(self, paths: list[str]) -> ClaimResult:
        """Claim every path or none (no waiting); conflicts name each holder's sprint id."""
        request = self.coord.claim(paths, ttl=self.ttl, wait=0, root=self.root, holder=self.sprint_id)
        try:
            claim = await request
        except ClaimConflict as exc:
            self._refused.update(exc.conflicts)
            return ClaimResult(conflicts=dict(exc.conflicts))
        self._claims.append((claim, set(claim.paths)))
        for path in claim.paths:
            self._refused.pop(path, None)
        return ClaimResult(granted=list(claim.paths))

    async def release(self, paths: list[str] | None = None) -> list[str]:
        """Stop keeping ``paths`` (None: all); returns the paths actually freed."""
        root = resolve_root(self.root)
        drop = None if paths is None else {normalize_path(p, root) for p in paths}
        freed: list[str] = []
        keep: list[tuple[Claim, set[str]]] = []
        for claim, kept in self._claims:
            remaining = set() if drop is None else kept - drop
            if remaining:
                keep.append((claim, remaining))
                continue
            with contextlib.suppress(LockstepError):  # lost or unconfirmed: it lapses by its TTL
                await claim.release()
            freed.extend(claim.paths)
        self._claims = keep
        return freed

    def held(self) -> list[str]:
        """Paths this detector keeps claimed now."""
        return sorted({p for _, kept in self._claims for p in kept})

    async def detect_file_conflicts(self) -> list[FileConflict]:
        """The paths this sprint was refused that another sprint still holds (asked again
        of the backend), plus any claim of ours that was lost. Empty: no conflict left."""
        found: list[FileConflict] = []
        for path in list(self._refused):
            name = self.coord.claim([path], root=self.root).names[0]
            holders = [h.owner for h in await self.coord.lease_holders(name, kind="claim")]
            others = [h for h in holders if h != self.sprint_id]
            if others:
                found.append(FileConflict(path, others[0], self.sprint_id))
            else:
                del self._refused[path]
        for claim, kept in self._claims:
            if claim.lost.is_set():
                lost = f"(lost: {claim.lost.reason})"
                found.extend(FileConflict(p, lost, self.sprint_id) for p in sorted(kept))
        return found
