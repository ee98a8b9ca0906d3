//! One key's state, whichever the algorithm, and its byte form for stores that keep
//! state as a value (the SQLite driver): read it, decide with the core, write it back.
//!
//! Layout (little-endian): `b"LR" 1 | algorithm u8 | limit u64 | period_us u64 | burst u64`
//! then GCRA: `tat i64`; sliding window: `n u32` and `n` times `expiry i64, units u64`
//! (expiries strictly increasing). The configuration travels with the state, so a
//! process configured differently for the same name is refused instead of mixing rules.

use super::gcra::Gcra;
use super::window::Window;
use super::{check_lease, check_now, config, invalid, Algorithm, Decision, Grant, RateConfig, MAX_TIME_US};
use crate::error::CoreError;

const MAGIC: &[u8; 3] = b"LR\x01";
const HEADER: usize = 3 + 1 + 8 * 3;
/// Latest time a stored instant may name: `now` plus the longest lease and period.
const MAX_STORED_US: i64 = MAX_TIME_US * 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    Gcra(Gcra),
    Window(Window),
}

impl KeyState {
    pub fn new(cfg: &RateConfig) -> Self {
        match cfg.algorithm {
            Algorithm::Gcra => KeyState::Gcra(Gcra::default()),
            Algorithm::SlidingWindow => KeyState::Window(Window::default()),
        }
    }

