"""The Rust rate-limit core through ``lockstep._core``: exact arithmetic on explicit times,
thread safety, stored states, leases, and fuzzed input that only ever gets typed errors."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lockstep import _core
from lockstep.errors import (
    ConfigError,
    InvalidInputError,
    InvalidNameError,
    LockstepError,
)

T0 = 1_700_000_000_000_000  # microseconds
SECOND = 1_000_000


def rule(rate: str, algorithm: str = "gcra", burst: int | None = None) -> _core.RateRule:
    return _core.RateRule.parse(rate, algorithm, burst)


# -- rates and rules -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "limit", "period_us"),
    [
        ("100/minute", 100, 60 * SECOND),
        ("50/10s", 50, 10 * SECOND),
        ("5/second", 5, SECOND),
        ("1000/hour", 1000, 3600 * SECOND),
        ("10 per 2 minutes", 10, 120 * SECOND),
        ("3 / 1.5 S", 3, 1_500_000),
        ("7/250ms", 7, 250_000),
    ],
)
def test_rate_strings(text: str, limit: int, period_us: int) -> None:
    assert _core.parse_rate(text) == (limit, period_us)


@pytest.mark.parametrize("text", ["", "100", "100/", "/s", "0/s", "-5/s", "5/0s", "5/fortnight", "5/1.0000001s", "x" * 200])
def test_bad_rate_strings_name_the_string(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        _core.parse_rate(text)
    assert repr(text[:100])[1:-1][:20] in str(err.value)


def test_rules_are_checked_and_described() -> None:
    assert rule("50/10s").describe() == "50/10s gcra (burst 1)"
    assert rule("100/minute", "sliding_window").describe() == "100/1m sliding_window"
    r = rule("3/second")
    assert (r.emission_us, r.capacity, r.burst, r.period) == (333_334, 1, 1, 1.0)
    assert rule("5000/second", "sliding_window").granularity_us == 977
    assert rule("5/s") == rule("5/second") and hash(rule("5/s")) == hash(rule("5/second"))
    for bad in (
        lambda: _core.RateRule("leaky", 5, SECOND),
        lambda: _core.RateRule("gcra", 0, SECOND),
        lambda: _core.RateRule("gcra", -1, SECOND),
        lambda: _core.RateRule("gcra", 1.5, SECOND),
        lambda: _core.RateRule("gcra", 10, 5),  # more than one per microsecond
        lambda: _core.RateRule("gcra", 5, SECOND, 0),
        lambda: _core.RateRule("sliding_window", 5, SECOND, 2),
        lambda: _core.RateRule.parse(5),
    ):
        with pytest.raises(ConfigError):
            bad()


# -- decisions on explicit times -------------------------------------------------------------
def test_gcra_spaces_units_and_reports_exact_waits() -> None:
    table = _core.RateTable(rule("5/second"))
    first = table.acquire("k", 1, T0)
    assert (first.allowed, first.retry_after, first.remaining, first.reset_after, first.at) == (True, 0.0, 0, 0.2, T0 / 1e6)
    refused = table.acquire("k", 1, T0 + 50_000)
    assert (refused.allowed, refused.retry_after, refused.reset_after) == (False, 0.15, 0.15)
    assert not table.acquire("k", 1, T0 + 199_999).allowed
    assert table.acquire("k", 1, T0 + 200_000).allowed


def test_gcra_burst_lets_that_many_through_at_once() -> None:
    table = _core.RateTable(rule("10/second", burst=4))
    assert [table.acquire("k", 1, T0).allowed for _ in range(5)] == [True] * 4 + [False]
    assert table.acquire("k", 4, T0 + 400_000).allowed
    with pytest.raises(InvalidInputError, match="cost 5 is more than the burst"):
        table.acquire("k", 5, T0)


def test_sliding_window_is_exact() -> None:
    table = _core.RateTable(rule("3/second", "sliding_window"))
    assert table.acquire("k", 2, T0).allowed
    assert table.acquire("k", 1, T0 + 300_000).allowed
    refused = table.acquire("k", 1, T0 + 500_000)
    assert (refused.allowed, refused.retry_after, refused.remaining, refused.reset_after) == (False, 0.5, 0, 0.8)
    assert not table.acquire("k", 1, T0 + 999_999).allowed
    assert table.acquire("k", 2, T0 + SECOND).allowed
    assert not table.acquire("k", 1, T0 + SECOND).allowed
    with pytest.raises(InvalidInputError, match="cost 4 is more than the limit"):
        table.acquire("k", 4, T0)


def test_peek_reset_and_isolated_keys() -> None:
    table = _core.RateTable(rule("2/second", "sliding_window"))
    assert table.peek("k", T0).remaining == 1
    table.acquire("k", 2, T0)
    assert not table.peek("k", T0).allowed and table.acquire("other", 2, T0).allowed
    assert table.live_keys(T0) == 2
    assert table.reset("k", T0) is True and table.reset("k", T0) is False
    assert table.acquire("k", 2, T0).allowed
    assert table.live_keys(T0 + SECOND) == 0


@settings(max_examples=200, deadline=None)
@given(
    algorithm=st.sampled_from(["gcra", "sliding_window"]),
    limit=st.integers(1, 8),
    steps=st.lists(st.tuples(st.integers(0, 400_000), st.integers(1, 3)), min_size=1, max_size=120),
)
def test_no_window_ever_holds_more_than_the_limit(algorithm: str, limit: int, steps: list[tuple[int, int]]) -> None:
    r = _core.RateRule(algorithm, limit, SECOND)
    table = _core.RateTable(r)
    now, admitted = T0, []
    for dt, cost in steps:
        now += dt
        if cost > r.capacity:
            continue
        if table.acquire("k", cost, now).allowed:
            admitted.append((now, cost))
    for start, _ in admitted:
        assert sum(c for t, c in admitted if start <= t < start + SECOND) <= limit


@pytest.mark.parametrize("call", ["acquire", "hit"])
def test_many_threads_share_one_table_exactly(call: str) -> None:
    table = _core.RateTable(rule("1000/hour", "sliding_window"))
    allowed = [0] * 8
    decide = (lambda: table.acquire("k").allowed) if call == "acquire" else (lambda: table.hit("k"))

    def hammer(i: int) -> None:
        for _ in range(2_000):
            if decide():
                allowed[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 1000


def test_a_call_made_while_another_holds_the_table_waits_its_turn() -> None:
    """``hit`` and ``acquire`` take the table's exclusive borrow; when another call holds a
    shared one (here ``peek``, while it turns a bad key into text by running the key's
    ``__repr__``) they decide through the table's lock instead of failing."""
    table = _core.RateTable(rule("2/hour", "sliding_window"))
    inside: list[object] = []

    class Key:
        def __repr__(self) -> str:
            inside.extend([table.hit("k"), table.acquire("k").allowed, table.hit("k")])
            return "Key()"

    with pytest.raises(InvalidNameError, match="Key"):
        table.peek(Key())  # type: ignore[arg-type]
    assert inside == [True, True, False]
    assert table.peek("k").remaining == 0 and table.hit("k") is False


