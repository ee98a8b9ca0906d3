"""``lockstep check``: the seed document's validation checklist, run against any backend.

Each row is an async function registered with :func:`check`. It receives a
:class:`CheckContext` (the backend URL, a private namespace, ``full`` for the
seed's full-length versions) and returns a :class:`CheckResult` with a measured
figure. The runner gives each row a deadline, turns an exception into a failed
row that names it, and each row deletes what it wrote, so the backend is left as it was.

Rows live in modules named for what they check (``connectivity``, later
``messaging``, ``leases``, ...); importing :mod:`lockstep.checks.rows` loads
them all in checklist order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CheckContext", "CheckResult", "Row", "check", "registered_rows", "run_checks"]


@dataclass
class CheckResult:
    passed: bool
    measured: str  #: the figure, with units: "12,345 msg/s", "0.21 ms p99"
    detail: str = ""
    figures: dict[str, float] = field(default_factory=dict)  #: raw numbers for --json


@dataclass
class Row:
    """One checklist row, as printed and as emitted by ``--json``."""

    key: str
    title: str
    source: str  #: where in the seed document it comes from
    target: str
    status: str  #: "pass" | "fail" | "skip"
    measured: str = ""
    detail: str = ""
    seconds: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckContext:
    url: str | None
    namespace: str
    full: bool = False
    timeout: float = 5.0

    def connect(self, **kwargs: Any) -> Any:
        from ..coordinator import connect

        kwargs.setdefault("namespace", self.namespace)
        kwargs.setdefault("timeout", self.timeout)
        return connect(self.url, **kwargs)


CheckFn = Callable[[CheckContext], Awaitable[CheckResult]]


@dataclass(frozen=True)
class _Registered:
    key: str
    title: str
    source: str
    target: str
    deadline: float
    fn: CheckFn
    requires: tuple[str, ...]


_ROWS: dict[str, _Registered] = {}


def check(
    key: str,
    *,
    title: str,
    source: str,
    target: str,
    deadline: float = 20.0,
    requires: tuple[str, ...] = (),
) -> Callable[[CheckFn], CheckFn]:
    """Register a checklist row. ``requires`` names driver capabilities it needs;
    on a driver without them the row is skipped, saying which it lacks."""

    def register(fn: CheckFn) -> CheckFn:
        if key in _ROWS:
            raise ValueError(f"check row {key!r} registered twice")
        _ROWS[key] = _Registered(key, title, source, target, deadline, fn, requires)
        return fn

    return register


def registered_rows() -> list[str]:
    from . import rows  # noqa: F401  (registers every row, in checklist order)

    return list(_ROWS)


async def _run_one(reg: _Registered, ctx: CheckContext, caps: frozenset[str]) -> Row:
    row = Row(reg.key, reg.title, reg.source, reg.target, status="skip")
    lacking = [c for c in reg.requires if c not in caps]
    if lacking:
        row.detail = f"the driver lacks {', '.join(lacking)}"
        return row
    started = time.perf_counter()
    try:
        async with asyncio.timeout(reg.deadline * (4 if ctx.full else 1)):
            result = await reg.fn(ctx)
    except TimeoutError:
        row.status, row.detail = "fail", f"did not finish within {reg.deadline:g} s"
    except Exception as exc:  # a row that breaks is a failed row, named, not a crash
        row.status, row.detail = "fail", f"{type(exc).__name__}: {exc}"
    else:
        row.status = "pass" if result.passed else "fail"
        row.measured, row.detail, row.figures = result.measured, result.detail, result.figures
    row.seconds = time.perf_counter() - started
    return row


async def run_checks(
    url: str | None,
    *,
    only: list[str] | None = None,
    full: bool = False,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Run the checklist against ``url`` in a private namespace; rows delete what they write."""
    from ..coordinator import connect

    keys = registered_rows()
    if only:
        unknown = [k for k in only if k not in _ROWS]
        if unknown:
            from ..errors import ConfigError

            raise ConfigError(f"unknown check row(s) {', '.join(unknown)}; rows: {', '.join(keys)}")
        keys = [k for k in keys if k in only]
    ctx = CheckContext(url=url, namespace=f"check-{uuid.uuid4().hex[:10]}", full=full)
    caps = frozenset(c.value for c in connect(url).capabilities)
    results = []
    for key in keys:
        row = await _run_one(_ROWS[key], ctx, caps)
        results.append(row)
        if on_row is not None:
            on_row(row)
    return results
