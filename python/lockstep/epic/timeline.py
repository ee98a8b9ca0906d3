"""``--timeline FILE.html``: the run as a Gantt chart in one self-contained HTML file.

Inline SVG and CSS only (no scripts, fonts or images from anywhere), so the file opens
offline and can be attached to a CI run. One row per sprint, on a scale of simulated
minutes: prep work (lighter when done while waiting for dependencies), build and other
phases, test phases (under the test lock), waits for dependencies and for the test lock
(hatched), the moment the interface was signalled (a diamond), and a failure (a cross).
Hovering a bar shows what it was and when.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from .report import summary
from .runner import EpicResult, SprintRecord

__all__ = ["Bar", "bars", "render_html", "write_timeline"]

WIDTH, LEFT, ROW, TOP = 1100, 150, 30, 40
LEGEND_COLUMN, LEGEND_PER_ROW = 310, 3
COLORS = {
    "prep": "#9ecae1",
    "productive": "#c6dbef",
    "build": "#3182bd",
    "work": "#6baed6",
    "test": "#e6550d",
    "wait_deps": "url(#hatch-grey)",
    "wait_lock": "url(#hatch-red)",
}
LEGEND = [
    ("productive", "prep done while waiting for dependencies"),
    ("prep", "prep work"),
    ("build", "build"),
    ("work", "other phases"),
    ("test", "test (under the test lock)"),
    ("wait_deps", "waiting for dependencies"),
    ("wait_lock", "waiting for the test lock"),
]


@dataclass(frozen=True)
class Bar:
    sprint: str
    kind: str  #: a key of COLORS
    label: str
    start: float  #: seconds after the epic's start
    end: float


def bars(record: SprintRecord, end_of_run: float) -> list[Bar]:
    """The bars of one sprint, from its events (unfinished ones end with the run)."""
    out: list[Bar] = []
    opened: dict[tuple[str, str], tuple[float, str]] = {}
    pairs = {"prep_end": "prep_start", "phase_end": "phase_start", "deps_resolved": "wait_start",
             "lock_acquired": "lock_wait"}  # fmt: skip
    for e in record.events:
        kind, at = e["event"], float(e.get("at", 0.0))
        if kind in pairs.values():
            if kind == "prep_start":
                style = "productive" if e.get("during_wait") else "prep"
            elif kind == "phase_start":
                style = e.get("kind", "work")
            else:
                style = "wait_deps" if kind == "wait_start" else "wait_lock"
            opened[(kind, e.get("phase", ""))] = (at, style)
        elif kind in pairs:
            key = (pairs[kind], e.get("phase", "") if kind != "deps_resolved" else "")
            if key in opened:
                start, style = opened.pop(key)
                out.append(Bar(record.id, style, _label(style, key[1]), start, at))
    for (kind, phase), (start, style) in opened.items():
        out.append(Bar(record.id, style, _label(style, phase) + " (unfinished)", start, record.ended or end_of_run))
    waits = [b for b in out if b.kind.startswith("wait")]
    return waits + [b for b in out if not b.kind.startswith("wait")]  # waits underneath


def _label(style: str, phase: str) -> str:
    if style == "wait_deps":
        return "waiting for dependencies"
    if style == "wait_lock":
        return f"{phase}: waiting for the test lock"
    return phase


def _tick_step(total: float) -> float:
    raw = total / 10 or 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= raw))


def render_html(result: EpicResult) -> str:
    """The whole page (see the module docstring)."""
    s = summary(result)
    m = result.minutes
    span = max(result.makespan_seconds, 1e-9)
    total_min = max(m(span), float(s["lower_bound_min"]), 1e-9) * 1.02
    scale_x = (WIDTH - LEFT - 20) / total_min
    rows = list(result.sprints.values())
    rows_end = TOP + ROW * len(rows)
    height = rows_end + 30 + 20 * math.ceil(len(LEGEND) / LEGEND_PER_ROW)

    def x(seconds: float) -> float:
        return float(LEFT + m(seconds) * scale_x)

    svg: list[str] = []
    step = _tick_step(total_min)
    tick = 0.0
    while tick <= total_min + 1e-9:
        tx = LEFT + tick * scale_x
        svg.append(f'<line x1="{tx:.1f}" y1="{TOP - 8}" x2="{tx:.1f}" y2="{rows_end}" stroke="#e4e4e4"/>')
        svg.append(f'<text x="{tx:.1f}" y="{TOP - 12}" font-size="11" fill="#777" text-anchor="middle">{tick:g}</text>')
        tick += step
    bound_x = LEFT + s["lower_bound_min"] * scale_x
    svg.append(f'<line x1="{bound_x:.1f}" y1="{TOP - 8}" x2="{bound_x:.1f}" y2="{rows_end}" stroke="#2ca02c" '
               f'stroke-width="1.5" stroke-dasharray="4 3"><title>lower bound: {s["lower_bound_min"]:.1f} min'
               '</title></line>')  # fmt: skip
    for i, record in enumerate(rows):
        y = TOP + i * ROW
        state = "" if record.state == "done" else f" ({record.state})"
        svg.append(f'<text x="{LEFT - 8}" y="{y + ROW * 0.62:.1f}" font-size="13" text-anchor="end">'
                   f'{html.escape(record.id + state)}</text>')  # fmt: skip
        for bar in bars(record, span):
            thin = bar.kind.startswith("wait")
            by, bh = (y + 4, ROW - 8) if thin else (y + 7, ROW - 14)
            w = max(1.0, x(bar.end) - x(bar.start))
            tip = f"{record.id}: {bar.label}, {m(bar.start):.1f}-{m(bar.end):.1f} min"
            edge = {"test": ' stroke="#a63603"', "build": ' stroke="#08519c"'}.get(bar.kind, "")
            svg.append(f'<rect x="{x(bar.start):.1f}" y="{by}" width="{w:.1f}" height="{bh}" '
                       f'fill="{COLORS.get(bar.kind, "#999")}"{edge}><title>{html.escape(tip)}</title></rect>')  # fmt: skip
        for e in record.events:
            if e["event"] == "interface":
                cx, cy = x(e["at"]), y + ROW / 2
                svg.append(f'<path d="M{cx:.1f},{cy - 7:.1f} l6,7 l-6,7 l-6,-7 z" fill="#ffd54f" stroke="#8a6d00">'
                           f'<title>{html.escape(record.id)}: interface ready at {m(e["at"]):.1f} min</title></path>')  # fmt: skip
        if record.state in ("failed", "died", "cancelled") and record.ended is not None:
            cx, cy = x(record.ended), y + ROW / 2
            svg.append(f'<path d="M{cx - 6:.1f},{cy - 6:.1f} l12,12 m0,-12 l-12,12" stroke="#c00" stroke-width="3" fill="none">'
                       f'<title>{html.escape(record.id)} {record.state}: {html.escape(record.reason)}</title></path>')  # fmt: skip
    for i, (kind, text) in enumerate(LEGEND):
        lx, ly = LEFT + (i % LEGEND_PER_ROW) * LEGEND_COLUMN, rows_end + 26 + (i // LEGEND_PER_ROW) * 20
        svg.append(f'<rect x="{lx}" y="{ly - 10}" width="14" height="12" fill="{COLORS[kind]}" stroke="#999"/>'
                   f'<text x="{lx + 20}" y="{ly}" font-size="12" fill="#444">{html.escape(text)}</text>')  # fmt: skip

    target = "" if s["target_min"] is None else f" &middot; target &lt; {s['target_min']:g} min: {'met' if s['target_met'] else 'NOT met'}"
    ratio = "" if s["makespan_over_bound"] is None else f" &middot; makespan / bound {s['makespan_over_bound']:.3f}"
    facts = (
        f"makespan {s['makespan_min']:.1f} min{target} &middot; one after another {s['baseline_min']:.1f} min "
        f"&middot; lower bound {s['lower_bound_min']:.1f} min{ratio} &middot; test lock waiting "
        f"{s['test_lock_wait_min']:.1f} min &middot; 1 simulated minute = {result.time_scale:g} s"
    )
    title = html.escape(f"epic {result.plan.name}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} p {{ margin: 0 0 12px; color: #555; }}
svg {{ font-family: system-ui, sans-serif; }}
</style></head><body>
<h1>{title}{'' if result.ok else ' &mdash; FAILED'}</h1>
<p>{facts}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">
<defs>
<pattern id="hatch-grey" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="6" height="6" fill="#f4f4f4"/><line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern>
<pattern id="hatch-red" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
<rect width="6" height="6" fill="#fde0dd"/><line x1="0" y1="0" x2="0" y2="6" stroke="#f768a1" stroke-width="2"/></pattern>
</defs>
<text x="{LEFT}" y="14" font-size="12" fill="#444">simulated minutes (dashed green: the lower bound)</text>
{chr(10).join(svg)}
</svg>
</body></html>
"""


def write_timeline(result: EpicResult, path: str | Path) -> Path:
    target = Path(path)
    target.write_text(render_html(result), encoding="utf-8")
    return target