def test_hit_is_acquire_without_the_decision() -> None:
    """``hit`` spends exactly what ``acquire`` would: a table driven by hits and one driven
    by acquires (on the same clock) stay in step, and both see the units spent."""
    for algorithm in ("gcra", "sliding_window"):
        by_hit, by_acquire = (_core.RateTable(rule("5/hour", algorithm, burst=3 if algorithm == "gcra" else None))
                              for _ in range(2))  # fmt: skip
        hits = [by_hit.hit("k", cost) for cost in (1, 2, 1, 1, 1)]
        decisions = [by_acquire.acquire("k", cost).allowed for cost in (1, 2, 1, 1, 1)]
        assert hits == decisions and True in hits and False in hits, (algorithm, hits)
        assert by_hit.peek("k").remaining == by_acquire.peek("k").remaining
        assert by_hit.hit() is True and by_hit.peek("default").remaining < by_hit.peek("fresh").remaining
    table = _core.RateTable(rule("2/hour", "sliding_window"))
    with pytest.raises(InvalidInputError, match="cost 3 is more than the limit"):
        table.hit("k", 3)
    with pytest.raises(InvalidInputError, match="cost"):
        table.hit("k", 1.0)
    with pytest.raises(InvalidNameError):
        table.hit("bad key")
    assert table.live_keys() == 0, "refused calls spent nothing"


def test_the_last_key_cache_follows_resets_and_moved_slots() -> None:
    """``hit`` and ``acquire`` go straight to the slot of the key they saw last (the same
    ``str`` object, asked twice in a row); a reset of that key, or of another (whose hole
    the table fills by moving its last slot), must send them back to a lookup."""
    table = _core.RateTable(rule("2/hour", "sliding_window"))
    hammered = "hammered"
    assert [table.hit(hammered) for _ in range(3)] == [True, True, False]
    assert table.reset(hammered) is True
    assert [table.hit(hammered) for _ in range(3)] == [True, True, False]
    for key in ("a", "b"):
        assert table.hit(key)
    last = "c"  # stored last: removing "a" moves it into a's slot
    assert [table.hit(last), table.hit(last)] == [True, True]
    assert table.reset("a") is True
    assert [table.hit(last), table.acquire(last).remaining, table.peek(last).remaining] == [False, 0, 0]
    assert table.hit("a") and table.peek("b").allowed and not table.hit(hammered)


