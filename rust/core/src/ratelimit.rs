//! Rate-limit arithmetic: GCRA and an exact sliding window, for many keys.
//!
//! Time is passed in, as whole microseconds since the Unix epoch (`now`); nothing here
//! reads a clock or does I/O. Every quantity is an integer, so the Redis Lua scripts
//! (whose numbers are doubles, exact below 2**53) compute exactly the same decisions.
//!
//! The guarantee, for the default configuration of either algorithm: a limit of
//! `limit` per `period` never admits more than `limit` units in any window of length
//! `period` (half-open, anywhere on the time line).
//!
//! * **GCRA** spaces admissions by the emission interval `T = ceil(period / limit)`
//!   (rounded *up* to whole microseconds, so it is never faster than asked). `burst`
//!   (default 1) is how many units may pass at once after an idle spell: admitted
//!   iff `max(tat, now) + cost*T - now <= burst*T`. With burst `b`, any window of
//!   length `period` admits at most `limit + b - 1` units; so burst 1 keeps the
//!   per-window guarantee, and a request costing more than `burst` can never pass.
//! * **Sliding window** is a log of (expiry, cost) entries: a unit admitted at `t`
//!   counts until `t + period`. Admitted iff the live units plus `cost` fit in
//!   `limit`. Exact, never an estimate. For limits above [`WINDOW_SLOTS`], expiries
//!   are rounded *up* to `period / WINDOW_SLOTS` to bound the log, which can only
//!   count a unit a little longer (never shorter).
//!
//! Leases hand a block of units to one process, which spends them locally
//! ([`lease::LeasePool`]); the store counts the whole block as spent when it grants it,
//! for as long as any unit of it could still be spent (see `window.rs`, `gcra.rs`).

mod codec;
pub mod gcra;
mod key;
pub mod lease;
pub mod log;
mod parse;
mod slots;
pub mod table;
pub mod window;

use crate::error::CoreError;

pub use codec::KeyState;
pub use lease::{LeasePool, Spend};
pub use parse::parse_rate;
pub use table::{HashedKey, RateTable, SlotRef, TableKey};

/// Largest `limit` (units per period) accepted.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// Longest period accepted: 366 days, in microseconds.
pub const MAX_PERIOD_US: u64 = 366 * 86_400 * 1_000_000;
/// Latest `now` accepted (about the year 2112): keeps every sum below 2**53.
pub const MAX_TIME_US: i64 = 1 << 52;
/// A sliding window with a larger limit rounds expiries to `period / WINDOW_SLOTS`.
pub const WINDOW_SLOTS: u64 = 1024;

/// Which arithmetic a limit uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Gcra,
    SlidingWindow,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Result<Self, CoreError> {
        match name {
            "gcra" => Ok(Algorithm::Gcra),
            "sliding_window" => Ok(Algorithm::SlidingWindow),
            other => Err(config(format!(
                "unknown rate-limit algorithm {:?}; use \"gcra\" or \"sliding_window\"",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }
}

pub(crate) fn config(reason: String) -> CoreError {
    CoreError::Config { reason }
}

pub(crate) fn invalid(reason: String) -> CoreError {
    CoreError::InvalidArgument { reason }
}

/// One limit: algorithm, `limit` units per `period_us`, and GCRA's burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateConfig {
    pub algorithm: Algorithm,
    pub limit: u64,
    pub period_us: u64,
    /// GCRA: units that may pass at once after an idle spell. Sliding window: `limit`.
    pub burst: u64,
}

impl RateConfig {
    /// Check and build a configuration; errors name the bad value.
    pub fn new(algorithm: Algorithm, limit: u64, period_us: u64, burst: Option<u64>) -> Result<Self, CoreError> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(config(format!("a rate limit must allow 1 to {MAX_LIMIT} units per period, got {limit}")));
        }
        if period_us == 0 || period_us > MAX_PERIOD_US {
            return Err(config(format!(
                "a rate-limit period must be 1 microsecond to 366 days, got {period_us} microseconds"
            )));
        }
        let burst = match (algorithm, burst) {
            (Algorithm::Gcra, _) if limit > period_us => {
                return Err(config(format!(
                    "{limit} per {} is more than one unit per microsecond; GCRA cannot space that finely",
                    format_period(period_us)
                )))
            }
            (Algorithm::Gcra, None) => 1,
            (Algorithm::Gcra, Some(b)) if b == 0 || b > MAX_LIMIT => {
                return Err(config(format!("burst must be 1 to {MAX_LIMIT} units, got {b}")))
            }
            (Algorithm::Gcra, Some(b)) => b,
            (Algorithm::SlidingWindow, None) => limit,
            (Algorithm::SlidingWindow, Some(b)) => {
                return Err(config(format!(
                    "burst={b} applies to algorithm=\"gcra\" only; a sliding window admits up to its \
                     limit ({limit}) at once"
                )))
            }
        };
        let cfg = RateConfig { algorithm, limit, period_us, burst };
        if burst.saturating_mul(cfg.emission_us()) > MAX_PERIOD_US * 100 {
            return Err(config(format!(
                "burst {burst} at {limit} per {} would let a century of units pass at once",
                format_period(period_us)
            )));
        }
        Ok(cfg)
    }

    /// GCRA's emission interval `T`, rounded up to whole microseconds.
    pub fn emission_us(&self) -> u64 {
        self.period_us.div_ceil(self.limit)
    }

    /// The most units one request (or one lease) can ever be granted.
    #[inline]
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra => self.burst,
            Algorithm::SlidingWindow => self.limit,
        }
    }

    /// Sliding-window expiries are rounded up to a multiple of this (1 for small limits).
    pub fn granularity_us(&self) -> u64 {
        match self.algorithm {
            Algorithm::SlidingWindow if self.limit > WINDOW_SLOTS => self.period_us.div_ceil(WINDOW_SLOTS),
            _ => 1,
        }
    }

    /// A stable text form, stored beside the state so two processes configured
    /// differently for one name are told apart: `gcra:50:10000000:1`.
    pub fn fingerprint(&self) -> String {
        format!("{}:{}:{}:{}", self.algorithm.name(), self.limit, self.period_us, self.burst)
    }

    /// For people: `50/10s gcra (burst 1)`, `100/1m sliding_window`.
    pub fn describe(&self) -> String {
        let base = format!("{}/{} {}", self.limit, format_period(self.period_us), self.algorithm.name());
        match self.algorithm {
            Algorithm::Gcra => format!("{base} (burst {})", self.burst),
            Algorithm::SlidingWindow => base,
        }
    }

    /// A cost must be a whole number of units from 1 to the capacity. Inlined (it runs on
    /// every decision); the messages are built out of line, only when a cost is refused.
    #[inline]
    pub fn check_cost(&self, cost: u64) -> Result<(), CoreError> {
        if cost == 0 || cost > self.capacity() {
            return Err(self.bad_cost(cost));
        }
        Ok(())
    }

    #[cold]
    fn bad_cost(&self, cost: u64) -> CoreError {
        if cost == 0 {
            return invalid("cost must be at least 1 unit, got 0".into());
        }
        let what = match self.algorithm {
            Algorithm::Gcra if self.burst < self.limit => format!("the burst ({})", self.burst),
            _ => format!("the limit ({})", self.limit),
        };
        invalid(format!(
            "cost {cost} is more than {what} of rate limit {}; it could never be admitted",
            self.describe()
        ))
    }
}

