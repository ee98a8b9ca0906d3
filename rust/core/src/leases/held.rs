//! The leases one client holds: deadlines, renewal schedule, highest fence seen.

use std::collections::HashMap;

use super::rng::XorShift;
use super::{check_resources, check_time, check_token, check_ttl, invalid};
use crate::error::CoreError;

/// A lease becomes due for renewal this fraction of its ttl after its last renewal was sent.
pub const RENEW_FRACTION: f64 = 1.0 / 3.0;
/// The renewer wakes for a due lease at most this much later (as a fraction of ttl/3),
/// drawn per renewal, so coordinators do not renew in lockstep and due leases batch up.
pub const RENEW_JITTER: f64 = 0.2;
/// After a failed renewal the next try comes after ttl * this (bounded below and above).
const RETRY_FRACTION: f64 = 1.0 / 12.0;
const RETRY_MIN: f64 = 0.005;
const RETRY_MAX: f64 = 1.0;

#[derive(Debug, Clone, PartialEq)]
pub struct HeldLease {
    pub resources: Vec<String>,
    pub fences: Vec<u64>,
    pub ttl: f64,
    /// Local time by which the lease is lost unless renewed.
    pub deadline: f64,
    /// Earliest time a renewal may be sent (never more often than every ttl/3).
    pub renew_from: f64,
    /// Time the renewer wakes up to renew it (renew_from plus jitter).
    pub renew_by: f64,
    /// Renewals failed in a row.
    pub failures: u32,
}

#[derive(Debug, Clone)]
pub struct HeldLeases {
    leases: HashMap<String, HeldLease>,
    highest: HashMap<String, u64>,
    rng: XorShift,
}

impl HeldLeases {
    pub fn new(seed: u64) -> Self {
        HeldLeases { leases: HashMap::new(), highest: HashMap::new(), rng: XorShift::new(seed) }
    }

    fn schedule(&mut self, sent_at: f64, ttl: f64) -> (f64, f64) {
        let from = sent_at + ttl * RENEW_FRACTION;
        (from, from + ttl * RENEW_FRACTION * RENEW_JITTER * self.rng.unit())
    }

    /// Record a granted lease; returns its deadline (`sent_at + ttl`).
    pub fn insert(
        &mut self,
        token: &str,
        resources: Vec<String>,
        fences: Vec<u64>,
        ttl: f64,
        sent_at: f64,
    ) -> Result<f64, CoreError> {
        check_token("token", token)?;
        check_resources(&resources)?;
        check_ttl("ttl", ttl)?;
        check_time("sent_at", sent_at)?;
        if fences.len() != resources.len() {
            return Err(invalid(format!(
                "{} fences given for {} resources; give one per resource",
                fences.len(),
                resources.len()
            )));
        }
        if self.leases.contains_key(token) {
            return Err(invalid("this lease token is already held".into()));
        }
        let (renew_from, renew_by) = self.schedule(sent_at, ttl);
        let deadline = sent_at + ttl;
        let lease = HeldLease { resources, fences, ttl, deadline, renew_from, renew_by, failures: 0 };
        self.leases.insert(token.to_owned(), lease);
        Ok(deadline)
    }

    /// A renewal sent at `sent_at` succeeded (with a new ttl, if given); returns the new
    /// deadline, or None when the token is not held here.
    pub fn renewed(&mut self, token: &str, sent_at: f64, ttl: Option<f64>) -> Result<Option<f64>, CoreError> {
        check_time("sent_at", sent_at)?;
        if let Some(t) = ttl {
            check_ttl("ttl", t)?;
        }
        let Some(current) = self.leases.get(token).map(|l| l.ttl) else {
            return Ok(None);
        };
        let ttl = ttl.unwrap_or(current);
        let (renew_from, renew_by) = self.schedule(sent_at, ttl);
        Ok(self.leases.get_mut(token).map(|lease| {
            lease.ttl = ttl;
            lease.deadline = sent_at + ttl;
            lease.renew_from = renew_from;
            lease.renew_by = renew_by;
            lease.failures = 0;
            lease.deadline
        }))
    }

    /// A renewal failed without an answer; returns when to try again, or None when no
    /// try fits before the deadline (the lease then simply runs out).
    pub fn renewal_failed(&mut self, token: &str, now: f64) -> Result<Option<f64>, CoreError> {
        check_time("now", now)?;
        let jitter = 0.5 + 0.5 * self.rng.unit();
        let Some(lease) = self.leases.get_mut(token) else {
            return Ok(None);
        };
        lease.failures = lease.failures.saturating_add(1);
        let wait = (lease.ttl * RETRY_FRACTION).clamp(RETRY_MIN, RETRY_MAX) * jitter;
        let at = now + wait;
        if at >= lease.deadline {
            lease.renew_from = f64::INFINITY;
            lease.renew_by = f64::INFINITY;
            return Ok(None);
        }
        lease.renew_from = at;
        lease.renew_by = at;
        Ok(Some(at))
    }