def test_keys_are_their_text_whatever_object_or_hash() -> None:
    """The table hashes a key by the hash Python keeps for its text: a ``str`` subclass
    with a hash of its own still names the same key as the plain text."""

    class OddHash(str):
        def __hash__(self) -> int:
            return 7

    table = _core.RateTable(rule("2/hour", "sliding_window"))
    assert [table.hit(OddHash("k")), table.hit("k"), table.hit(OddHash("k")), table.acquire("k").allowed] == [
        True, True, False, False,
    ]  # fmt: skip
    # peek's `remaining` counts what is left after a request of 1: 2 unspent is 1 left
    assert table.reset(OddHash("k")) is True and table.peek("k").remaining == 1
    long_key = "a-key-longer-than-twenty-three-bytes"
    assert table.hit(long_key) and table.hit(long_key[:-1] + "s") and table.peek(long_key).remaining == 0
    assert table.hit() and table.peek("default").remaining == 0 and table.peek("fresh").remaining == 1


def test_thousands_of_keys_keep_their_own_state() -> None:
    """Growing the table (its index is rebuilt, its slots are not moved) and sweeping idle
    keys lose no key's state."""
    table = _core.RateTable(rule("3/second", "sliding_window"))
    keys = [f"user:{i}" for i in range(5_000)]
    for i, key in enumerate(keys):
        for _ in range(1 + i % 3):
            table.acquire(key, 1, T0)
    # peek's `remaining` counts what is left after a request of 1
    assert [table.peek(key, T0).remaining for key in keys[:6]] == [1, 0, 0, 1, 0, 0]
    assert all(table.peek(key, T0).allowed == (i % 3 < 2) for i, key in enumerate(keys))
    # a second later every key is idle: new keys sweep them out, and the rest still decide
    for key in (f"later:{i}" for i in range(12_000)):
        table.acquire(key, 1, T0 + 2 * SECOND)
    assert table.live_keys(T0 + 2 * SECOND) == 12_000
    assert table.acquire(keys[2], 3, T0 + 2 * SECOND).allowed and table.peek(keys[2], T0 + 2 * SECOND).remaining == 0


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_a_hammered_key_on_the_real_clock_gets_exactly_its_rate(algorithm: str) -> None:
    """Hammered on the table's own clock, ``hit`` refuses most calls without reading the
    clock (when the key surely cannot pass before its next free moment); it must still
    admit exactly what the rate allows: 2 per second over 1.3 s is 4 (sliding window: 2 at
    once, 2 more a second later) or 3 (GCRA: one every 500 ms)."""
    table = _core.RateTable(rule("2/second", algorithm))
    key, admitted = "hammered", []
    stop = _core.rate_clock_us() + 1_300_000
    while (before := _core.rate_clock_us()) < stop:
        if table.hit(key):
            admitted.append(before)
    assert len(admitted) == (4 if algorithm == "sliding_window" else 3), admitted
    gaps = [b - a for a, b in zip(admitted, admitted[1:])]
    if algorithm == "gcra":
        assert all(gap >= 490_000 for gap in gaps), gaps  # read before the stamp: slack for a preemption
    else:
        assert admitted[2] - admitted[0] >= 990_000 and admitted[3] - admitted[1] >= 990_000, gaps


# -- stored states (the SQLite driver's path) -----------------------------------------------
def test_state_round_trips_and_expires() -> None:
    r = rule("2/second", "sliding_window")
    d1, s1, ttl1 = r.acquire_state(None, 1, T0)
    assert d1.allowed and s1 is not None and ttl1 == SECOND
    d2, s2, _ = r.acquire_state(s1, 1, T0 + 10)
    assert d2.allowed and d2.remaining == 0
    assert not r.peek_state(s2, T0 + 20).allowed
    _, gone, ttl = r.acquire_state(s2, 1, T0 + 5 * SECOND)
    assert gone is not None and ttl == SECOND  # old entries dropped, the new one kept
    d, idle, ttl0 = _core.RateRule("gcra", 1, 1000).acquire_state(None, 1, T0)
    assert d.allowed and idle is not None and ttl0 == 1000


def test_a_state_of_another_configuration_is_refused() -> None:
    _, state, _ = rule("5/second").acquire_state(None, 1, T0)
    with pytest.raises(ConfigError, match="in use as 5/1s gcra"):
        rule("6/second").acquire_state(state, 1, T0)
    with pytest.raises(InvalidInputError, match="malformed"):
        rule("5/second").acquire_state(b"LR\x01garbage", 1, T0)


def test_lease_and_refund_on_a_state() -> None:
    r = rule("10/second", "sliding_window")
    grant, state, _ = r.lease_state(None, 2, 6, 100_000, T0)
    granted, retry_us, token, start_us, end_us, remaining, now_us = grant
    assert (granted, retry_us, start_us, end_us, remaining, now_us) == (6, 0, 0, 100_000, 4, T0)
    back, state, _ = r.refund_state(state, token, 5, T0 + 1)
    assert back == 5 and r.peek_state(state, T0 + 2).remaining == 8


