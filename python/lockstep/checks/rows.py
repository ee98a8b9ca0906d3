"""Every checklist row, loaded in the order ``lockstep check`` prints them.

Modules are named in checklist order (foundation first, then the seed's
assumptions in turn); a module that does not exist yet is simply absent.
"""

from __future__ import annotations

import importlib

ROW_MODULES = (
    "connectivity",  # foundation: the backend is there and sound
    "codec",  # foundation: the Rust envelope codec
    "messaging",  # Assumption 1
    "leases",  # Assumption 2
    "membership",  # Assumption 3
    "waiting",  # Assumptions 4 and 6, the epic benchmarks
    "ratelimit",  # Assumption 5
)

for _name in ROW_MODULES:
    try:
        importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{_name}":
            raise
