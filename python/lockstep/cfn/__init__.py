"""The seed's coordinators (``TestLockCoordinator``, ``OrphanDetector``, ...), with the names
of DESIGN.md in Python spelling, each built only on lockstep's primitives and taking the
Coordinator first."""

from __future__ import annotations

from .api_keys import APIKeyRotator, KeyUsageStats, RotatorResult
from .coordination import BlockingCoordinationManager, DependencyAnalyzer, ProductiveWaitResult, SprintCoordinator
from .membership import LeakCheck, MemoryTracker, OrphanDetector, OrphanResult

__all__ = [
    "APIKeyRotator",
    "BlockingCoordinationManager",
    "DependencyAnalyzer",
    "KeyUsageStats",
    "LeakCheck",
    "MemoryTracker",
    "OrphanDetector",
    "OrphanResult",
    "ProductiveWaitResult",
    "RotatorResult",
    "SprintCoordinator",
]
