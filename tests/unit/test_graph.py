"""Dependency analysis: waves, critical path, cycles named, unknown dependencies named."""

from __future__ import annotations

import pytest
from lockstep.cfn import DependencyAnalyzer
from lockstep.errors import CircularDependencyError, InvalidInputError
from lockstep.graph import analyze, find_cycle


def test_waves_group_what_can_run_together() -> None:
    plan = analyze({"s1": [], "s2": [], "s3": ["s1"], "s4": ["s1", "s2"], "s5": ["s3", "s4"]})
    assert plan.waves == [["s1", "s2"], ["s3", "s4"], ["s5"]]
    position = {n: i for i, n in enumerate(plan.order)}
    for node, deps in plan.dependencies.items():
        assert all(position[d] < position[node] for d in deps)
    assert plan.dependents["s1"] == ("s3", "s4")


def test_critical_path_follows_durations() -> None:
    graph = {"api": [], "db": [], "ui": ["api"], "report": ["db", "ui"]}
    plan = analyze(graph, durations={"api": 10, "db": 30, "ui": 5, "report": 1})
    assert plan.critical_path == ["db", "report"] and plan.critical_length == 31
    plan = analyze(graph, durations={"api": 20, "db": 10, "ui": 15, "report": 1})
    assert plan.critical_path == ["api", "ui", "report"] and plan.critical_length == 36
    assert plan.earliest_start["report"] == 35 and plan.tail["api"] == 36
    assert plan.total_duration == 46


def test_default_duration_is_one_per_node() -> None:
    plan = analyze({"a": [], "b": ["a"], "c": ["b"], "d": []})
    assert plan.critical_path == ["a", "b", "c"] and plan.critical_length == 3


def test_empty_graph() -> None:
    plan = analyze({})
    assert plan.waves == [] and plan.critical_path == [] and plan.critical_length == 0


def test_the_seeds_cycle_is_detected_and_named() -> None:
    sprints = [
        {"id": "sprint-1", "dependencies": ["sprint-3"]},
        {"id": "sprint-2", "dependencies": ["sprint-1"]},
        {"id": "sprint-3", "dependencies": ["sprint-2"]},
    ]
    with pytest.raises(CircularDependencyError) as info:
        DependencyAnalyzer().analyze({"sprints": sprints})
    message = str(info.value)
    assert message.startswith("Circular dependency detected")
    assert message == "Circular dependency detected: sprint-1 -> sprint-3 -> sprint-2 -> sprint-1"
    assert info.value.cycle == ("sprint-1", "sprint-3", "sprint-2", "sprint-1")
    assert isinstance(info.value, ValueError)


def test_only_the_cycle_is_named_not_its_bystanders() -> None:
    cycle = find_cycle({"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"], "e": ["d"]})
    assert cycle == ["b", "d", "c", "b"]
    assert find_cycle({"x": ["x"]}) == ["x", "x"]
    assert find_cycle({"a": [], "b": ["a"]}) is None


def test_unknown_dependencies_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"'s2' depends on unknown 's9'"):
        analyze({"s1": [], "s2": ["s1", "s9"]})


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="list of ids"):
        analyze({"a": "b"})
    with pytest.raises(InvalidInputError, match="duration"):
        analyze({"a": []}, durations={"a": -1})
    with pytest.raises(InvalidInputError, match="unknown node"):
        analyze({"a": []}, durations={"z": 1})
    with pytest.raises(InvalidInputError, match="listed twice"):
        DependencyAnalyzer().analyze([{"id": "a"}, {"id": "a"}])
    with pytest.raises(InvalidInputError, match="id"):
        DependencyAnalyzer().analyze([{"dependencies": []}])


def test_analyzer_accepts_lists_objects_and_durations() -> None:
    class Sprint:
        def __init__(self, id: str, depends_on: list[str], minutes: float) -> None:
            self.id, self.depends_on, self.minutes = id, depends_on, minutes

    plan = DependencyAnalyzer().analyze([Sprint("a", [], 25), Sprint("b", ["a"], 10), Sprint("c", [], 30)])
    assert plan.waves == [["a", "c"], ["b"]] and plan.critical_path == ["a", "b"] and plan.critical_length == 35
    plan = DependencyAnalyzer().analyze([{"id": "x", "depends_on": []}, {"id": "y", "dependencies": ["x"]}])
    assert plan.waves == [["x"], ["y"]]
