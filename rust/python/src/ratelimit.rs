//! Rate limits over `lockstep_core::ratelimit`: `RateRule` (one configuration, plus
//! stateless steps on a stored state for the SQLite driver; `rule.rs`), `RateTable` (many
//! keys in memory: the memory driver and the local fallback) and `RateLeasePool` (leased
//! units spent locally; both in `tables.rs`, the table's hot path in `local.rs`),
//! `Decision`, and `rate_clock_us`, the one clock all of them default to.
//!
//! Tables and pools keep their state behind a mutex (`RateTable`'s hot path takes its
//! exclusive borrow instead; see there), so any number of Python threads may share one;
//! nothing inside the lock runs Python code. The hot path (`RateTable.acquire` on a
//! known key) allocates nothing but the returned `Decision`; `RateTable.hit` nothing.

mod local;
mod rule;
mod tables;

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lockstep_core::ratelimit as rl;
use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

use crate::errors;

pub use rule::RateRule;
pub use tables::{RateLeasePool, RateTable};

static CLOCK: OnceLock<(Instant, i64)> = OnceLock::new();

/// Microseconds since the Unix epoch on a clock that never goes backwards: the wall
/// clock read once, at first use, advanced by the monotonic clock since.
pub(crate) fn clock_us() -> i64 {
    let (start, unix) = CLOCK.get_or_init(|| {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        (Instant::now(), i64::try_from(unix).unwrap_or(0))
    });
    // whole seconds and microseconds, not `as_micros` (a 128-bit product on every decision)
    let since = start.elapsed();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX / 2_000_000);
    unix.saturating_add(secs * 1_000_000 + i64::from(since.subsec_micros()))
}

static TICKS: OnceLock<quanta::Clock> = OnceLock::new();

/// The CPU's cycle counter (the TSC on x86, read without a fence; where there is none,
/// quanta falls back to the monotonic clock). Never a time: only a measure of how much
/// time has passed, to bound the clock from above (see `tables::ClockBound`). Calibrated
/// once per process by quanta (well under a millisecond), at first use.
pub(crate) fn ticks() -> u64 {
    TICKS.get_or_init(quanta::Clock::new).raw()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn invalid(reason: String) -> PyErr {
    errors::to_py(CoreError::InvalidArgument { reason })
}

pub(crate) fn shown(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into()).chars().take(60).collect()
}

pub(crate) fn is_int(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>()
}

pub(crate) fn not_a_number(obj: &Bound<'_, PyAny>, what: &str) -> PyErr {
    invalid(format!("{what} must be a whole number in range, got {}", shown(obj)))
}

/// A whole number (never a bool or a float); anything else is InvalidInputError naming `what`.
pub(crate) fn uint_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if is_int(obj) {
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(v);
        }
    }
    Err(not_a_number(obj, what))
}

pub(crate) fn sint_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if is_int(obj) {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(v);
        }
    }
    Err(not_a_number(obj, what))
}

pub(crate) fn cost_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    match obj {
        None => Ok(1),
        Some(o) => uint_arg(o, "cost (a positive number of units)"),
    }
}

pub(crate) fn now_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
    obj.map_or_else(|| Ok(clock_us()), |o| sint_arg(o, "now (microseconds)"))
}

/// The key as text; a non-string or unencodable one is InvalidNameError.
pub(crate) fn key_arg<'a>(obj: Option<&'a Bound<'_, PyAny>>) -> PyResult<&'a str> {
    let Some(obj) = obj else { return Ok("default") };
    let bad = |reason: String| {
        errors::to_py(CoreError::InvalidName { what: "rate-limit key".into(), name: shown(obj), reason })
    };
    // an exact `str` is told by its type pointer; the subclass check calls into Python
    let text = match obj.cast_exact::<PyString>() {
        Ok(text) => text,
        Err(_) => obj.cast::<PyString>().map_err(|_| bad("it is not a string".into()))?,
    };
    text.to_str().map_err(|_| bad("it is not valid Unicode".into()))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Source {
    Store,
    Lease,
    Local,
    Open,
}

impl Source {
    fn parse(text: &str) -> PyResult<Self> {
        Ok(match text {
            "store" => Source::Store,
            "lease" => Source::Lease,
            "local" => Source::Local,
            "open" => Source::Open,
            other => return Err(invalid(format!("source must be store, lease, local or open, got {other:?}"))),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Source::Store => "store",
            Source::Lease => "lease",
            Source::Local => "local",
            Source::Open => "open",
        }
    }
}

pub(crate) fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The answer to one rate-limit request.
#[pyclass(module = "lockstep._core", name = "Decision", frozen, eq)]
#[derive(Clone, PartialEq, Debug)]
pub struct Decision {
    #[pyo3(get)]
    allowed: bool,
    #[pyo3(get)]
    retry_after: f64,
    #[pyo3(get)]
    remaining: u64,
    #[pyo3(get)]
    reset_after: f64,
    #[pyo3(get)]
    at: f64,
    source: Source,
}

impl Decision {
    fn from_core(d: rl::Decision, now_us: i64, source: Source) -> Self {
        Decision {
            allowed: d.allowed,
            retry_after: seconds(d.retry_after_us),
            remaining: d.remaining,
            reset_after: seconds(d.reset_after_us),
            at: now_us as f64 / 1e6,
            source,
        }
    }
}

#[pymethods]
impl Decision {
    #[new]
    #[pyo3(signature = (allowed, retry_after, remaining, reset_after, at = 0.0, source = "store"))]
    fn new(allowed: bool, retry_after: f64, remaining: u64, reset_after: f64, at: f64, source: &str) -> PyResult<Self> {
        Ok(Decision { allowed, retry_after, remaining, reset_after, at, source: Source::parse(source)? })
    }

    /// Who decided: "store" (the backend), "lease" (units leased to this process),
    /// "local" (the local fallback limit), "open" (failed open: the store was down).
    #[getter]
    fn source(&self) -> &'static str {
        self.source.name()
    }

    fn __repr__(&self) -> String {
        let allowed = if self.allowed { "True" } else { "False" };
        format!(
            "Decision(allowed={allowed}, retry_after={:.6}, remaining={}, reset_after={:.6}, source={:?})",
            self.retry_after,
            self.remaining,
            self.reset_after,
            self.source.name()
        )
    }
}

/// Microseconds since the Unix epoch on the clock rate limits default to (never goes back).
#[pyfunction]
fn rate_clock_us() -> i64 {
    clock_us()
}

/// Parse a rate string into `(limit, period_us)`; ConfigError names a bad one.
#[pyfunction]
fn parse_rate(rate: &Bound<'_, PyAny>) -> PyResult<(u64, u64)> {
    let text = rate.cast::<PyString>().map_err(|_| {
        errors::to_py(CoreError::Config {
            reason: format!("a rate must be a string like \"100/minute\", got {}", shown(rate)),
        })
    })?;
    rl::parse_rate(&text.to_string_lossy()).map_err(errors::to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decision>()?;
    m.add_class::<RateRule>()?;
    m.add_class::<RateTable>()?;
    m.add_class::<RateLeasePool>()?;
    m.add_function(wrap_pyfunction!(rate_clock_us, m)?)?;
    m.add_function(wrap_pyfunction!(parse_rate, m)?)?;
    Ok(())
}
