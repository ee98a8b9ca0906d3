"""The seed's coordinators (``TestLockCoordinator``, ``OrphanDetector``, ...), with the names
of DESIGN.md in Python spelling, each built only on lockstep's primitives and taking the
Coordinator first."""

from __future__ import annotations

from .api_keys import APIKeyRotator, KeyUsageStats, RotatorResult
from .coordination import BlockingCoordinationManager, DependencyAnalyzer, ProductiveWaitResult, SprintCoordinator
from .leases import ClaimResult, FileConflict, FileConflictDetector, TestLockCoordinator
from .membership import LeakCheck, MemoryTracker, OrphanDetector, OrphanResult

__all__ = [
    "APIKeyRotator",
    "BlockingCoordinationManager",
    "ClaimResult",
    "DependencyAnalyzer",
    "FileConflict",
    "FileConflictDetector",
    "KeyUsageStats",
    "LeakCheck",
    "MemoryTracker",
    "OrphanDetector",
    "OrphanResult",
    "ProductiveWaitResult",
    "RotatorResult",
    "SprintCoordinator",
    "TestLockCoordinator",
]
