//! The limits' guarantees, checked against brute force on pseudo-random traffic.

use super::gcra::Gcra;
use super::window::Window;
use super::*;

/// xorshift: reproducible pseudo-random traffic (shared with `log.rs`' and `slots.rs`' tests)
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cfg(algorithm: Algorithm, limit: u64, period_us: u64, burst: Option<u64>) -> RateConfig {
    match RateConfig::new(algorithm, limit, period_us, burst) {
        Ok(c) => c,
        Err(e) => unreachable!("bad test config: {e}"),
    }
}

/// The most units inside any half-open window of `period` among `(time, units)` events.
fn max_in_window(events: &[(i64, u64)], period: i64) -> u64 {
    let mut best = 0;
    for (i, &(start, _)) in events.iter().enumerate() {
        let sum: u64 = events[i..].iter().take_while(|(t, _)| *t < start + period).map(|(_, u)| u).sum();
        best = best.max(sum);
    }
    best
}

const T0: i64 = 1_700_000_000_000_000;

#[test]
fn parses_rate_strings() {
    let cases = [
        ("100/minute", (100, 60_000_000)),
        ("50/10s", (50, 10_000_000)),
        ("5/second", (5, 1_000_000)),
        ("1000/hour", (1000, 3_600_000_000)),
        ("10 per 2 minutes", (10, 120_000_000)),
        ("  7 / 1.5 S ", (7, 1_500_000)),
        ("3/250ms", (3, 250_000)),
        ("1/day", (1, 86_400_000_000)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_rate(text), Ok(want), "{text}");
    }
    for bad in ["", "100", "0/s", "-1/s", "1/0s", "1/fortnight", "x/s", "1/1.0000001s", "1/400d", "1e3/s", "1/s/s"] {
        let err = parse_rate(bad);
        assert!(
            matches!(&err, Err(CoreError::Config { reason }) if reason.contains(&format!("{bad:?}"))),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn config_is_checked() {
    assert!(RateConfig::new(Algorithm::Gcra, 0, 1, None).is_err());
    assert!(RateConfig::new(Algorithm::Gcra, 10, 5, None).is_err());
    assert!(RateConfig::new(Algorithm::SlidingWindow, 10, 1_000_000, Some(3)).is_err());
    assert!(RateConfig::new(Algorithm::Gcra, 1, MAX_PERIOD_US, Some(MAX_LIMIT)).is_err());
    let c = cfg(Algorithm::Gcra, 3, 1_000_000, None);
    assert_eq!((c.burst, c.emission_us()), (1, 333_334));
    assert!(Algorithm::from_name("leaky").is_err());
}

#[test]
fn gcra_burst_one_never_exceeds_the_limit_in_any_window() {
    let mut rng = Rng(7);
    for limit in [1u64, 3, 7, 50] {
        let c = cfg(Algorithm::Gcra, limit, 1_000_000, None);
        let mut state = KeyState::new(&c);
        let mut now = T0;
        let mut admitted = vec![];
        for _ in 0..5_000 {
            now += i64::try_from(rng.below(40_000)).unwrap_or(0);
            if let Ok(d) = state.acquire(&c, 1, now) {
                if d.allowed {
                    admitted.push((now, 1));
                }
            }
        }
        assert!(admitted.len() > 50, "limit {limit}: {}", admitted.len());
        assert!(max_in_window(&admitted, 1_000_000) <= limit, "limit {limit}");
    }
}

#[test]
fn gcra_with_burst_b_admits_at_most_limit_plus_b_minus_one() {
    let mut rng = Rng(11);
    let (limit, burst) = (10u64, 4u64);
    let c = cfg(Algorithm::Gcra, limit, 1_000_000, Some(burst));
    let mut state = KeyState::new(&c);
    let (mut now, mut admitted) = (T0, vec![]);
    for _ in 0..20_000 {
        now += i64::try_from(rng.below(30_000)).unwrap_or(0);
        let cost = 1 + rng.below(2);
        if state.acquire(&c, cost, now).is_ok_and(|d| d.allowed) {
            admitted.push((now, cost));
        }
    }
    assert_eq!(max_in_window(&admitted, 1_000_000), limit + burst - 1);
}

#[test]
fn sliding_window_is_exact() {
    let mut rng = Rng(3);
    let (limit, period) = (20u64, 1_000_000i64);
    let c = cfg(Algorithm::SlidingWindow, limit, 1_000_000, None);
    let mut state = KeyState::new(&c);
    let (mut now, mut admitted) = (T0, vec![]);
    for _ in 0..20_000 {
        now += i64::try_from(rng.below(20_000)).unwrap_or(0);
        let cost = 1 + rng.below(5);
        let live: u64 = admitted.iter().filter(|(t, _)| *t > now - period).map(|(_, u)| u).sum();
        let d = state.acquire(&c, cost, now).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(d.allowed, live + cost <= limit, "exact: admitted iff it fits");
        if d.allowed {
            admitted.push((now, cost));
        }
    }
    assert!(max_in_window(&admitted, period) <= limit);
}

#[test]
fn retry_after_is_exact() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let c = cfg(algorithm, 5, 1_000_000, None);
        let mut state = KeyState::new(&c);
        let mut now = T0;
        for step in 0..200 {
            let d = state.acquire(&c, 1, now).unwrap_or_else(|e| unreachable!("{e}"));
            if !d.allowed {
                let wait = i64::try_from(d.retry_after_us).unwrap_or(0);
                assert!(wait > 0);
                let early = state.peek(&c, now + wait - 1).unwrap_or_else(|e| unreachable!("{e}"));
                assert!(!early.allowed, "{algorithm:?} step {step}: admitted before retry_after");
                now += wait;
                assert!(state.acquire(&c, 1, now).is_ok_and(|d| d.allowed), "{algorithm:?}: refused at retry_after");
            }
            now += (step % 7) * 1_000;
        }
    }
}

#[test]
fn cost_above_capacity_is_refused_outright() {
    let sw = cfg(Algorithm::SlidingWindow, 100, 60_000_000, None);
    let err = KeyState::new(&sw).acquire(&sw, 101, T0);
    assert!(matches!(&err, Err(CoreError::InvalidArgument { reason }) if reason.contains("cost 101")), "{err:?}");
    let gcra = cfg(Algorithm::Gcra, 100, 60_000_000, None);
    assert!(KeyState::new(&gcra).acquire(&gcra, 2, T0).is_err());
    assert!(KeyState::new(&gcra).acquire(&gcra, 0, T0).is_err());
    assert!(KeyState::new(&gcra).acquire(&gcra, 1, -1).is_err());
}

#[test]
fn window_leases_never_exceed_the_limit_wherever_units_are_spent() {
    let mut rng = Rng(5);
    let (limit, period, lease) = (30u64, 1_000_000i64, 200_000u64);
    let c = cfg(Algorithm::SlidingWindow, limit, 1_000_000, None);
    let mut store = KeyState::new(&c);
    let mut spent = vec![];
    let mut now = T0;
    for _ in 0..3_000 {
        now += i64::try_from(rng.below(30_000)).unwrap_or(0);
        if rng.below(2) == 0 {
            let g = store.lease(&c, 1, 1 + rng.below(8), lease, now).unwrap_or_else(|e| unreachable!("{e}"));
            // Spend some units anywhere in [now, now + lease), hand the rest back at once.
            let spend = rng.below(g.granted + 1);
            for _ in 0..spend {
                spent.push((now + i64::try_from(rng.below(lease)).unwrap_or(0), 1));
            }
            if g.granted > spend {
                let back = store.refund(&c, g.token, g.granted - spend, now).unwrap_or(0);
                assert_eq!(back, g.granted - spend);
            }
        } else if store.acquire(&c, 1, now).is_ok_and(|d| d.allowed) {
            spent.push((now, 1));
        }
    }
    spent.sort_unstable();
    assert!(spent.len() > 500);
    assert!(max_in_window(&spent, period) <= limit);
}

#[test]
fn gcra_leases_keep_the_spacing_with_local_spending() {
    let c = cfg(Algorithm::Gcra, 10, 1_000_000, None);
    let t = i64::try_from(c.emission_us()).unwrap_or(1);
    let mut store = KeyState::new(&c);
    let mut pool = LeasePool::new(c);
    let mut rng = Rng(9);
    let mut spends = vec![];
    let mut now = T0;
    for _ in 0..4_000 {
        now += i64::try_from(rng.below(60_000)).unwrap_or(0);
        if rng.below(3) == 0 {
            if store.acquire(&c, 1, now).is_ok_and(|d| d.allowed) {
                spends.push(now);
            }
            continue;
        }
        match pool.spend("k", 1, now) {
            Ok(Spend::Decided(d)) if d.allowed => spends.push(now),
            Ok(Spend::Decided(_)) => {}
            Ok(Spend::NeedBlock { .. }) => {
                let g = store.lease(&c, 1, 4, 500_000, now).unwrap_or_else(|e| unreachable!("{e}"));
                let _ = pool.add("k", g.granted, g.token, g.start_us, g.end_us, now, now);
            }
            Err(e) => unreachable!("{e}"),
        }
        if rng.below(50) == 0 {
            for r in pool.drain(now) {
                let _ = store.refund(&c, r.token, r.units, now);
            }
        }
    }
    spends.sort_unstable();
    assert!(spends.len() > 300);
    assert!(spends.windows(2).all(|w| w[1] - w[0] >= t), "spacing of T broken");
}

#[test]
fn gcra_refund_only_while_last() {
    let c = cfg(Algorithm::Gcra, 10, 1_000_000, None);
    let mut g = Gcra::default();
    let grant = g.lease(&c, 1, 5, 1_000_000, T0);
    assert_eq!(grant.granted, 5);
    assert_eq!(grant.token, T0 + 500_000 + 50_000, "five slots and the slack");
    assert_eq!(g.refund(&c, grant.token, 3, T0), 3);
    assert_eq!(g.tat, T0 + 250_000);
    let other = g.lease(&c, 1, 1, 1_000_000, T0);
    assert_eq!(other.granted, 1);
    assert_eq!(g.refund(&c, grant.token, 2, T0), 0, "someone reserved after the block");
}

#[test]
fn window_peek_and_refund_of_expired_blocks() {
    let c = cfg(Algorithm::SlidingWindow, 4, 1_000_000, None);
    let mut w = Window::default();
    let g = w.lease(&c, 2, 4, 100_000, T0);
    assert_eq!((g.granted, g.remaining), (4, 0));
    assert!(!w.decide(&c, 1, T0 + 10).allowed);
    assert_eq!(w.refund(g.token, 4, T0 + 1_100_000), 0, "already expired");
    assert!(w.decide(&c, 4, T0 + 1_100_000).allowed);
}

#[test]
fn codec_round_trips_and_refuses_other_configs() {
    let c = cfg(Algorithm::SlidingWindow, 5, 1_000_000, None);
    let mut s = KeyState::new(&c);
    for i in 0..4 {
        let _ = s.acquire(&c, 1, T0 + i * 1000);
    }
    let bytes = s.encode(&c);
    assert_eq!(KeyState::decode(&c, &bytes), Ok(s));
    let other = cfg(Algorithm::SlidingWindow, 6, 1_000_000, None);
    assert!(matches!(KeyState::decode(&other, &bytes), Err(CoreError::Config { .. })));
}

#[test]
fn decoding_garbage_never_panics() {
    let c = cfg(Algorithm::SlidingWindow, 5, 1_000_000, None);
    let g = cfg(Algorithm::Gcra, 5, 1_000_000, None);
    let mut valid = KeyState::new(&c);
    let _ = valid.acquire(&c, 2, T0);
    let good = valid.encode(&c);
    let mut rng = Rng(1234);
    for round in 0..20_000 {
        let mut data = good.clone();
        match round % 3 {
            0 => data.truncate(usize::try_from(rng.below(good.len() as u64 + 1)).unwrap_or(0)),
            1 => {
                let at = usize::try_from(rng.below(good.len() as u64)).unwrap_or(0);
                data[at] ^= u8::try_from(1 + rng.below(255)).unwrap_or(1);
            }
            _ => data = (0..rng.below(64)).map(|_| u8::try_from(rng.below(256)).unwrap_or(0)).collect(),
        }
        for config in [&c, &g] {
            if let Ok(mut state) = KeyState::decode(config, &data) {
                let _ = state.acquire(config, 1, T0);
                let _ = state.peek(config, MAX_TIME_US);
            }
        }
    }
}

#[test]
fn table_validates_keys_and_isolates_them() {
    let c = cfg(Algorithm::SlidingWindow, 2, 1_000_000, None);
    let mut table = RateTable::new(c);
    assert!(table.acquire("bad key", 1, T0).is_err());
    assert!(table.acquire("a", 2, T0).is_ok_and(|d| d.allowed));
    assert!(table.acquire("a", 1, T0).is_ok_and(|d| !d.allowed));
    assert!(table.acquire("b", 1, T0).is_ok_and(|d| d.allowed));
    assert_eq!(table.live_keys(T0), 2);
    assert_eq!(table.reset("a", T0), Ok(true));
    assert!(table.acquire("a", 2, T0).is_ok_and(|d| d.allowed));
    assert_eq!(table.live_keys(T0 + 2_000_000), 0);
}

#[test]
fn admit_is_acquire_without_the_decision() {
    let mut rng = Rng(21);
    for c in [
        cfg(Algorithm::SlidingWindow, 7, 1_000_000, None),
        cfg(Algorithm::SlidingWindow, 3000, 1_000_000, None),
        cfg(Algorithm::Gcra, 7, 1_000_000, Some(3)),
    ] {
        let (mut by_admit, mut by_acquire) = (RateTable::new(c), RateTable::new(c));
        let mut now = T0;
        for _ in 0..20_000 {
            now += i64::try_from(rng.below(60_000)).unwrap_or(0);
            let key = if rng.below(4) == 0 { "b" } else { "a" };
            let cost = 1 + rng.below(c.capacity().min(5));
            let admitted = by_admit.admit(key, cost, now);
            let decided = by_acquire.acquire(key, cost, now).map(|d| d.allowed);
            assert_eq!(admitted, decided, "{c:?} at {now}");
        }
        assert_eq!(by_admit.peek("a", now), by_acquire.peek("a", now), "the same state");
        assert!(by_admit.admit("bad key", 1, now).is_err() && by_admit.admit("a", 0, now).is_err());
    }
}

#[test]
fn refused_before_only_promises_refusals() {
    let mut rng = Rng(77);
    for c in [
        cfg(Algorithm::SlidingWindow, 5, 1_000_000, None),
        cfg(Algorithm::SlidingWindow, 3000, 1_000_000, None),
        cfg(Algorithm::Gcra, 7, 1_000_000, Some(3)),
        cfg(Algorithm::Gcra, 50, 1_000_000, None),
    ] {
        let mut state = KeyState::new(&c);
        let (mut now, mut proven) = (T0, 0);
        for _ in 0..20_000 {
            now += i64::try_from(rng.below(if c.limit > 100 { 300 } else { 40_000 })).unwrap_or(0);
            let _ = state.admit(&c, 1 + rng.below(c.capacity().min(4)), now);
            let cost = 1 + rng.below(c.capacity().min(4));
            if let Some(until) = state.refused_before(&c, cost) {
                let at = now + i64::try_from(rng.below(60_000)).unwrap_or(0);
                if at < until {
                    assert_eq!(
                        state.clone().admit(&c, cost, at),
                        Ok(false),
                        "{c:?}: refused before {until}, asked at {at}"
                    );
                    proven += 1;
                }
            }
        }
        assert!(proven > 1000, "{c:?}: {proven}");
        assert_eq!(state.refused_before(&c, 0), None);
        assert_eq!(state.refused_before(&c, c.capacity() + 1), None);
    }
}
