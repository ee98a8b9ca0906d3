"""The Rust lease bookkeeping through its Python glue: shapes, errors, no panics."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lockstep import _core
from lockstep.errors import DataLossDetected, InvalidInputError


def test_held_leases_schedule_renewals_and_deadlines() -> None:
    held = _core.HeldLeases(seed=42)
    assert held.next_wakeup() is None and len(held) == 0
    assert held.insert("t1", ["lock:a"], [7], 3.0, 100.0) == 103.0
    assert "t1" in held and held.deadline("t1") == 103.0
    wake = held.next_wakeup()
    assert wake is not None and 101.0 <= wake <= 101.2
    assert held.due(100.9) == [] and held.due(101.0) == ["t1"]
    assert held.renewed("t1", 101.0) == 104.0
    assert held.renewed("t1", 101.5, ttl=10.0) == 111.5
    assert held.renewed("nope", 1.0) is None
    retry = held.renewal_failed("t1", 105.0)
    assert retry is not None and 105.0 < retry < 106.0
    assert held.expired(111.4) == [] and held.expired(111.5) == ["t1"]
    assert held.remove("t1") is False


def test_fence_regressions_raise_data_loss_with_details() -> None:
    held = _core.HeldLeases()
    held.observe_fence("lock:a", 10)
    assert held.highest_fence("lock:a") == 10
    held.observe_fence("lock:a", 9, 8)  # a concurrent grant arriving late: fine
    with pytest.raises(DataLossDetected) as info:
        held.observe_fence("lock:a", 3, 10)
    assert (info.value.resource, info.value.fence, info.value.highest) == ("lock:a", 3, 10)
    assert "went backwards" in str(info.value)
    with pytest.raises(DataLossDetected):
        held.observe_fence("lock:a", 10)  # no floor: against the highest so far
    held.observe_fence("lock:a", 11)


def test_lease_table_shapes() -> None:
    table = _core.LeaseTable()
    assert table.acquire("a", "alice", "s1", ["r"], 1, 10.0, 0.0) == ("granted", [1], [])
    busy = table.acquire("b", "bob", "s2", ["r"], 1, 10.0, 1.0, queue_ttl=3.0)
    assert busy == ("busy", [("r", ["alice"], [])], 9.0, True)
    assert table.queue("r", 1.0) == [("b", "bob", "s2", 4.0)]
    assert table.holders("r", 1.0) == [("a", "alice", "s1", 1, 10.0)]
    assert table.is_held("a", "r", 1, 5.0) and not table.is_held("a", "r", 2, 5.0)
    assert table.renew("a", ["r"], 10.0, 2.0) is True
    assert table.release("a", ["r"], 3.0) == (True, ["b"])
    assert table.fence("r") == 1 and table.fence("never") == 0
    dumped = table.dump("r")
    assert dumped == (1, 1, [], [("b", "bob", "s2", 4.0)])
    other = _core.LeaseTable()
    other.load("r", *dumped)
    assert other.dump("r") == dumped and other.resource_names() == ["r"]
    assert table.acquire("c", "carol", "s3", ["r"], 1, 10.0, 3.0, floors=[41]) == ("busy", [("r", [], ["bob"])], 0.05, False)
    assert table.acquire("b", "bob", "s2", ["r"], 1, 10.0, 3.0, floors=[41]) == ("granted", [42], ["r"])
    assert table.release_session("s2", 4.0) == (True, [])
    assert table.expire(100.0) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "o", "s", ["r"], 1, 1.0, 0.0), "token"),
        (("t", "o", "s", [], 1, 1.0, 0.0), "at least one resource"),
        (("t", "o", "s", ["r", "r"], 1, 1.0, 0.0), "twice"),
        (("t", "o", "s", ["r"], 0, 1.0, 0.0), "slots"),
        (("t", "o", "s", ["r"], 1, math.nan, 0.0), "ttl"),
        (("t", "o", "s", ["r"], 1, -1.0, 0.0), "ttl"),
        (("t", "o", "s", ["r"], 1, 1.0, math.inf), "now"),
    ],
)
def test_lease_table_refuses_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _core.LeaseTable().acquire(*args)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        _core.LeaseTable().acquire("t", "o", "s", "r", 1, 1.0, 0.0)  # a str is not a list of names
    with pytest.raises((TypeError, OverflowError)):
        _core.HeldLeases().insert("t", ["r"], [-1], 1.0, 0.0)


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
names = st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["acquire", "release", "renew", "expire"]), st.text(max_size=3), names, floats, floats),
        max_size=40,
    )
)
def test_random_calls_raise_typed_errors_or_succeed(ops: list) -> None:
    table = _core.LeaseTable()
    held = _core.HeldLeases(seed=1)
    for op, token, resources, ttl, now in ops:
        try:
            if op == "acquire":
                table.acquire(token, "o", "s", resources, 2, ttl, now, queue_ttl=ttl)
                held.insert(token, resources, [1] * len(resources), ttl, now)
            elif op == "release":
                table.release(token, resources, now)
                held.renewal_failed(token, now)
            elif op == "renew":
                table.renew(token, resources, ttl, now)
                held.renewed(token, now, ttl)
            else:
                table.expire(now)
                held.expired(now)
                held.due(now)
        except InvalidInputError:
            pass
        for r in ("a", "b", "c"):
            assert len(table.holders(r, 0.0)) <= 2
