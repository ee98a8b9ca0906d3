"""Epic plans: sprints, their dependencies and phases, read from TOML, and their bounds.

    [epic]
    name = "5 mixed sprints"
    max_parallel = 5          # sprints running at once (default: all)
    time_scale = 0.1          # real seconds per simulated minute (default 60: real time)
    baseline_minutes = 125    # the seed's figures, shown next to the measured ones
    target_minutes = 60

    [[sprint]]
    id = "auth"
    depends_on = []
    prep = [{ name = "mocks", minutes = 2 }]   # productive work, done while waiting
    [[sprint.phase]]
    name = "build"
    minutes = 12
    interface = true          # interface_ready is signalled when this phase ends
    [[sprint.phase]]
    name = "test"
    run = "pytest -q"         # a real command instead of simulated minutes
    test = true               # under the test lock, with leased ports ($LOCKSTEP_PORTS)
    ports = 2

A phase is simulated (``minutes``) or real (``run``, with an optional
``timeout_minutes``). Without an ``interface = true`` phase, a sprint signals its
interface when it ends. Every mistake is an :class:`~lockstep.errors.InvalidInputError`
naming the sprint and the field; a dependency cycle is a
:class:`~lockstep.errors.CircularDependencyError` naming it.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..graph import analyze
from ..names import validate_name

__all__ = ["Bounds", "EpicPlan", "Phase", "SprintSpec", "bounds", "load_plan", "parse_plan"]

DEFAULT_SCALE = 60.0  # real seconds per simulated minute: real time


@dataclass(frozen=True)
class Phase:
    name: str
    minutes: float = 0.0  #: simulated duration (0 for a real command: measured)
    run: str | None = None  #: a shell command run for real
    test: bool = False  #: runs under the test lock with leased ports
    ports: int = 1
    interface: bool = False  #: interface_ready is signalled when it ends
    timeout_minutes: float | None = None  #: a real command's limit

    @property
    def kind(self) -> str:
        return "test" if self.test else ("build" if self.name == "build" else "work")


@dataclass(frozen=True)
class SprintSpec:
    id: str
    depends_on: tuple[str, ...]
    prep: tuple[Phase, ...]
    phases: tuple[Phase, ...]

    @property
    def minutes(self) -> float:
        return sum(p.minutes for p in self.prep + self.phases)

    @property
    def interface_index(self) -> int:
        """Index of the phase after which the interface is signalled."""
        marked = [i for i, p in enumerate(self.phases) if p.interface]
        return marked[0] if marked else len(self.phases) - 1


@dataclass(frozen=True)
class EpicPlan:
    name: str
    sprints: tuple[SprintSpec, ...]
    max_parallel: int
    time_scale: float
    baseline_minutes: float | None = None  #: the seed's figure (the plan's own is computed)
    target_minutes: float | None = None
    description: str = ""
    source: str = ""

    def sprint(self, sprint_id: str) -> SprintSpec:
        for s in self.sprints:
            if s.id == sprint_id:
                return s
        raise InvalidInputError(f"epic {self.name!r} has no sprint {sprint_id!r}")


def _number(where: str, value: Any, *, positive: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise InvalidInputError(f"{where} must be a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return float(value)


def _keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InvalidInputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _phase(where: str, raw: Any) -> Phase:
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where} must be a table, got {raw!r}")
    _keys(where, raw, {"name", "minutes", "run", "test", "ports", "interface", "timeout_minutes"})
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where} needs a name")
    where = f"{where} ({name!r})"
    run = raw.get("run")
    if run is not None and (not isinstance(run, str) or not run.strip()):
        raise InvalidInputError(f"{where}.run must be a non-empty command string")
    if run is None and "minutes" not in raw:
        raise InvalidInputError(f"{where} needs minutes (simulated) or run (a real command)")
    ports = raw.get("ports", 1)
    if isinstance(ports, bool) or not isinstance(ports, int) or not 0 <= ports <= 64:
        raise InvalidInputError(f"{where}.ports must be an int from 0 to 64, got {ports!r}")
    flags = {k: raw.get(k, False) for k in ("test", "interface")}
    for k, v in flags.items():
        if not isinstance(v, bool):
            raise InvalidInputError(f"{where}.{k} must be true or false, got {v!r}")
    limit = raw.get("timeout_minutes")
    return Phase(
        name=name,
        minutes=_number(f"{where}.minutes", raw.get("minutes", 0)),
        run=run,
        test=flags["test"],
        ports=ports,
        interface=flags["interface"],
        timeout_minutes=None if limit is None else _number(f"{where}.timeout_minutes", limit, positive=True),
    )


def _sprint(index: int, raw: Any) -> SprintSpec:
    where = f"sprint #{index + 1}"
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where} must be a table")
    _keys(where, raw, {"id", "depends_on", "dependencies", "prep", "phase"})
    ident = raw.get("id")
    if not isinstance(ident, str):
        raise InvalidInputError(f"{where} needs an id (a string)")
    validate_name(ident, what="sprint")
    where = f"sprint {ident!r}"
    deps = raw.get("depends_on", raw.get("dependencies", []))
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise InvalidInputError(f"{where}.depends_on must be a list of sprint ids, got {deps!r}")
    prep = raw.get("prep", [])
    phases = raw.get("phase", [])
    if not isinstance(prep, list) or not isinstance(phases, list):
        raise InvalidInputError(f"{where}: prep and phase must be lists of tables ([[sprint.phase]])")
    if not phases:
        raise InvalidInputError(f"{where} has no [[sprint.phase]]")
    spec = SprintSpec(
        id=ident,
        depends_on=tuple(dict.fromkeys(deps)),
        prep=tuple(_phase(f"{where}.prep[{i}]", p) for i, p in enumerate(prep)),
        phases=tuple(_phase(f"{where}.phase[{i}]", p) for i, p in enumerate(phases)),
    )
    if sum(p.interface for p in spec.phases) > 1:
        raise InvalidInputError(f"{where}: only one phase may have interface = true")
    if any(p.test for p in spec.prep):
        raise InvalidInputError(f"{where}: prep work cannot be a test phase")
    return spec


def parse_plan(data: dict[str, Any], *, source: str = "") -> EpicPlan:
    """An EpicPlan from parsed TOML (see the module docstring)."""
    _keys("the plan", data, {"epic", "sprint"})
    epic = data.get("epic", {})
    if not isinstance(epic, dict):
        raise InvalidInputError("[epic] must be a table")
    _keys("[epic]", epic, {"name", "description", "max_parallel", "time_scale", "baseline_minutes", "target_minutes"})
    raw_sprints = data.get("sprint", [])
    if not isinstance(raw_sprints, list) or not raw_sprints:
        raise InvalidInputError("the plan has no [[sprint]]")
    sprints = tuple(_sprint(i, s) for i, s in enumerate(raw_sprints))
    ids = [s.id for s in sprints]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise InvalidInputError(f"sprint id(s) used twice: {', '.join(twice)}")
    analyze({s.id: s.depends_on for s in sprints})  # unknown dependencies and cycles, named
    max_parallel = epic.get("max_parallel", len(sprints))
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise InvalidInputError(f"[epic].max_parallel must be a positive int, got {max_parallel!r}")
    optional = {k: epic.get(k) for k in ("baseline_minutes", "target_minutes")}
    return EpicPlan(
        name=str(epic.get("name") or Path(source).stem or "epic"),
        sprints=sprints,
        max_parallel=max_parallel,
        time_scale=_number("[epic].time_scale", epic.get("time_scale", DEFAULT_SCALE), positive=True),
        baseline_minutes=None if optional["baseline_minutes"] is None else _number("[epic].baseline_minutes", optional["baseline_minutes"]),
        target_minutes=None if optional["target_minutes"] is None else _number("[epic].target_minutes", optional["target_minutes"]),
        description=str(epic.get("description", "")),
        source=source,
    )


def load_plan(path: str | Path) -> EpicPlan:
    """Read and check a plan file (TOML)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read the plan {p}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"the plan {p} is not valid TOML: {exc}") from None
    return parse_plan(data, source=str(p))


