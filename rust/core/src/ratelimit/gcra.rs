//! GCRA (the generic cell rate algorithm): one number per key, the theoretical arrival
//! time `tat` of the next unit. `T` is the emission interval and `tau = burst * T`.
//!
//! A request of `cost` at `now` is admitted iff `max(tat, now) + cost*T - now <= tau`;
//! admitting it sets `tat = max(tat, now) + cost*T`. With burst 1, admissions are at
//! least `T` apart, so a window of `period = limit*T` (or less, T being rounded up)
//! holds at most `limit`.
//!
//! Leases (burst 1 only) reserve the next `k` slots `[S, S + k*T)`, `S = max(tat, now)`,
//! that start within the lease's horizon, plus a small slack (see [`Gcra::slack`]), and
//! set `tat = S + k*T + slack`. The holder spends
//! them locally no faster than one per `T`, from `S` on, and only while its last spend
//! plus `T` stays within the block's end; so, merged with everyone else's admissions, the
//! spacing of `T` still holds. A refund hands back the unspent tail of the block, and
//! only while nobody has reserved after it (`tat` still equals the block's end).

use super::{non_negative, to_i64, Decision, Grant, RateConfig};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gcra {
    pub tat: i64,
}

impl Gcra {
    fn interval(cfg: &RateConfig) -> (i64, i64) {
        let t = to_i64(cfg.emission_us());
        (t, t.saturating_mul(to_i64(cfg.burst)))
    }

    /// The decision for `cost` at `now`; the state changes only when admitted.
    pub fn acquire(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> Decision {
        let decision = self.decide(cfg, cost, now);
        if decision.allowed {
            let (t, _) = Self::interval(cfg);
            self.tat = self.tat.max(now).saturating_add(to_i64(cost).saturating_mul(t));
        }
        decision
    }

    /// A time before which a request of `cost` is refused whatever `now` is (it is refused
    /// exactly when `now < tat + cost*T - tau`; at or after `tat` every valid cost passes).
    #[inline]
    pub fn refused_before(&self, cfg: &RateConfig, cost: u64) -> i64 {
        let (t, tau) = Self::interval(cfg);
        self.tat.saturating_add(to_i64(cost).saturating_mul(t)).saturating_sub(tau)
    }

    /// What `acquire` would answer, without changing anything.
    pub fn decide(&self, cfg: &RateConfig, cost: u64, now: i64) -> Decision {
        let (t, tau) = Self::interval(cfg);
        let base = self.tat.max(now);
        let new_tat = base.saturating_add(to_i64(cost).saturating_mul(t));
        let allow_at = new_tat - tau;
        if now >= allow_at {
            Decision {
                allowed: true,
                retry_after_us: 0,
                remaining: non_negative((now + tau - new_tat) / t),
                reset_after_us: non_negative(new_tat - now),
            }
        } else {
            Decision {
                allowed: false,
                retry_after_us: non_negative(allow_at - now),
                remaining: non_negative((now + tau - base) / t),
                reset_after_us: non_negative(self.tat - now),
            }
        }
    }

    /// Extra time reserved after a leased block. Its holder must spend the last slot no
    /// later than its start (in the store's time), which it can only place within the
    /// round trip's uncertainty; this slack lets a round trip up to its length through.
    pub fn slack(t: i64, horizon_us: u64) -> i64 {
        t.min((to_i64(horizon_us) / 20).max(1_000))
    }

    /// Reserve up to `max_units` slots starting within `horizon_us` of `now` (at least `min_units`).
    pub fn lease(&mut self, cfg: &RateConfig, min_units: u64, max_units: u64, horizon_us: u64, now: i64) -> Grant {
        let (t, _) = Self::interval(cfg);
        let start = self.tat.max(now);
        let reach = now + to_i64(horizon_us);
        let slots = if start > reach { 0 } else { non_negative((reach - start) / t) + 1 };
        if slots < min_units {
            // The min_units-th slot must start within the horizon.
            let retry = start + (to_i64(min_units) - 1) * t - reach;
            return Grant::refused(non_negative(retry).max(1), 0);
        }
        let granted = slots.min(max_units);
        let end = start + to_i64(granted) * t + Self::slack(t, horizon_us);
        self.tat = end;
        Grant {
            granted,
            retry_after_us: 0,
            token: end,
            start_us: non_negative(start - now),
            end_us: non_negative(end - now),
            remaining: 0,
        }
    }

    /// Hand back up to `units` slots at the end of the block that ends at `token`; returns
    /// how many were handed back (0 when someone reserved after the block).
    pub fn refund(&mut self, cfg: &RateConfig, token: i64, units: u64, now: i64) -> u64 {
        let (t, _) = Self::interval(cfg);
        if self.tat != token || token <= now || units == 0 {
            return 0;
        }
        let back = to_i64(units).saturating_mul(t);
        let new_tat = token.saturating_sub(back).max(now);
        let refunded = non_negative((token - new_tat) / t);
        self.tat = token - to_i64(refunded) * t;
        refunded
    }

    /// Microseconds until the key is idle again (0: idle now).
    pub fn ttl_us(&self, now: i64) -> u64 {
        non_negative(self.tat - now)
    }
}
