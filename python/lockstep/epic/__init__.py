"""``lockstep epic``: run an epic of parallel sprints on lockstep's primitives.

    plan = load_plan("examples/epic-5-mixed.toml")
    result = await EpicRunner(plan, url="file://./.lockstep/coord.db", time_scale=0.1).run()
    print(render(result)); write_timeline(result, "run.html")

:mod:`.plan` (the TOML format and the lower bounds), :mod:`.sprint` (one sprint:
agent, productive waiting, test lock, ports, interface signal), :mod:`.worker` (a
sprint in its own process), :mod:`.runner` (scheduling, failures), :mod:`.progress`,
:mod:`.report` and :mod:`.timeline` (what a person sees).
"""

from __future__ import annotations

from .plan import Bounds, EpicPlan, Phase, SprintSpec, bounds, load_plan, parse_plan
from .report import render, summary
from .runner import EpicResult, EpicRunner, SprintRecord
from .timeline import render_html, write_timeline

__all__ = [
    "Bounds",
    "EpicPlan",
    "EpicResult",
    "EpicRunner",
    "Phase",
    "SprintRecord",
    "SprintSpec",
    "bounds",
    "load_plan",
    "parse_plan",
    "render",
    "render_html",
    "summary",
    "write_timeline",
]
