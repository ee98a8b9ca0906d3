#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::XorShift;
use lockstep_core::leases::{Acquire, AcquireRequest, HeldLeases, LeaseTable, Resource, HANDOFF_RECHECK};

fn req(token: &str, resources: &[&str], slots: u32, queue: bool) -> AcquireRequest {
    AcquireRequest {
        token: token.into(),
        owner: format!("owner-{token}"),
        session: format!("s-{token}"),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        slots,
        ttl: 10.0,
        queue_ttl: queue.then_some(3.0),
        floors: vec![],
    }
}

fn names(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn fences(outcome: Acquire) -> Vec<u64> {
    match outcome {
        Acquire::Granted { fences, .. } => fences,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn one_holder_and_fences_strictly_increase() {
    let mut t = LeaseTable::new();
    assert_eq!(fences(t.acquire(&req("a", &["r"], 1, false), 0.0).unwrap()), vec![1]);
    match t.acquire(&req("b", &["r"], 1, false), 0.0).unwrap() {
        Acquire::Busy { blockers, retry_in, queued } => {
            assert_eq!(blockers[0].holders, vec!["owner-a".to_owned()]);
            assert_eq!(retry_in, Some(10.0));
            assert!(!queued);
        }
        other => panic!("{other:?}"),
    }
    // Idempotent by token: the same grant again.
    assert_eq!(fences(t.acquire(&req("a", &["r"], 1, false), 1.0).unwrap()), vec![1]);
    let released = t.release("a", &names(&["r"]), 2.0).unwrap();
    assert!(released.held);
    assert!(!t.release("a", &names(&["r"]), 2.0).unwrap().held);
    assert_eq!(fences(t.acquire(&req("b", &["r"], 1, false), 3.0).unwrap()), vec![2]);
    // Expiry frees it; the next fence is still higher.
    assert_eq!(fences(t.acquire(&req("c", &["r"], 1, false), 13.5).unwrap()), vec![3]);
}

#[test]
fn waiters_are_served_first_come_first_served() {
    let mut t = LeaseTable::new();
    fences(t.acquire(&req("h", &["r"], 1, true), 0.0).unwrap());
    for w in ["w1", "w2", "w3"] {
        assert!(matches!(t.acquire(&req(w, &["r"], 1, true), 0.1).unwrap(), Acquire::Busy { queued: true, .. }));
    }
    let released = t.release("h", &names(&["r"]), 0.2).unwrap();
    assert_eq!(released.wake, names(&["w1"]));
    // A newcomer and a later waiter cannot jump the head.
    assert!(matches!(t.acquire(&req("new", &["r"], 1, false), 0.3).unwrap(), Acquire::Busy { .. }));
    match t.acquire(&req("w2", &["r"], 1, true), 0.3).unwrap() {
        Acquire::Busy { blockers, .. } => assert_eq!(blockers[0].waiting_ahead, vec!["owner-w1".to_owned()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(fences(t.acquire(&req("w1", &["r"], 1, true), 0.3).unwrap()), vec![2]);
    // A waiter that leaves (timed out) wakes the next one.
    let gone = t.release("w2", &names(&["r"]), 0.4).unwrap();
    assert!(!gone.held);
    assert!(gone.wake.is_empty(), "w1 holds it: nobody can take it yet");
    let released = t.release("w1", &names(&["r"]), 0.5).unwrap();
    assert_eq!(released.wake, names(&["w3"]));
}

#[test]
fn a_dead_waiter_expires_out_of_the_queue() {
    let mut t = LeaseTable::new();
    fences(t.acquire(&req("h", &["r"], 1, true), 0.0).unwrap());
    t.acquire(&req("dead", &["r"], 1, true), 0.0).unwrap();
    t.acquire(&req("alive", &["r"], 1, true), 1.0).unwrap();
    t.release("h", &names(&["r"]), 1.5).unwrap();
    match t.acquire(&req("alive", &["r"], 1, true), 2.0).unwrap() {
        // Free, but "dead" is ahead: look again shortly (it may be taking the slot right now).
        Acquire::Busy { retry_in, .. } => assert_eq!(retry_in, Some(HANDOFF_RECHECK)),
        other => panic!("{other:?}"),
    }
    assert_eq!(fences(t.acquire(&req("alive", &["r"], 1, true), 3.0).unwrap()), vec![2]);
}

#[test]
fn semaphore_slots_and_fifo() {
    let mut t = LeaseTable::new();
    assert_eq!(fences(t.acquire(&req("a", &["s"], 2, true), 0.0).unwrap()), vec![1]);
    assert_eq!(fences(t.acquire(&req("b", &["s"], 2, true), 0.0).unwrap()), vec![2]);
    assert!(matches!(t.acquire(&req("c", &["s"], 2, true), 0.0).unwrap(), Acquire::Busy { .. }));
    assert!(matches!(t.acquire(&req("d", &["s"], 2, true), 0.0).unwrap(), Acquire::Busy { .. }));
    t.release("a", &names(&["s"]), 0.1).unwrap();
    let rel = t.release("b", &names(&["s"]), 0.1).unwrap();
    assert_eq!(rel.wake, names(&["c", "d"]));
    assert_eq!(t.holders("s", 0.1).len(), 0);
    assert_eq!(fences(t.acquire(&req("d", &["s"], 2, true), 0.2).unwrap()), vec![3]);
    assert_eq!(fences(t.acquire(&req("c", &["s"], 2, true), 0.2).unwrap()), vec![4]);
}

#[test]
fn many_resources_all_or_nothing_without_deadlock() {
    let mut t = LeaseTable::new();
    fences(t.acquire(&req("x", &["b"], 1, false), 0.0).unwrap());
    match t.acquire(&req("m", &["a", "b", "c"], 1, false), 0.0).unwrap() {
        Acquire::Busy { blockers, .. } => {
            assert_eq!(blockers.len(), 1);
            assert_eq!(blockers[0].resource, "b");
        }
        other => panic!("{other:?}"),
    }
    assert!(t.holders("a", 0.0).is_empty(), "nothing taken on a conflict");
    // Two waiters wanting overlapping sets in opposite orders: the earlier one goes first.
    t.acquire(&req("p", &["a", "b"], 1, true), 0.1).unwrap();
    t.acquire(&req("q", &["b", "a"], 1, true), 0.2).unwrap();
    let rel = t.release("x", &names(&["b"]), 0.3).unwrap();
    assert_eq!(rel.wake, names(&["p"]));
    assert!(matches!(t.acquire(&req("q", &["b", "a"], 1, true), 0.3).unwrap(), Acquire::Busy { .. }));
    assert_eq!(fences(t.acquire(&req("p", &["a", "b"], 1, true), 0.3).unwrap()), vec![1, 2]);
}

#[test]
fn floors_raise_a_counter_that_went_backwards() {
    let mut t = LeaseTable::new();
    let mut r = req("a", &["r"], 1, false);
    r.floors = vec![41];
    match t.acquire(&r, 0.0).unwrap() {
        Acquire::Granted { fences, raised } => {
            assert_eq!(fences, vec![42]);
            assert_eq!(raised, names(&["r"]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fenced_check_and_sessions() {
    let mut t = LeaseTable::new();
    fences(t.acquire(&req("a", &["r"], 1, false), 0.0).unwrap());
    assert!(t.is_held("a", "r", 1, 1.0));
    assert!(!t.is_held("a", "r", 2, 1.0));
    assert!(!t.is_held("a", "r", 1, 10.0), "expired");
    assert!(t.renew("a", &names(&["r"]), 10.0, 5.0).unwrap());
    assert!(t.is_held("a", "r", 1, 14.0));
    assert!(!t.renew("zz", &names(&["r"]), 10.0, 5.0).unwrap());
    t.acquire(&req("w", &["r"], 1, true), 5.0).unwrap();
    let rel = t.release_session("s-a", 6.0).unwrap();
    assert!(rel.held);
    assert_eq!(rel.wake, names(&["w"]));
}

#[test]
fn load_and_dump_round_trip() {
    let mut t = LeaseTable::new();
    fences(t.acquire(&req("a", &["r"], 1, true), 0.0).unwrap());
    t.acquire(&req("b", &["r"], 1, true), 0.0).unwrap();
    let dumped: Resource = t.dump("r").cloned().unwrap();
    let mut other = LeaseTable::new();
    other.load("r", dumped.clone()).unwrap();
    assert_eq!(other.dump("r"), Some(&dumped));
    assert!(other.load("r", Resource { slots: 0, ..dumped.clone() }).is_err());
}

#[test]
fn random_operations_never_panic_and_keep_the_invariants() {
    let mut rng = XorShift::new(0xC0FFEE);
    let mut t = LeaseTable::new();
    let mut highest = std::collections::HashMap::<String, u64>::new();
    let pool = ["r0", "r1", "r2", "r3"];
    let mut now = 0.0;
    for _ in 0..20_000 {
        now += (rng.below(100) as f64) / 100.0;
        let token = format!("t{}", rng.below(12));
        let n = 1 + rng.below(3);
        let mut res: Vec<&str> = Vec::new();
        for _ in 0..n {
            let r = pool[rng.below(pool.len())];
            if !res.contains(&r) {
                res.push(r);
            }
        }
        let slots = if res.len() == 1 && res[0] == "r3" { 3 } else { 1 };
        match rng.below(5) {
            0 | 1 => {
                let before: Vec<bool> =
                    res.iter().map(|r| t.holders(r, now).iter().any(|h| h.token == token)).collect();
                if let Ok(Acquire::Granted { fences, .. }) =
                    t.acquire(&req(&token, &res, slots, rng.below(2) == 0), now)
                {
                    for ((r, f), held) in res.iter().zip(fences).zip(before) {
                        let h = highest.entry((*r).to_owned()).or_insert(0);
                        if held {
                            assert!(f <= *h, "a renewed grant keeps its fence");
                        } else {
                            assert!(f > *h, "a new grant gets a higher fence");
                            *h = f;
                        }
                    }
                }
            }
            2 => {
                t.release(&token, &names(&res), now).unwrap();
            }
            3 => {
                t.renew(&token, &names(&res), 10.0, now).unwrap();
            }
            _ => {
                t.expire(now).unwrap();
            }
        }
        for r in pool {
            let live = t.holders(r, now);
            let limit = if r == "r3" { 3 } else { 1 };
            assert!(live.len() <= limit, "{r}: {live:?}");
        }
    }
    // Bad values are errors.
    let mut bad = req("t", &["r"], 1, false);
    bad.ttl = f64::NAN;
    assert!(t.acquire(&bad, 0.0).is_err());
    assert!(t.acquire(&req("t", &["r"], 0, false), 0.0).is_err());
    assert!(t.acquire(&req("", &["r"], 1, false), 0.0).is_err());
    assert!(t.acquire(&req("t", &[], 1, false), 0.0).is_err());
    assert!(t.acquire(&req("t", &["r", "r"], 1, false), 0.0).is_err());
    assert!(t.acquire(&req("t", &["r"], 1, false), f64::NAN).is_err());
    let mut held = HeldLeases::new(9);
    assert!(held.observe_fence("", 1, None).is_err());
}