    pub fn acquire(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> Result<Decision, CoreError> {
        cfg.check_cost(cost)?;
        check_now(now)?;
        Ok(self.acquire_checked(cfg, cost, now))
    }

    /// `acquire` once `cost` and `now` are known to be in range.
    #[inline]
    pub(crate) fn acquire_checked(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> Decision {
        match self {
            KeyState::Gcra(s) => s.acquire(cfg, cost, now),
            KeyState::Window(s) => s.acquire(cfg, cost, now),
        }
    }

    /// `acquire(cfg, cost, now)?.allowed` with the same change of state, without the rest of
    /// the decision (the sliding window skips the scans that find `retry_after`).
    #[inline]
    pub fn admit(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> Result<bool, CoreError> {
        cfg.check_cost(cost)?;
        check_now(now)?;
        Ok(self.admit_checked(cfg, cost, now))
    }

    /// `admit` once `cost` and `now` are known to be in range: a plain bool, no `Result` to
    /// carry out of the hot path.
    #[inline]
    pub(crate) fn admit_checked(&mut self, cfg: &RateConfig, cost: u64, now: i64) -> bool {
        match self {
            KeyState::Gcra(s) => s.acquire(cfg, cost, now).allowed,
            KeyState::Window(s) => s.admit(cfg, cost, now),
        }
    }

    /// A time before which a request of `cost` is refused at any `now` (so a caller that
    /// can bound its clock from above may refuse without reading it; a refusal changes no
    /// state). None when the cost is invalid or no such time is known.
    #[inline]
    pub fn refused_before(&self, cfg: &RateConfig, cost: u64) -> Option<i64> {
        cfg.check_cost(cost).ok()?;
        match self {
            KeyState::Gcra(s) => Some(s.refused_before(cfg, cost)),
            KeyState::Window(s) => s.refused_before(cfg, cost),
        }
    }

    /// What a cost-1 request would get now, without changing anything.
    pub fn peek(&self, cfg: &RateConfig, now: i64) -> Result<Decision, CoreError> {
        check_now(now)?;
        Ok(match self {
            KeyState::Gcra(s) => s.decide(cfg, 1, now),
            KeyState::Window(s) => s.decide(cfg, 1, now),
        })
    }

    pub fn lease(
        &mut self,
        cfg: &RateConfig,
        min_units: u64,
        max_units: u64,
        lease_us: u64,
        now: i64,
    ) -> Result<Grant, CoreError> {
        check_lease(cfg, min_units, max_units, lease_us)?;
        check_now(now)?;
        Ok(match self {
            KeyState::Gcra(s) => s.lease(cfg, min_units, max_units, lease_us, now),
            KeyState::Window(s) => s.lease(cfg, min_units, max_units, lease_us, now),
        })
    }

    pub fn refund(&mut self, cfg: &RateConfig, token: i64, units: u64, now: i64) -> Result<u64, CoreError> {
        check_now(now)?;
        Ok(match self {
            KeyState::Gcra(s) => s.refund(cfg, token, units, now),
            KeyState::Window(s) => s.refund(token, units, now),
        })
    }

    /// Microseconds until this key is idle and its state can be dropped (0: now).
    pub fn ttl_us(&self, now: i64) -> u64 {
        match self {
            KeyState::Gcra(s) => s.ttl_us(now),
            KeyState::Window(s) => s.ttl_us(now),
        }
    }

    pub fn encode(&self, cfg: &RateConfig) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 16);
        out.extend_from_slice(MAGIC);
        out.push(match cfg.algorithm {
            Algorithm::Gcra => 0,
            Algorithm::SlidingWindow => 1,
        });
        for n in [cfg.limit, cfg.period_us, cfg.burst] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        match self {
            KeyState::Gcra(s) => out.extend_from_slice(&s.tat.to_le_bytes()),
            KeyState::Window(s) => {
                let n = u32::try_from(s.entries.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&n.to_le_bytes());
                for (expiry, units) in s.entries.iter() {
                    out.extend_from_slice(&expiry.to_le_bytes());
                    out.extend_from_slice(&units.to_le_bytes());
                }
            }
        }
        out
    }

    /// Read a stored state written under `cfg`; a state of another configuration is a
    /// ConfigError naming both, a damaged one an InvalidArgument.
    pub fn decode(cfg: &RateConfig, data: &[u8]) -> Result<Self, CoreError> {
        let mut r = Reader { data, at: 0 };
        if r.take(3)? != MAGIC {
            return Err(damaged("it does not start with the rate-state marker"));
        }
        let algorithm = match r.take(1)?[0] {
            0 => Algorithm::Gcra,
            1 => Algorithm::SlidingWindow,
            other => return Err(damaged(&format!("unknown algorithm byte {other}"))),
        };
        let (limit, period_us, burst) = (r.u64()?, r.u64()?, r.u64()?);
        let stored = RateConfig { algorithm, limit, period_us, burst };
        if stored != *cfg {
            let theirs =
                RateConfig::new(algorithm, limit, period_us, Some(burst).filter(|_| algorithm == Algorithm::Gcra))
                    .map(|c| c.describe())
                    .unwrap_or_else(|_| stored.fingerprint());
            return Err(config(format!(
                "this rate limit is in use as {theirs}, but this limiter says {}; every user of a name must \
                 give it the same rate, burst and algorithm (or reset it first)",
                cfg.describe()
            )));
        }
        let state = match algorithm {
            Algorithm::Gcra => KeyState::Gcra(Gcra { tat: r.instant()? }),
            Algorithm::SlidingWindow => {
                let n = u32::from_le_bytes(r.array()?);
                let mut window = Window::default();
                let mut last = i64::MIN;
                for _ in 0..n {
                    let (expiry, units) = (r.instant()?, r.u64()?);
                    if expiry <= last || units == 0 || window.used.saturating_add(units) > limit {
                        return Err(damaged("its log entries are out of order, empty or over the limit"));
                    }
                    window.entries.add(expiry, units);
                    window.used += units;
                    last = expiry;
                }
                KeyState::Window(window)
            }
        };
        if r.at != data.len() {
            return Err(damaged("it has trailing bytes"));
        }
        Ok(state)
    }
}

fn damaged(reason: &str) -> CoreError {
    invalid(format!("malformed stored rate-limit state: {reason}"))
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoreError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| damaged("it is truncated"))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, CoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn instant(&mut self) -> Result<i64, CoreError> {
        let v = i64::from_le_bytes(self.array()?);
        if (0..=MAX_STORED_US).contains(&v) {
            Ok(v)
        } else {
            Err(damaged(&format!("instant {v} is out of range")))
        }
    }
}
