"""The live progress display of ``lockstep epic run``.

On a terminal: one line per sprint, redrawn in place (at most ten times a second) with
its state, what it is doing and a bar of its planned work done. Elsewhere (a pipe, a
CI log): one plain line per notable event, stamped with the simulated minute.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .plan import EpicPlan
from .runner import SprintRecord

__all__ = ["Progress"]

BAR = 20
REDRAW_EVERY = 0.1  # s


def _describe(event: dict[str, Any]) -> str | None:
    """A plain line for an event worth a line, else None."""
    kind = event["event"]
    if kind == "started":
        return "started"
    if kind == "wait_start":
        return f"waiting for {', '.join(event['deps'])} (doing prep work meanwhile)"
    if kind == "deps_resolved":
        return f"dependencies ready ({event['done_while_waiting']} prep task(s) done while waiting)"
    if kind == "phase_start":
        return f"{event['phase']} started"
    if kind == "lock_wait":
        return f"{event['phase']}: waiting for the test lock"
    if kind == "lock_acquired":
        return f"{event['phase']}: test lock acquired (fence {event['fence']})"
    if kind == "ports":
        return f"{event['phase']}: ports {', '.join(map(str, event['ports'])) or 'none'}"
    if kind == "interface":
        return "interface ready (signalled)"
    if kind == "done":
        return "done"
    if kind == "failed":
        return f"FAILED: {event.get('reason', '')}"
    return None


class Progress:
    """``on_event`` for :class:`~lockstep.epic.runner.EpicRunner`; call :meth:`close` at the end."""

    def __init__(self, plan: EpicPlan, time_scale: float, *, stream: TextIO | None = None,
                 live: bool | None = None) -> None:  # fmt: skip
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.scale = time_scale
        self.plan = plan
        self.planned = {s.id: s.minutes for s in plan.sprints}
        self.done_minutes = dict.fromkeys(self.planned, 0.0)
        self.doing = dict.fromkeys(self.planned, "pending")
        self.states = dict.fromkeys(self.planned, "pending")
        self.drawn = 0
        self.last_draw = 0.0
        self.minutes_of = {(s.id, p.name): p.minutes for s in plan.sprints for p in s.prep + s.phases}

    def __call__(self, record: SprintRecord, event: dict[str, Any]) -> None:
        sid, kind = record.id, event["event"]
        self.states[sid] = record.state
        if kind in ("phase_start", "prep_start"):
            self.doing[sid] = event["phase"]
        elif kind in ("phase_end", "prep_end"):
            self.done_minutes[sid] += self.minutes_of.get((sid, event["phase"]), 0.0)
        elif kind == "lock_wait":
            self.doing[sid] = f"{event['phase']} (waiting for the test lock)"
        elif kind == "wait_start":
            self.doing[sid] = f"waiting for {', '.join(event['deps'])}"
        elif kind in ("done", "failed", "exit"):
            self.doing[sid] = record.reason or record.state
        if self.live:
            self._redraw()
        elif kind != "exit" or record.state == "died":
            text = _describe(event) if kind != "exit" else f"DIED: {record.reason}"
            if text is not None:
                minute = event.get("at", 0.0) / self.scale
                self.stream.write(f"[{minute:7.1f} min] {sid:<16} {text}\n")
                self.stream.flush()

    def _line(self, sid: str) -> str:
        planned = self.planned[sid] or 1.0
        filled = min(BAR, int(BAR * self.done_minutes[sid] / planned))
        bar = "#" * filled + "." * (BAR - filled)
        return f"{sid:<16} {self.states[sid]:<9} [{bar}] {self.doing[sid]}"[:160]

    def _redraw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < REDRAW_EVERY:
            return
        self.last_draw = now
        out = [f"\x1b[{self.drawn}A"] if self.drawn else []
        for sid in self.planned:
            out.append("\x1b[2K" + self._line(sid) + "\n")
        self.drawn = len(self.planned)
        self.stream.write("".join(out))
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self._redraw(force=True)
