"""The epic report: makespan against the one-after-another baseline and the lower bound,
time spent waiting for the test lock and for dependencies, and what went wrong.

Times are shown in simulated minutes (real seconds / time scale) with the real seconds
alongside; :func:`summary` gives the same figures as plain data (``--json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .runner import EpicResult, SprintRecord

__all__ = ["SprintFigures", "figures", "render", "summary"]


@dataclass(frozen=True)
class SprintFigures:
    """One sprint's waits, in real seconds."""

    lock_wait: float  #: waiting for the test lock
    dep_wait: float  #: from waiting for dependencies to having them
    idle_wait: float  #: the part of dep_wait with no prep work to do
    done_while_waiting: int  #: prep tasks finished while dependencies were pending


def figures(record: SprintRecord) -> SprintFigures:
    lock = sum(float(e.get("waited", 0.0)) for e in record.events if e["event"] == "lock_acquired")
    dep = sum(float(e.get("waited", 0.0)) for e in record.events if e["event"] == "deps_resolved")
    work = 0.0
    started: dict[str, float] = {}
    for e in record.events:
        if e["event"] == "prep_start" and e.get("during_wait"):
            started[e["phase"]] = e["at"]
        elif e["event"] == "prep_end" and e.get("during_wait") and e["phase"] in started:
            work += e["at"] - started.pop(e["phase"])
    done = sum(1 for e in record.events if e["event"] == "prep_end" and e.get("during_wait"))
    return SprintFigures(lock, dep, max(0.0, dep - work), done)


def summary(result: EpicResult) -> dict[str, Any]:
    """Every figure of the report, in simulated minutes unless the key says seconds."""
    m = result.minutes
    b = result.bounds
    per = {sid: figures(r) for sid, r in result.sprints.items()}
    makespan = m(result.makespan_seconds)
    return {
        "epic": result.plan.name,
        "ok": result.ok,
        "url": result.url,
        "workers": result.workers,
        "time_scale_s_per_min": result.time_scale,
        "max_parallel": result.max_parallel,
        "makespan_min": makespan,
        "makespan_s": result.makespan_seconds,
        "setup_s": result.setup_seconds,
        "baseline_min": b.baseline,
        "seed_baseline_min": result.plan.baseline_minutes,
        "target_min": result.plan.target_minutes,
        "target_met": None if result.plan.target_minutes is None else result.ok and makespan < result.plan.target_minutes,
        "lower_bound_min": b.lower_bound,
        "critical_path_min": b.critical_path,
        "critical_sprints": b.critical_sprints,
        "test_lock_bound_min": b.test_lock,
        "capacity_bound_min": b.capacity,
        "makespan_over_bound": makespan / b.lower_bound if b.lower_bound else None,
        "speedup": b.baseline / makespan if makespan else None,
        "test_lock_wait_min": m(sum(f.lock_wait for f in per.values())),
        "dependency_idle_min": m(sum(f.idle_wait for f in per.values())),
        "prep_done_while_waiting": sum(f.done_while_waiting for f in per.values()),
        "test_lock_holders_after": result.test_lock_holders,
        "reaped": result.reaped,
        "timed_out": result.timed_out,
        "sprints": {
            sid: {
                "state": r.state,
                "reason": r.reason,
                "start_min": None if r.started is None else m(r.started),
                "end_min": None if r.ended is None else m(r.ended),
                "test_lock_wait_min": m(per[sid].lock_wait),
                "dependency_wait_min": m(per[sid].dep_wait),
                "pid": r.pid,
            }
            for sid, r in result.sprints.items()
        },
    }


def _num(value: float | None, unit: str = " min") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def render(result: EpicResult) -> str:
    """The report as text (see the module docstring)."""
    s = summary(result)
    m = result.minutes
    plan = result.plan
    lines = [
        f"epic {plan.name!r}: {len(plan.sprints)} sprints, at most {result.max_parallel} at once, "
        f"{result.workers} workers on {result.url}",
        f"  time scale: 1 simulated minute = {result.time_scale:g} s",
        "",
        f"  makespan             {s['makespan_min']:7.1f} min   ({result.makespan_seconds:.2f} s)",
    ]
    if plan.target_minutes is not None:
        verdict = "MET" if s["target_met"] else "NOT MET"
        lines.append(f"  target               < {plan.target_minutes:g} min: {verdict}")
    seed = f"; the seed's baseline: {plan.baseline_minutes:g} min" if plan.baseline_minutes is not None else ""
    lines.append(f"  one after another    {s['baseline_min']:7.1f} min   (speed-up {s['speedup'] or 0:.2f}x{seed})")
    lines.append(
        f"  lower bound          {s['lower_bound_min']:7.1f} min   (critical path {s['critical_path_min']:.1f}: "
        f"{' -> '.join(s['critical_sprints'])}; test lock {s['test_lock_bound_min']:.1f}; "
        f"capacity {s['capacity_bound_min']:.1f})"
    )
    if s["makespan_over_bound"] is not None:
        lines.append(f"  makespan / bound     {s['makespan_over_bound']:7.3f}")
    lines.append(f"  test lock waiting    {s['test_lock_wait_min']:7.1f} min in all")
    lines.append(
        f"  dependencies         {s['prep_done_while_waiting']} prep task(s) done while waiting; "
        f"{s['dependency_idle_min']:.1f} min idle in all"
    )
    lines.append(f"  setup                {result.setup_seconds:7.2f} s     (workers started and connected; not in the makespan)")
    lines += ["", "  sprint           state      start      end   lock wait   dep wait"]
    for sid, r in result.sprints.items():
        f = figures(r)
        start = _num(None if r.started is None else m(r.started), "")
        end = _num(None if r.ended is None else m(r.ended), "")
        lines.append(
            f"  {sid:<16} {r.state:<9} {start:>6} {end:>8} {m(f.lock_wait):9.1f}  {m(f.dep_wait):9.1f}"
        )
    problems = [r for r in result.sprints.values() if r.state != "done"]
    if problems:
        lines.append("")
        for r in problems:
            lines.append(f"  {r.id} {r.state}: {r.reason}")
    if result.reaped:
        lines.append(f"  reaped after the failure: {', '.join(result.reaped)} (their leases freed)")
    if result.test_lock_holders is not None:
        held = ", ".join(result.test_lock_holders) if result.test_lock_holders else "free"
        lines.append(f"  test lock after the run: {held}")
    if result.timed_out:
        lines.append("  the epic ran past its deadline: what still ran was stopped")
    lines.append("")
    lines.append("epic: " + ("all sprints done" if result.ok else f"FAILED ({len(problems)} sprint(s) not done)"))
    return "\n".join(lines)
