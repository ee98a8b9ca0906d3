//! Rate limits over `lockstep_core::ratelimit`: `RateRule` (one configuration, plus
//! stateless steps on a stored state for the SQLite driver), `RateTable` (many keys in
//! memory: the memory driver and the local fallback), `RateLeasePool` (leased units
//! spent locally), `Decision`, and `rate_clock_us`, the one clock all of them default to.
//!
//! Tables and pools are `frozen` with a mutex inside, so any number of Python threads
//! may share one; nothing inside the lock calls back into Python. The hot path
//! (`RateTable.acquire` on a known key) allocates nothing but the returned `Decision`.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lockstep_core::ratelimit::{self as rl, Algorithm, Grant, KeyState, RateConfig, Spend};
use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString};

use crate::errors;

static CLOCK: OnceLock<(Instant, i64)> = OnceLock::new();

/// Microseconds since the Unix epoch on a clock that never goes backwards: the wall
/// clock read once, at first use, advanced by the monotonic clock since.
fn clock_us() -> i64 {
    let (start, unix) = CLOCK.get_or_init(|| {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        (Instant::now(), i64::try_from(unix).unwrap_or(0))
    });
    unix.saturating_add(i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn invalid(reason: String) -> PyErr {
    errors::to_py(CoreError::InvalidArgument { reason })
}

fn shown(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into()).chars().take(60).collect()
}

fn is_int(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>()
}

fn not_a_number(obj: &Bound<'_, PyAny>, what: &str) -> PyErr {
    invalid(format!("{what} must be a whole number in range, got {}", shown(obj)))
}

/// A whole number (never a bool or a float); anything else is InvalidInputError naming `what`.
fn uint_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    if is_int(obj) {
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(v);
        }
    }
    Err(not_a_number(obj, what))
}

fn sint_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if is_int(obj) {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(v);
        }
    }
    Err(not_a_number(obj, what))
}

fn cost_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    match obj {
        None => Ok(1),
        Some(o) => uint_arg(o, "cost (a positive number of units)"),
    }
}

fn now_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
    obj.map_or_else(|| Ok(clock_us()), |o| sint_arg(o, "now (microseconds)"))
}

/// The key as text; a non-string or unencodable one is InvalidNameError.
fn key_arg<'a>(obj: Option<&'a Bound<'_, PyAny>>) -> PyResult<&'a str> {
    let Some(obj) = obj else { return Ok("default") };
    let bad = |reason: String| {
        errors::to_py(CoreError::InvalidName { what: "rate-limit key".into(), name: shown(obj), reason })
    };
    let text = obj.cast::<PyString>().map_err(|_| bad("it is not a string".into()))?;
    text.to_str().map_err(|_| bad("it is not valid Unicode".into()))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
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

fn seconds(us: u64) -> f64 {
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

type GrantRow = (u64, u64, i64, u64, u64, u64, i64);

fn grant_row(g: Grant, now: i64) -> GrantRow {
    (g.granted, g.retry_after_us, g.token, g.start_us, g.end_us, g.remaining, now)
}

fn decode_state(cfg: &RateConfig, state: Option<&[u8]>) -> PyResult<KeyState> {
    match state {
        Some(bytes) => KeyState::decode(cfg, bytes).map_err(errors::to_py),
        None => Ok(KeyState::new(cfg)),
    }
}

/// The state to store back (None: idle, delete it) and its time to live in microseconds.
fn encode_state<'py>(py: Python<'py>, cfg: &RateConfig, state: &KeyState, now: i64) -> (Option<Bound<'py, PyBytes>>, u64) {
    let ttl = state.ttl_us(now);
    if ttl == 0 {
        (None, 0)
    } else {
        (Some(PyBytes::new(py, &state.encode(cfg))), ttl)
    }
}

/// One rate-limit configuration: algorithm, `limit` per `period_us`, GCRA's burst.
#[pyclass(module = "lockstep._core", name = "RateRule", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RateRule {
    cfg: RateConfig,
}

fn config_int(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    uint_arg(obj, what).map_err(|_| {
        errors::to_py(CoreError::Config { reason: format!("{what} must be a positive whole number, got {}", shown(obj)) })
    })
}

