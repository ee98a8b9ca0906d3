//! The exact sliding window: a log of `(expiry, cost)` entries, merged by expiry.
//!
//! A unit admitted at `t` counts until `t + period` (its expiry); a request of `cost`
//! at `now` is admitted iff the live units (expiry > now) plus `cost` fit in `limit`.
//! For every window `[a, a + period)`, the last admission inside it saw every earlier
//! admission of that window still live, so the window never holds more than `limit`.
//!
//! A leased block of `k` units may be spent at any moment of `[now, now + lease)`, so
//! its entry expires at `now + lease + period`: whenever one of its units is spent,
//! every later decision within a period still counts it. A refund removes unspent units
//! from that entry (found by its expiry, the lease's token). Expiries are rounded up to
//! the configured granularity, so a unit may count a little longer, never shorter.

use super::log::Log;
use super::{non_negative, to_i64, Decision, Grant, RateConfig};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// expiry (microseconds) -> units admitted that expire then
    pub entries: Log,
    /// the sum of `entries`' units
    pub used: u64,
}

impl Window {
    #[inline]
    fn expiry(cfg: &RateConfig, at: i64) -> i64 {
        let g = to_i64(cfg.granularity_us());
        let raw = at.saturating_add(to_i64(cfg.period_us));
        if g == 1 {
            return raw; // the usual case; spares a division on every admission
        }
        raw.saturating_add(g - 1) / g * g
    }

    /// Drop expired entries.
    #[inline]
    pub fn purge(&mut self, now: i64) {
        self.used = self.used.saturating_sub(self.entries.purge_through(now));
    }

    fn live_used(&self, now: i64) -> u64 {
        self.used.saturating_sub(self.entries.units_through(now))
    }

    /// The earliest time at which the live units drop to `target` or below.
    fn freed_at(&self, now: i64, target: u64) -> i64 {
        let mut live = self.live_used(now);
        for (expiry, cost) in self.entries.after(now) {
            if live <= target {
                break;
            }
            live = live.saturating_sub(cost);
            if live <= target {
                return expiry;
            }
        }
        now
    }

    fn reset_after(&self, now: i64) -> u64 {
        self.entries.last_expiry().map_or(0, |e| non_negative(e - now))
    }

    #[inline]
    fn add(&mut self, expiry: i64, units: u64) {
        self.entries.add(expiry, units);
        self.used += units;
    }

    /// The decision for `cost` at `now`; admitted units are logged.
    pub fn acquire(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> Decision {
        self.purge(now);
        let decision = self.decide(cfg, cost, now);
        if decision.allowed {
            self.add(Self::expiry(cfg, now), cost);
            return Decision { reset_after_us: self.reset_after(now), ..decision };
        }
        decision
    }

    /// `acquire(cfg, cost, now).allowed`, with the same change of state, computing nothing
    /// else: once expired entries are purged, the units logged are exactly the live ones.
    #[inline]
    pub fn admit(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> bool {
        self.purge(now);
        let allowed = self.used.saturating_add(cost) <= cfg.limit;
        if allowed {
            self.add(Self::expiry(cfg, now), cost);
        }
        allowed
    }

    /// A time before which a request of `cost` is refused whatever `now` is: while no
    /// logged unit has expired the log holds `used` live units, so when those and `cost`
    /// overflow the limit, every `now` before the first expiry refuses. None: no such time.
    #[inline]
    pub fn refused_before(&self, cfg: &RateConfig, cost: u64) -> Option<i64> {
        if self.used.saturating_add(cost) <= cfg.limit {
            return None;
        }
        self.entries.first_expiry()
    }

    /// What `acquire` would answer, without changing anything.
    pub fn decide(&self, cfg: &RateConfig, cost: u64, now: i64) -> Decision {
        let used = self.live_used(now);
        if used.saturating_add(cost) <= cfg.limit {
            let after = used + cost;
            let reset = non_negative(Self::expiry(cfg, now) - now).max(self.reset_after(now));
            return Decision { allowed: true, retry_after_us: 0, remaining: cfg.limit - after, reset_after_us: reset };
        }
        let target = cfg.limit.saturating_sub(cost);
        Decision {
            allowed: false,
            retry_after_us: non_negative(self.freed_at(now, target) - now).max(1),
            remaining: cfg.limit.saturating_sub(used),
            reset_after_us: self.reset_after(now),
        }
    }

    /// Grant a block of `min_units..=max_units` units, spendable for `lease_us` from `now`.
    pub fn lease(&mut self, cfg: &RateConfig, min_units: u64, max_units: u64, lease_us: u64, now: i64) -> Grant {
        self.purge(now);
        let free = cfg.limit.saturating_sub(self.used);
        if free < min_units {
            let retry = self.freed_at(now, cfg.limit.saturating_sub(min_units)) - now;
            return Grant::refused(non_negative(retry).max(1), free);
        }
        let granted = free.min(max_units);
        let expiry = Self::expiry(cfg, now.saturating_add(to_i64(lease_us)));
        self.add(expiry, granted);
        Grant {
            granted,
            retry_after_us: 0,
            token: expiry,
            start_us: 0,
            end_us: lease_us,
            remaining: cfg.limit.saturating_sub(self.used),
        }
    }

    /// Remove up to `units` unspent units from the entry expiring at `token`.
    pub fn refund(&mut self, token: i64, units: u64, now: i64) -> u64 {
        self.purge(now);
        let back = self.entries.take(token, units);
        self.used = self.used.saturating_sub(back);
        back
    }

    /// Microseconds until every logged unit has expired (0: idle now).
    pub fn ttl_us(&self, now: i64) -> u64 {
        self.reset_after(now)
    }
}