/// `now` must lie in 0..=MAX_TIME_US.
#[inline]
pub fn check_now(now: i64) -> Result<i64, CoreError> {
    if (0..=MAX_TIME_US).contains(&now) {
        Ok(now)
    } else {
        Err(bad_now(now))
    }
}

#[cold]
fn bad_now(now: i64) -> CoreError {
    invalid(format!("now must be 0 to {MAX_TIME_US} microseconds since the Unix epoch, got {now}"))
}

/// `10s`, `1m`, `1h`, `1d`, `1500ms`, `7us`: the largest unit that divides the period.
pub fn format_period(period_us: u64) -> String {
    const UNITS: [(u64, &str); 5] =
        [(86_400_000_000, "d"), (3_600_000_000, "h"), (60_000_000, "m"), (1_000_000, "s"), (1_000, "ms")];
    for (size, unit) in UNITS {
        if period_us.is_multiple_of(size) {
            return format!("{}{unit}", period_us / size);
        }
    }
    format!("{period_us}us")
}

/// The answer to one request. Durations in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// 0 when allowed; else how long until the same request would be admitted.
    pub retry_after_us: u64,
    /// Cost-1 requests that would be admitted right after this decision.
    pub remaining: u64,
    /// How long until the key is back to its idle (full) state.
    pub reset_after_us: u64,
}

/// The answer to a lease request: a block of `granted` units, or none and when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub granted: u64,
    pub retry_after_us: u64,
    /// Names the block on the store, for a refund: the sliding-window entry's expiry,
    /// or the GCRA block's end (the store's `tat` right after the grant).
    pub token: i64,
    /// From `now`: when the first unit may be spent (GCRA: the block's first slot).
    pub start_us: u64,
    /// From `now`: the block must be spent by then (window: the lease's lifetime;
    /// GCRA: the block's end, which the last spend plus `T` must not pass).
    pub end_us: u64,
    pub remaining: u64,
}

impl Grant {
    pub(crate) fn refused(retry_after_us: u64, remaining: u64) -> Self {
        Grant { granted: 0, retry_after_us, token: 0, start_us: 0, end_us: 0, remaining }
    }
}

/// Checks shared by every lease request.
pub(crate) fn check_lease(cfg: &RateConfig, min_units: u64, max_units: u64, lease_us: u64) -> Result<(), CoreError> {
    cfg.check_cost(min_units)?;
    if max_units < min_units {
        return Err(invalid(format!("a lease's max_units ({max_units}) is below its min_units ({min_units})")));
    }
    if lease_us == 0 || lease_us > MAX_PERIOD_US {
        return Err(invalid(format!("a lease must last 1 microsecond to 366 days, got {lease_us} microseconds")));
    }
    if cfg.algorithm == Algorithm::Gcra && cfg.burst != 1 {
        return Err(config(format!(
            "leases on a GCRA limit need burst 1 (this one is {}); use the sliding window for bursty leases",
            cfg.describe()
        )));
    }
    Ok(())
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
