"""``lockstep epic run PLAN.toml``: run an epic of parallel sprints and report on it.

    lockstep epic run examples/epic-5-mixed.toml --timeline run.html
    lockstep epic run PLAN.toml --time-scale 0.01 --max-parallel 4 --url redis://localhost:6379/0

``--time-scale`` is real seconds per simulated minute (default: the plan's, else 60:
real time). The live progress goes to stderr (redrawn on a terminal, plain lines
elsewhere); the report to stdout (``--json``: its figures as JSON). Exit status: 0 every
sprint done, 1 a sprint failed or died (the report says which and why), 2 the plan, the
URL or the backend is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any

__all__ = ["add_parsers", "run"]


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    epic = sub.add_parser("epic", help="run an epic of parallel sprints (see `lockstep epic run -h`)")
    actions = epic.add_subparsers(dest="epic_command", required=True)
    r = actions.add_parser("run", help="run the sprints of PLAN.toml in parallel and report on the run")
    r.add_argument("plan", help="the plan file (TOML; see examples/)")
    r.add_argument("--url", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    r.add_argument("--time-scale", type=_positive, metavar="SECONDS",
                   help="real seconds per simulated minute (default: the plan's, else 60)")  # fmt: skip
    r.add_argument("--max-parallel", type=_count, metavar="N", help="sprints running at once (default: the plan's)")
    r.add_argument("--timeline", metavar="FILE.html", help="write the run as a self-contained Gantt chart")
    r.add_argument("--workers", choices=("process", "inline"),
                   help="a process per sprint (default; memory:// runs inline)")  # fmt: skip
    r.add_argument("--timeout", type=_positive, metavar="SECONDS", help="stop the epic after this long")
    r.add_argument("--namespace", help="namespace of the run (default: a fresh one)")
    r.add_argument("--json", action="store_true", help="print the report's figures as JSON")
    r.add_argument("--quiet", action="store_true", help="no progress display")


async def _run(args: argparse.Namespace) -> int:
    from .epic import EpicRunner, load_plan, render, summary, write_timeline
    from .epic.progress import Progress

    plan = load_plan(args.plan)
    scale = args.time_scale or plan.time_scale
    progress = None if args.quiet else Progress(plan, scale)
    runner = EpicRunner(
        plan, url=args.url, time_scale=scale, max_parallel=args.max_parallel, workers=args.workers,
        namespace=args.namespace, timeout=args.timeout, on_event=progress,
    )  # fmt: skip
    try:
        result = await runner.run()
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        print(json.dumps(summary(result), indent=2))
    else:
        print(render(result))
    if args.timeline:
        path = write_timeline(result, args.timeline)
        print(f"timeline: {path}", file=sys.stderr)
    return 0 if result.ok else 1


def run(args: argparse.Namespace) -> int:
    """Run ``lockstep epic ...``; errors are turned into exit statuses by ``cli.main``."""
    if args.epic_command == "run":
        return asyncio.run(_run(args))
    raise AssertionError(f"unhandled epic command {args.epic_command!r}")