#[pymethods]
impl RateRule {
    #[new]
    #[pyo3(signature = (algorithm, limit, period_us, burst = None))]
    fn new(
        algorithm: &str,
        limit: &Bound<'_, PyAny>,
        period_us: &Bound<'_, PyAny>,
        burst: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let algorithm = Algorithm::from_name(algorithm).map_err(errors::to_py)?;
        let burst = burst.filter(|b| !b.is_none()).map(|b| config_int(b, "burst")).transpose()?;
        let cfg = RateConfig::new(algorithm, config_int(limit, "limit")?, config_int(period_us, "period_us")?, burst)
            .map_err(errors::to_py)?;
        Ok(RateRule { cfg })
    }

    /// Build from a rate string such as "100/minute", "50/10s" or "10 per 2 minutes".
    #[staticmethod]
    #[pyo3(signature = (rate, algorithm = "gcra", burst = None))]
    fn parse(rate: &Bound<'_, PyAny>, algorithm: &str, burst: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let text = rate.cast::<PyString>().map_err(|_| {
            errors::to_py(CoreError::Config {
                reason: format!("a rate must be a string like \"100/minute\", got {}", shown(rate)),
            })
        })?;
        let (limit, period_us) = rl::parse_rate(&text.to_string_lossy()).map_err(errors::to_py)?;
        let algorithm = Algorithm::from_name(algorithm).map_err(errors::to_py)?;
        let burst = burst.filter(|b| !b.is_none()).map(|b| config_int(b, "burst")).transpose()?;
        Ok(RateRule { cfg: RateConfig::new(algorithm, limit, period_us, burst).map_err(errors::to_py)? })
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.cfg.algorithm.name()
    }
    #[getter]
    fn limit(&self) -> u64 {
        self.cfg.limit
    }
    #[getter]
    fn period_us(&self) -> u64 {
        self.cfg.period_us
    }
    #[getter]
    fn period(&self) -> f64 {
        seconds(self.cfg.period_us)
    }
    #[getter]
    fn burst(&self) -> u64 {
        self.cfg.burst
    }
    #[getter]
    fn emission_us(&self) -> u64 {
        self.cfg.emission_us()
    }
    #[getter]
    fn capacity(&self) -> u64 {
        self.cfg.capacity()
    }
    #[getter]
    fn granularity_us(&self) -> u64 {
        self.cfg.granularity_us()
    }
    #[getter]
    fn fingerprint(&self) -> String {
        self.cfg.fingerprint()
    }

    fn describe(&self) -> String {
        self.cfg.describe()
    }

    fn __repr__(&self) -> String {
        format!("RateRule({:?})", self.cfg.describe())
    }

    /// Raise InvalidInputError unless `cost` is 1 to the capacity.
    fn check_cost(&self, cost: &Bound<'_, PyAny>) -> PyResult<u64> {
        let cost = cost_arg(Some(cost))?;
        self.cfg.check_cost(cost).map_err(errors::to_py)?;
        Ok(cost)
    }

    /// Acquire on a stored state: `(decision, new_state or None when idle, ttl_us)`.
    #[pyo3(signature = (state, cost = None, now = None))]
    fn acquire_state<'py>(
        &self,
        py: Python<'py>,
        state: Option<&[u8]>,
        cost: Option<&Bound<'py, PyAny>>,
        now: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Decision, Option<Bound<'py, PyBytes>>, u64)> {
        let (cost, now) = (cost_arg(cost)?, now_arg(now)?);
        let mut s = decode_state(&self.cfg, state)?;
        let d = s.acquire(&self.cfg, cost, now).map_err(errors::to_py)?;
        let (bytes, ttl) = encode_state(py, &self.cfg, &s, now);
        Ok((Decision::from_core(d, now, Source::Store), bytes, ttl))
    }

    #[pyo3(signature = (state, now = None))]
    fn peek_state(&self, state: Option<&[u8]>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Decision> {
        let now = now_arg(now)?;
        let d = decode_state(&self.cfg, state)?.peek(&self.cfg, now).map_err(errors::to_py)?;
        Ok(Decision::from_core(d, now, Source::Store))
    }

    /// Lease on a stored state: `(grant row, new_state or None, ttl_us)`; see `RateTable.lease`.
    #[pyo3(signature = (state, min_units, max_units, lease_us, now = None))]
    fn lease_state<'py>(
        &self,
        py: Python<'py>,
        state: Option<&[u8]>,
        min_units: &Bound<'py, PyAny>,
        max_units: &Bound<'py, PyAny>,
        lease_us: &Bound<'py, PyAny>,
        now: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(GrantRow, Option<Bound<'py, PyBytes>>, u64)> {
        let now = now_arg(now)?;
        let (min, max, lease) = lease_args(min_units, max_units, lease_us)?;
        let mut s = decode_state(&self.cfg, state)?;
        let g = s.lease(&self.cfg, min, max, lease, now).map_err(errors::to_py)?;
        let (bytes, ttl) = encode_state(py, &self.cfg, &s, now);
        Ok((grant_row(g, now), bytes, ttl))
    }

    /// Refund on a stored state: `(units handed back, new_state or None, ttl_us)`.
    #[pyo3(signature = (state, token, units, now = None))]
    fn refund_state<'py>(
        &self,
        py: Python<'py>,
        state: Option<&[u8]>,
        token: &Bound<'py, PyAny>,
        units: &Bound<'py, PyAny>,
        now: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(u64, Option<Bound<'py, PyBytes>>, u64)> {
        let now = now_arg(now)?;
        let (token, units) = (sint_arg(token, "token")?, uint_arg(units, "units")?);
        let mut s = decode_state(&self.cfg, state)?;
        let back = s.refund(&self.cfg, token, units, now).map_err(errors::to_py)?;
        let (bytes, ttl) = encode_state(py, &self.cfg, &s, now);
        Ok((back, bytes, ttl))
    }
}