    /// Tokens that may be renewed now, earliest deadline first (the renewer sends them
    /// in one batch when the first of them reaches its `renew_by`).
    pub fn due(&self, now: f64) -> Vec<String> {
        let mut found: Vec<(&String, f64)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.renew_from <= now && l.deadline > now)
            .map(|(t, l)| (t, l.deadline))
            .collect();
        found.sort_by(|a, b| a.1.total_cmp(&b.1));
        found.into_iter().map(|(t, _)| t.clone()).collect()
    }

    /// Remove and return the leases whose deadline has passed.
    pub fn expired(&mut self, now: f64) -> Vec<String> {
        let gone: Vec<String> = self.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(t, _)| t.clone()).collect();
        for token in &gone {
            self.leases.remove(token);
        }
        gone
    }

    pub fn remove(&mut self, token: &str) -> bool {
        self.leases.remove(token).is_some()
    }

    /// When the renewer must next wake: the earliest renewal or deadline; None when idle.
    pub fn next_wakeup(&self) -> Option<f64> {
        self.leases.values().map(|l| l.renew_by.min(l.deadline)).min_by(f64::total_cmp)
    }

    /// Note a fence granted for `resource`; a fence not above the highest seen before is a
    /// regression (the backend lost acknowledged writes) and is refused. With `floor`, the
    /// comparison is with the highest seen when the granting request was *sent* (what
    /// [`highest_fence`](Self::highest_fence) said then; 0: none), so grants of concurrent
    /// requests may arrive in any order; without, with the highest seen so far.
    pub fn observe_fence(&mut self, resource: &str, fence: u64, floor: Option<u64>) -> Result<(), CoreError> {
        check_token("resource", resource)?;
        let highest = self.highest.get(resource).copied().unwrap_or(0);
        let limit = floor.unwrap_or(highest);
        if limit > 0 && fence <= limit {
            return Err(CoreError::FenceRegression { resource: resource.to_owned(), fence, highest: limit });
        }
        self.highest.insert(resource.to_owned(), highest.max(fence));
        Ok(())
    }

    pub fn highest_fence(&self, resource: &str) -> Option<u64> {
        self.highest.get(resource).copied()
    }

    pub fn get(&self, token: &str) -> Option<&HeldLease> {
        self.leases.get(token)
    }

    pub fn tokens(&self) -> Vec<String> {
        self.leases.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn deadline_counts_from_send_time_and_renewal_is_jittered_after_a_third() {
        let mut held = HeldLeases::new(1);
        let deadline = held.insert("t", names(&["a"]), vec![1], 30.0, 100.0).unwrap_or_default();
        assert_eq!(deadline, 130.0);
        let lease = held.get("t").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(lease.renew_from, 110.0);
        assert!(lease.renew_by >= 110.0 && lease.renew_by <= 112.0);
        assert!(held.due(109.9).is_empty());
        assert_eq!(held.due(110.0), names(&["t"]));
        assert_eq!(held.next_wakeup(), Some(lease.renew_by));
    }

    #[test]
    fn renewal_moves_the_deadline_and_failures_back_off_within_it() {
        let mut held = HeldLeases::new(2);
        held.insert("t", names(&["a"]), vec![1], 1.2, 0.0).ok();
        assert_eq!(held.renewed("t", 0.5, None).ok().flatten(), Some(1.7));
        assert_eq!(held.renewed("nope", 0.5, None).ok().flatten(), None);
        let next = held.renewal_failed("t", 0.9).ok().flatten();
        assert!(matches!(next, Some(at) if at > 0.9 && at < 1.0), "{next:?}");
        // Too close to the deadline: no more tries; the lease runs out.
        assert_eq!(held.renewal_failed("t", 1.69).ok().flatten(), None);
        assert!(held.due(1.695).is_empty());
        assert_eq!(held.next_wakeup(), Some(1.7));
        assert_eq!(held.expired(1.7), names(&["t"]));
        assert!(held.is_empty());
    }

    #[test]
    fn fences_must_increase() {
        let mut held = HeldLeases::new(3);
        assert!(held.observe_fence("r", 5, None).is_ok());
        assert!(held.observe_fence("r", 7, Some(5)).is_ok());
        // A concurrent request sent when 5 was the highest may come back after 7.
        assert!(held.observe_fence("r", 6, Some(5)).is_ok());
        assert_eq!(held.highest_fence("r"), Some(7));
        assert_eq!(
            held.observe_fence("r", 7, Some(7)),
            Err(CoreError::FenceRegression { resource: "r".into(), fence: 7, highest: 7 })
        );
        assert!(held.observe_fence("r", 2, Some(7)).is_err());
        assert!(held.observe_fence("other", 1, None).is_ok());
        assert_eq!(held.highest_fence("r"), Some(7));
        // Without a floor: against the highest seen so far.
        assert!(held.observe_fence("r", 7, None).is_err());
        assert!(held.observe_fence("r", 8, None).is_ok());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut held = HeldLeases::new(4);
        assert!(held.insert("", names(&["a"]), vec![1], 1.0, 0.0).is_err());
        assert!(held.insert("t", vec![], vec![], 1.0, 0.0).is_err());
        assert!(held.insert("t", names(&["a", "a"]), vec![1, 2], 1.0, 0.0).is_err());
        assert!(held.insert("t", names(&["a"]), vec![], 1.0, 0.0).is_err());
        assert!(held.insert("t", names(&["a"]), vec![1], f64::NAN, 0.0).is_err());
        assert!(held.insert("t", names(&["a"]), vec![1], 0.0, 0.0).is_err());
        assert!(held.insert("t", names(&["a"]), vec![1], 1.0, f64::INFINITY).is_err());
        assert!(held.insert("t", names(&["a"]), vec![1], 1.0, 0.0).is_ok());
        assert!(held.insert("t", names(&["a"]), vec![1], 1.0, 0.0).is_err());
        assert!(held.renewed("t", f64::NAN, None).is_err());
        assert!(held.renewed("t", 0.0, Some(-1.0)).is_err());
        assert!(held.renewal_failed("t", f64::NAN).is_err());
    }
}
