"""Small figures for checklist rows: percentiles and human-readable rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; samples need not be sorted."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def human(value: float, unit: str) -> str:
    """12345.6, "msg/s" -> "12,346 msg/s"; small values keep decimals."""
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"