@dataclass(frozen=True)
class Bounds:
    """What a plan promises before it runs, in simulated minutes."""

    baseline: float  #: every sprint one after another
    critical_path: float  #: the longest dependency chain, with unbounded parallelism
    critical_sprints: list[str]
    test_lock: float  #: earliest test start + every test phase in a row + the shortest tail
    capacity: float  #: all the work spread over max_parallel sprints
    earliest_interface: dict[str, float] = field(default_factory=dict)

    @property
    def lower_bound(self) -> float:
        """No schedule can finish sooner than this."""
        return max(self.critical_path, self.test_lock, self.capacity)


def bounds(plan: EpicPlan, *, max_parallel: int | None = None) -> Bounds:
    """Lower bounds of ``plan``'s makespan (see :class:`Bounds`): a sprint's prep may start
    at once; its phases start once its prep is done and its dependencies' interfaces are out.
    ``max_parallel`` overrides the plan's."""
    order = analyze({s.id: s.depends_on for s in plan.sprints}).order
    interface: dict[str, float] = {}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    test_starts: list[float] = []
    tails: list[float] = []
    for sid in order:
        s = plan.sprint(sid)
        ready = max((interface[d] for d in s.depends_on), default=0.0)
        prep = sum(p.minutes for p in s.prep)
        via[sid] = max(s.depends_on, key=lambda d: interface[d]) if s.depends_on and ready > prep else None
        t = max(prep, ready)
        for i, phase in enumerate(s.phases):
            if phase.test:
                test_starts.append(t)
                tails.append(sum(p.minutes for p in s.phases[i + 1 :]))
            t += phase.minutes
            if i == s.interface_index:
                interface[sid] = t
        finish[sid] = t
    last = max(finish, key=lambda k: finish[k])
    chain: list[str] = []
    node: str | None = last
    while node is not None:
        chain.append(node)
        node = via[node]
    tests = sum(p.minutes for s in plan.sprints for p in s.phases if p.test)
    total = sum(s.minutes for s in plan.sprints)
    return Bounds(
        baseline=total,
        critical_path=finish[last],
        critical_sprints=list(reversed(chain)),
        test_lock=(min(test_starts) + tests + min(tails)) if test_starts else 0.0,
        capacity=total / min(max_parallel or plan.max_parallel, len(plan.sprints)),
        earliest_interface=interface,
    )