fn lease_args(min: &Bound<'_, PyAny>, max: &Bound<'_, PyAny>, lease: &Bound<'_, PyAny>) -> PyResult<(u64, u64, u64)> {
    Ok((uint_arg(min, "min_units")?, uint_arg(max, "max_units")?, uint_arg(lease, "lease_us")?))
}

/// Many keys under one rule, in this process. Thread-safe.
#[pyclass(module = "lockstep._core", name = "RateTable", frozen)]
pub struct RateTable {
    rule: RateRule,
    source: Source,
    inner: Mutex<rl::RateTable>,
}

#[pymethods]
impl RateTable {
    #[new]
    #[pyo3(signature = (rule, source = "store"))]
    fn new(rule: &RateRule, source: &str) -> PyResult<Self> {
        Ok(RateTable { rule: rule.clone(), source: Source::parse(source)?, inner: Mutex::new(rl::RateTable::new(rule.cfg)) })
    }

    #[getter]
    fn rule(&self) -> RateRule {
        self.rule.clone()
    }

    /// Spend `cost` units of `key` if they fit; `now` defaults to `rate_clock_us()`.
    #[pyo3(signature = (key = None, cost = None, now = None))]
    fn acquire(
        &self,
        key: Option<&Bound<'_, PyAny>>,
        cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let (key, cost, now) = (key_arg(key)?, cost_arg(cost)?, now_arg(now)?);
        let d = lock(&self.inner).acquire(key, cost, now).map_err(errors::to_py)?;
        Ok(Decision::from_core(d, now, self.source))
    }

    #[pyo3(signature = (key = None, now = None))]
    fn peek(&self, key: Option<&Bound<'_, PyAny>>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Decision> {
        let (key, now) = (key_arg(key)?, now_arg(now)?);
        let d = lock(&self.inner).peek(key, now).map_err(errors::to_py)?;
        Ok(Decision::from_core(d, now, self.source))
    }

    #[pyo3(signature = (key = None, now = None))]
    fn reset(&self, key: Option<&Bound<'_, PyAny>>, now: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let (key, now) = (key_arg(key)?, now_arg(now)?);
        lock(&self.inner).reset(key, now).map_err(errors::to_py)
    }

    /// Lease a block: `(granted, retry_after_us, token, start_us, end_us, remaining, now_us)`.
    #[pyo3(signature = (key, min_units, max_units, lease_us, now = None))]
    fn lease(
        &self,
        key: &Bound<'_, PyAny>,
        min_units: &Bound<'_, PyAny>,
        max_units: &Bound<'_, PyAny>,
        lease_us: &Bound<'_, PyAny>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<GrantRow> {
        let (key, now) = (key_arg(Some(key))?, now_arg(now)?);
        let (min, max, lease) = lease_args(min_units, max_units, lease_us)?;
        let g = lock(&self.inner).lease(key, min, max, lease, now).map_err(errors::to_py)?;
        Ok(grant_row(g, now))
    }

