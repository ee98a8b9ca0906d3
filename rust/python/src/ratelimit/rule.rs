//! `RateRule`: one configuration, and the stateless steps the SQLite driver runs on a
//! stored state (read it, decide, write it back).

use lockstep_core::ratelimit::{self as rl, Algorithm, Grant, KeyState, RateConfig};
use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::{cost_arg, now_arg, seconds, shown, sint_arg, uint_arg, Decision, Source};
use crate::errors;

pub(crate) type GrantRow = (u64, u64, i64, u64, u64, u64, i64);

pub(crate) fn grant_row(g: Grant, now: i64) -> GrantRow {
    (g.granted, g.retry_after_us, g.token, g.start_us, g.end_us, g.remaining, now)
}

fn decode_state(cfg: &RateConfig, state: Option<&[u8]>) -> PyResult<KeyState> {
    match state {
        Some(bytes) => KeyState::decode(cfg, bytes).map_err(errors::to_py),
        None => Ok(KeyState::new(cfg)),
    }
}

/// The state to store back (None: idle, delete it) and its time to live in microseconds.
fn encode_state<'py>(
    py: Python<'py>,
    cfg: &RateConfig,
    state: &KeyState,
    now: i64,
) -> (Option<Bound<'py, PyBytes>>, u64) {
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
    pub(crate) cfg: RateConfig,
}

fn config_int(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    uint_arg(obj, what).map_err(|_| {
        errors::to_py(CoreError::Config {
            reason: format!("{what} must be a positive whole number, got {}", shown(obj)),
        })
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

pub(crate) fn lease_args(
    min: &Bound<'_, PyAny>,
    max: &Bound<'_, PyAny>,
    lease: &Bound<'_, PyAny>,
) -> PyResult<(u64, u64, u64)> {
    Ok((uint_arg(min, "min_units")?, uint_arg(max, "max_units")?, uint_arg(lease, "lease_us")?))
}
