"""Dependency analysis on the stdlib's :mod:`graphlib`: waves, the critical path, cycles.

    plan = analyze({"api": [], "ui": ["api"], "docs": []}, durations={"api": 20, "ui": 10})
    plan.waves            # [["api", "docs"], ["ui"]]: each wave needs only earlier ones
    plan.critical_path    # ["api", "ui"]: the longest chain by duration
    plan.critical_length  # 30.0: no schedule, however parallel, finishes sooner

A dependency nobody declares is refused (:class:`~lockstep.errors.InvalidInputError`
naming it and who wanted it); a cycle raises
:class:`~lockstep.errors.CircularDependencyError`, whose message starts "Circular
dependency detected" and walks the cycle (``a -> b -> a``: a depends on b, b on a).
Everything is deterministic: ties break by the order nodes were given in.
"""

from __future__ import annotations

import graphlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import CircularDependencyError, InvalidInputError

__all__ = ["Plan", "analyze", "find_cycle"]


@dataclass(frozen=True)
class Plan:
    """What :func:`analyze` found about one dependency graph."""

    order: list[str]  #: a topological order (every node after all of its dependencies)
    waves: list[list[str]]  #: wave n holds the nodes whose longest dependency chain has n links
    critical_path: list[str]  #: the longest chain by duration, first node first
    critical_length: float  #: its total duration: a lower bound on any schedule's makespan
    dependencies: dict[str, tuple[str, ...]]
    dependents: dict[str, tuple[str, ...]]
    durations: dict[str, float]
    earliest_start: dict[str, float] = field(default_factory=dict)  #: with unbounded parallelism
    tail: dict[str, float] = field(default_factory=dict)  #: longest chain from a node to the end, itself included

    @property
    def total_duration(self) -> float:
        """Every node one after another: the sequential baseline."""
        return sum(self.durations.values())


def _check_duration(node: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"the duration of {node!r} must be a finite number >= 0, got {value!r}")
    return float(value)


def _normalize(graph: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    deps: dict[str, tuple[str, ...]] = {}
    for node, wanted in graph.items():
        if not isinstance(node, str) or not node:
            raise InvalidInputError(f"a node id must be a non-empty string, got {node!r}")
        if isinstance(wanted, str):
            raise InvalidInputError(f"the dependencies of {node!r} must be a list of ids, got the string {wanted!r}")
        deps[node] = tuple(dict.fromkeys(wanted))
    unknown = {(node, d) for node, ds in deps.items() for d in ds if d not in deps}
    if unknown:
        shown = ", ".join(f"{node!r} depends on unknown {d!r}" for node, d in sorted(unknown))
        raise InvalidInputError(f"unknown dependencies: {shown}")
    return deps


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` (node -> its dependencies) as ``[a, b, ..., a]``, or None.

    ``a -> b`` reads "a depends on b". The cycle starts at its smallest node, so the
    same cycle is always named the same way.
    """
    deps = _normalize(graph)
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the node that depends on it; turn it around.
        found = list(reversed(exc.args[1][:-1]))
        start = found.index(min(found))
        ring = found[start:] + found[:start]
        return ring + ring[:1]
    return None


def analyze(graph: Mapping[str, Iterable[str]], durations: Mapping[str, float] | None = None) -> Plan:
    """Waves, a topological order and the critical path of ``graph`` (node -> dependencies).

    ``durations`` (default 1 per node) weigh the critical path. Raises
    CircularDependencyError naming a cycle, InvalidInputError for unknown dependencies.
    """
    deps = _normalize(graph)
    cycle = find_cycle(deps)
    if cycle is not None:
        raise CircularDependencyError(cycle)
    given = durations or {}
    unknown = [n for n in given if n not in deps]
    if unknown:
        raise InvalidInputError(f"durations given for unknown node(s): {', '.join(map(repr, unknown))}")
    weight = {n: _check_duration(n, given.get(n, 1.0)) for n in deps}
    rank = {n: i for i, n in enumerate(deps)}

    sorter = graphlib.TopologicalSorter(deps)
    sorter.prepare()
    waves: list[list[str]] = []
    while sorter.is_active():
        wave = sorted(sorter.get_ready(), key=rank.__getitem__)
        waves.append(wave)
        sorter.done(*wave)
    order = [n for wave in waves for n in wave]

    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    for node in order:
        start[node] = max((finish[d] for d in deps[node]), default=0.0)
        finish[node] = start[node] + weight[node]
    dependents: dict[str, list[str]] = {n: [] for n in deps}
    for node in order:
        for d in deps[node]:
            dependents[d].append(node)
    tail: dict[str, float] = {}
    for node in reversed(order):
        tail[node] = weight[node] + max((tail[c] for c in dependents[node]), default=0.0)

    path: list[str] = []
    step: str | None = max(order, key=lambda n: (finish[n], -rank[n])) if order else None
    while step is not None:
        path.append(step)
        step = max(deps[step], key=lambda d: (finish[d], -rank[d]), default=None)
    path.reverse()
    return Plan(
        order=order,
        waves=waves,
        critical_path=path,
        critical_length=max(finish.values(), default=0.0),
        dependencies=deps,
        dependents={n: tuple(c) for n, c in dependents.items()},
        durations=weight,
        earliest_start=start,
        tail=tail,
    )