    /// Hand back unspent units of a leased block; returns how many were taken back.
    #[pyo3(signature = (key, token, units, now = None))]
    fn refund(
        &self,
        key: &Bound<'_, PyAny>,
        token: &Bound<'_, PyAny>,
        units: &Bound<'_, PyAny>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let (key, now) = (key_arg(Some(key))?, now_arg(now)?);
        let (token, units) = (sint_arg(token, "token")?, uint_arg(units, "units")?);
        lock(&self.inner).refund(key, token, units, now).map_err(errors::to_py)
    }

    #[pyo3(signature = (now = None))]
    fn live_keys(&self, now: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let now = now_arg(now)?;
        Ok(lock(&self.inner).live_keys(now))
    }
}

type RefundRow = (String, i64, u64);

fn refund_rows(refunds: Vec<rl::lease::Refund>) -> Vec<RefundRow> {
    refunds.into_iter().map(|r| (r.key, r.token, r.units)).collect()
}

/// Units leased to this process, spent without a round trip. Thread-safe.
#[pyclass(module = "lockstep._core", name = "RateLeasePool", frozen)]
pub struct RateLeasePool {
    rule: RateRule,
    inner: Mutex<rl::LeasePool>,
}

#[pymethods]
impl RateLeasePool {
    #[new]
    fn new(rule: &RateRule) -> Self {
        RateLeasePool { rule: rule.clone(), inner: Mutex::new(rl::LeasePool::new(rule.cfg)) }
    }

    #[getter]
    fn rule(&self) -> RateRule {
        self.rule.clone()
    }

    /// Decide locally, or None when a block must be leased first.
    #[pyo3(signature = (key = None, cost = None, now = None))]
    fn spend(
        &self,
        key: Option<&Bound<'_, PyAny>>,
        cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Decision>> {
        let (key, cost, now) = (key_arg(key)?, cost_arg(cost)?, now_arg(now)?);
        Ok(match lock(&self.inner).spend(key, cost, now).map_err(errors::to_py)? {
            Spend::Decided(d) => Some(Decision::from_core(d, now, Source::Lease)),
            Spend::NeedBlock { .. } => None,
        })
    }

    /// How many units to lease before `spend(key, cost)` can be decided locally (0: none).
    #[pyo3(signature = (key = None, cost = None, now = None))]
    fn shortfall(
        &self,
        key: Option<&Bound<'_, PyAny>>,
        cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let (key, cost, now) = (key_arg(key)?, cost_arg(cost)?, now_arg(now)?);
        self.rule.cfg.check_cost(cost).map_err(errors::to_py)?;
        let have = lock(&self.inner).available(key, now);
        Ok(match self.rule.cfg.algorithm {
            Algorithm::SlidingWindow => cost.saturating_sub(have),
            Algorithm::Gcra => u64::from(have == 0),
        })
    }

    /// Take in a block granted by the store; `sent_at`/`received_at` bracket the round trip.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        key: &Bound<'_, PyAny>,
        granted: &Bound<'_, PyAny>,
        token: &Bound<'_, PyAny>,
        start_us: &Bound<'_, PyAny>,
        end_us: &Bound<'_, PyAny>,
        sent_at: &Bound<'_, PyAny>,
        received_at: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let key = key_arg(Some(key))?;
        let (granted, token) = (uint_arg(granted, "granted")?, sint_arg(token, "token")?);
        let (start, end) = (uint_arg(start_us, "start_us")?, uint_arg(end_us, "end_us")?);
        let (sent, received) = (sint_arg(sent_at, "sent_at")?, sint_arg(received_at, "received_at")?);
        lock(&self.inner).add(key, granted, token, start, end, sent, received).map_err(errors::to_py)
    }

    #[pyo3(signature = (key = None, now = None))]
    fn available(&self, key: Option<&Bound<'_, PyAny>>, now: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
        let (key, now) = (key_arg(key)?, now_arg(now)?);
        Ok(lock(&self.inner).available(key, now))
    }

    /// Age out blocks past their deadline: `[(key, token, units), ...]` to hand back.
    #[pyo3(signature = (now = None))]
    fn take_refunds(&self, now: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<RefundRow>> {
        let now = now_arg(now)?;
        Ok(refund_rows(lock(&self.inner).take_refunds(now)))
    }

    /// Stop spending: every unit still held, as `[(key, token, units), ...]`.
    #[pyo3(signature = (now = None))]
    fn drain(&self, now: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<RefundRow>> {
        let now = now_arg(now)?;
        Ok(refund_rows(lock(&self.inner).drain(now)))
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
    let rule = RateRule::parse(rate, "sliding_window", None)?;
    Ok((rule.cfg.limit, rule.cfg.period_us))
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