# -- the local lease pool ----------------------------------------------------------------------
def test_window_pool_spends_locally_and_hands_back() -> None:
    pool = _core.RateLeasePool(rule("10/second", "sliding_window"))
    assert pool.spend("k", 1, T0) is None and pool.shortfall("k", 3, T0) == 3
    pool.add("k", 4, T0 + 1_100_000, 0, 100_000, T0, T0 + 500)
    spent = pool.spend("k", 3, T0 + 1000)
    assert spent is not None and spent.allowed and spent.source == "lease" and spent.remaining == 1
    assert pool.spend("k", 2, T0 + 1000) is None and pool.shortfall("k", 2, T0 + 1000) == 1
    assert pool.take_refunds(T0 + 2000) == []
    assert pool.take_refunds(T0 + 100_000) == [("k", T0 + 1_100_000, 1)], "aged out: hand back"
    assert pool.drain(T0) == []


def test_gcra_pool_paces_within_the_block() -> None:
    pool = _core.RateLeasePool(rule("10/second"))
    pool.add("k", 3, T0 + 350_000, 0, 350_000, T0, T0 + 1000)  # slots at 0, 100, 200 ms + 50 ms slack
    assert pool.spend("k", 1, T0 + 1000).allowed  # type: ignore[union-attr]
    later = pool.spend("k", 1, T0 + 50_000)
    assert later is not None and not later.allowed and later.retry_after == pytest.approx(0.051)
    assert pool.spend("k", 1, T0 + 101_000).allowed  # type: ignore[union-attr]
    assert pool.drain(T0 + 101_000) == [("k", T0 + 350_000, 1)]


# -- fuzz: typed errors, never a panic, never a hang -------------------------------------------
ANY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), st.binary(max_size=20), st.just(object())
)


def _typed(call: Any) -> None:
    try:
        call()
    except LockstepError:
        pass
    except TypeError:
        pass  # a wrong Python type for a typed parameter (see _core.pyi)
    except BaseException as exc:  # pyo3's PanicException is a BaseException
        raise AssertionError(f"untyped {type(exc).__name__}: {exc}") from exc


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.text(max_size=40), algorithm=st.sampled_from(["gcra", "sliding_window", "x"]), burst=ANY)
def test_fuzzed_rates_get_typed_errors(rate: str, algorithm: str, burst: Any) -> None:
    _typed(lambda: _core.RateRule.parse(rate, algorithm, burst))
    _typed(lambda: _core.parse_rate(rate))


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(key=ANY, cost=ANY, now=ANY, limit=st.integers(-5, 2**70), period=st.integers(-5, 2**70))
def test_fuzzed_calls_get_typed_errors(key: Any, cost: Any, now: Any, limit: int, period: int) -> None:
    _typed(lambda: _core.RateRule("sliding_window", limit, period))
    table = _core.RateTable(rule("5/second", "sliding_window"))
    _typed(lambda: table.acquire(key, cost, now))
    _typed(lambda: table.acquire(key, cost))
    _typed(lambda: table.peek(key, now))
    _typed(lambda: table.lease(key, cost, cost, now))
    _typed(lambda: table.refund(key, now, cost))
    pool = _core.RateLeasePool(rule("5/second"))
    _typed(lambda: pool.spend(key, cost, now))
    _typed(lambda: pool.add(key, cost, now, cost, cost, now, now))


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.binary(max_size=80), now=st.integers(-(2**63), 2**63 - 1), units=st.integers(0, 2**64 - 1))
def test_fuzzed_stored_states_get_typed_errors(state: bytes, now: int, units: int) -> None:
    for r in (rule("5/second"), rule("5/second", "sliding_window")):
        _, good, _ = r.acquire_state(None, 1, T0)
        assert good is not None
        for data in (state, good[: len(state) % (len(good) + 1)], good[:-1] + state[:1], state + good):
            _typed(lambda d=data, r=r: r.acquire_state(d, 1, now))
            _typed(lambda d=data, r=r: r.refund_state(d, now, units, T0))
            _typed(lambda d=data, r=r: r.lease_state(d, 1, units, 1000, now))


def test_bad_keys_are_name_errors() -> None:
    table = _core.RateTable(rule("5/second"))
    for key in ("", "a b", "{x}", "x" * 201, 5, b"k", "a\udcff"):
        with pytest.raises(InvalidNameError):
            table.acquire(key)
    d = _core.Decision(True, 0.0, 3, 0.5)
    assert d == _core.Decision(True, 0.0, 3, 0.5, 0.0, "store") and d.source == "store"
    with pytest.raises(InvalidInputError):
        _core.Decision(True, 0.0, 3, 0.5, 0.0, "elsewhere")  # type: ignore[arg-type]
