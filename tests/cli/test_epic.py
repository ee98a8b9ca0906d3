"""`lockstep epic run`: the seed's three epics, time-scaled, with a report and a timeline;
plan mistakes named; a failing sprint reported with its dependents stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lockstep.epic import bounds, load_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


@pytest.mark.parametrize(
    ("plan", "target"), [("epic-3-independent.toml", 40), ("epic-5-mixed.toml", 60), ("epic-10-sprints.toml", 100)]
)
def test_the_seed_epics_beat_their_targets(plan: str, target: float, tmp_path: Path) -> None:
    timeline = tmp_path / "run.html"
    url = f"file://{tmp_path / 'coord.db'}"
    res = run_cli("epic", "run", str(EXAMPLES / plan), "--time-scale", "0.03", "--url", url,
                  "--timeline", str(timeline))  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert f"target               < {target} min: MET" in out
    for figure in ("makespan", "one after another", "lower bound", "test lock waiting", "makespan / bound"):
        assert figure in out
    assert "epic: all sprints done" in out and "test lock after the run: free" in out
    assert "process workers" in out
    # Plain progress lines on stderr (not a terminal), stamped with the simulated minute.
    assert "interface ready (signalled)" in res.stderr and "test lock acquired" in res.stderr
    page = timeline.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "</html>" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert page.count("http") == 1  # the SVG namespace only: nothing fetched from anywhere
    for sprint in load_plan(EXAMPLES / plan).sprints:
        assert f">{sprint.id}<" in page


def test_json_report_and_flags(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'coord.db'}"
    res = run_cli("epic", "run", str(EXAMPLES / "epic-5-mixed.toml"), "--time-scale", "0.02", "--url", url,
                  "--json", "--quiet", "--max-parallel", "3", "--workers", "inline")  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] and doc["max_parallel"] == 3 and doc["workers"] == "inline"
    assert doc["baseline_min"] == 125 and doc["seed_baseline_min"] == 125 and doc["target_min"] == 60
    plan = load_plan(EXAMPLES / "epic-5-mixed.toml")
    assert doc["makespan_min"] >= doc["lower_bound_min"] == bounds(plan, max_parallel=3).lower_bound
    assert set(doc["sprints"]) == {"auth", "db", "api", "billing", "frontend"}
    assert doc["prep_done_while_waiting"] >= 1
    assert res.stderr == ""  # --quiet


def test_memory_url_runs_inline(tmp_path: Path) -> None:
    res = run_cli("epic", "run", str(EXAMPLES / "epic-3-independent.toml"), "--time-scale", "0.02",
                  "--url", "memory://", "--quiet")  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "inline workers" in res.stdout


def test_a_failing_command_fails_the_epic_and_stops_its_dependents(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        """
[epic]
name = "breaks"
time_scale = 0.01

[[sprint]]
id = "base"
[[sprint.phase]]
name = "build"
run = "echo building; exit 3"

[[sprint]]
id = "uses-base"
depends_on = ["base"]
[[sprint.phase]]
name = "build"
minutes = 1

[[sprint]]
id = "alone"
[[sprint.phase]]
name = "test"
run = "test -n \\"$LOCKSTEP_PORTS\\" && echo ports $LOCKSTEP_PORTS"
test = true
ports = 2
"""
    )
    res = run_cli("epic", "run", str(plan), "--url", f"file://{tmp_path / 'coord.db'}")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "base failed: phase 'build': `echo building; exit 3` exited with 3: building" in res.stdout
    assert "uses-base cancelled: dependency base failed" in res.stdout
    assert "FAILED (2 sprint(s) not done)" in res.stdout
    assert "alone            done" in res.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[sprint]]\nid = "a"\ndepends_on = ["b"]\n[[sprint.phase]]\nname = "x"\nminutes = 1\n'
         '[[sprint]]\nid = "b"\ndepends_on = ["a"]\n[[sprint.phase]]\nname = "x"\nminutes = 1\n',
         "Circular dependency detected: a -> b -> a"),
        ('[[sprint]]\nid = "a"\ndepends_on = ["zz"]\n[[sprint.phase]]\nname = "x"\nminutes = 1\n',
         "'a' depends on unknown 'zz'"),
        ('[[sprint]]\nid = "a"\n[[sprint.phase]]\nname = "x"\n', "needs minutes (simulated) or run"),
        ('[[sprint]]\nid = "a"\n[[sprint.phase]]\nname = "x"\nminutes = -1\n', "minutes must be a non-negative"),
        ('[[sprint]]\nid = "a"\n[[sprint.phase]]\nname = "x"\nminutes = 1\nbogus = 2\n', "unknown field(s) bogus"),
        ("[[sprint]]\nid = 'a'\nphase = 3\n", "prep and phase must be lists"),
        ("this is not toml", "is not valid TOML"),
        ('[epic]\nmax_parallel = 0\n[[sprint]]\nid = "a"\n[[sprint.phase]]\nname = "x"\nminutes = 1\n',
         "max_parallel must be a positive int"),
    ],
)  # fmt: skip
def test_plan_mistakes_are_named(text: str, message: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    res = run_cli("epic", "run", str(plan), "--url", "memory://")
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr


def test_a_missing_plan_and_bad_flags(tmp_path: Path) -> None:
    res = run_cli("epic", "run", str(tmp_path / "nope.toml"), "--url", "memory://")
    assert res.returncode == 2 and "cannot read the plan" in res.stderr
    res = run_cli("epic", "run", str(EXAMPLES / "epic-3-independent.toml"), "--time-scale", "0")
    assert res.returncode == 2 and "expected a positive number" in res.stderr
