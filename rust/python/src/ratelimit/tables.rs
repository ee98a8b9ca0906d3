//! `RateTable` (many keys in this process) and `RateLeasePool` (leased units), each a
//! core structure behind a mutex.

use std::sync::{Mutex, PoisonError};

use lockstep_core::ratelimit::{self as rl, Algorithm, Spend};
use pyo3::prelude::*;

use super::local::{key_and_cost, table_key, Local};
use super::rule::{grant_row, lease_args, GrantRow};
use super::{clock_us, cost_arg, key_arg, lock, now_arg, sint_arg, uint_arg, Decision, RateRule, Source};
use crate::errors;

/// A `now` given by the caller; None means "read the clock once the lock is held", so
/// decisions on one table are stamped in the order they are made.
fn given_now(now: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    now.map(|o| sint_arg(o, "now (microseconds)")).transpose()
}

/// Many keys under one rule, in this process. Thread-safe.
///
/// Not `frozen`, for the hot path alone: `hit` and `acquire` take the object's exclusive
/// borrow (one atomic compare-exchange, released by a plain store) and then reach the
/// table through `Mutex::get_mut`, which needs no locking; that is one atomic
/// read-modify-write less than locking the mutex. Every other method (and those two, should
/// the exclusive borrow be refused) goes through the mutex on a shared borrow, as before.
/// Behind the mutex is `local::Local`: the core table, the last key decided on (a hammered
/// key goes straight to its slot) and the clock bound that lets `hit` refuse a hammered
/// key without reading the clock.
#[pyclass(module = "lockstep._core", name = "RateTable")]
pub struct RateTable {
    rule: RateRule,
    source: Source,
    inner: Mutex<Local>,
}

/// `step` on the table (and the source its decisions name). The exclusive borrow is taken
/// only once the arguments are converted, and no Python code runs while it is held (a
/// refusal becomes a Python exception only after it is released), so under the GIL it is
/// refused only when another call sits inside a `&self` method, whose own argument
/// conversion may run Python code (a bad key's `__repr__`); this one then takes the mutex.
#[inline]
fn with_table<T>(slf: &Bound<'_, RateTable>, step: impl FnOnce(&mut Local, Source) -> T) -> PyResult<T> {
    let decided = {
        // guards borrowed from `slf` (no reference count taken), declared before `table`
        let (mut exclusive, shared);
        let mut locked;
        let (table, source) = match PyClassGuardMut::try_from(slf) {
            Ok(guard) => {
                exclusive = guard;
                let source = exclusive.source;
                (exclusive.inner.get_mut().unwrap_or_else(PoisonError::into_inner), source)
            }
            Err(_) => {
                shared = PyClassGuard::try_from(slf)?;
                locked = lock(&shared.inner);
                (&mut *locked, shared.source)
            }
        };
        step(table, source)
    };
    Ok(decided)
}

#[pymethods]
impl RateTable {
    #[new]
    #[pyo3(signature = (rule, source = "store"))]
    fn new(rule: &RateRule, source: &str) -> PyResult<Self> {
        Ok(RateTable {
            rule: rule.clone(),
            source: Source::parse(source)?,
            inner: Mutex::new(Local::new(rl::RateTable::new(rule.cfg))),
        })
    }

    #[getter]
    fn rule(&self) -> RateRule {
        self.rule.clone()
    }

    /// Spend `cost` units of `key` if they fit; `now` defaults to `rate_clock_us()`.
    #[pyo3(signature = (key = None, cost = None, now = None))]
    fn acquire(
        slf: &Bound<'_, Self>,
        key: Option<&Bound<'_, PyAny>>,
        cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let ((key_in, cost), given) = (key_and_cost(key, cost)?, given_now(now)?);
        let decided = with_table(slf, |local, source| {
            let now = given.unwrap_or_else(clock_us);
            let decided = local.spend(
                key_in,
                |table, at| table.acquire_at(at, cost, now),
                |table, key| table.acquire_keyed(key, cost, now),
            );
            decided.map(|d| Decision::from_core(d, now, source))
        })?;
        decided.map_err(|refused| refused.into_py(key))
    }

    /// `acquire(key, cost).allowed` on the table's clock, without building a `Decision`:
    /// the same decision and the same state change, for callers that need only yes or no.
    #[pyo3(signature = (key = None, cost = None))]
    fn hit(slf: &Bound<'_, Self>, key: Option<&Bound<'_, PyAny>>, cost: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let (key_in, cost) = key_and_cost(key, cost)?;
        let decided = with_table(slf, |local, _| local.hit(key_in, cost))?;
        decided.map_err(|refused| refused.into_py(key))
    }

    #[pyo3(signature = (key = None, now = None))]
    fn peek(&self, key: Option<&Bound<'_, PyAny>>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Decision> {
        let (key, given) = (table_key(key)?, given_now(now)?);
        let now = given.unwrap_or_else(clock_us);
        let d = lock(&self.inner).table.peek(key, now); // the guard drops here: errors are built unlocked
        Ok(Decision::from_core(d.map_err(errors::to_py)?, now, self.source))
    }

    #[pyo3(signature = (key = None, now = None))]
    fn reset(&self, key: Option<&Bound<'_, PyAny>>, now: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let (key, now) = (table_key(key)?, now_arg(now)?);
        let reset = lock(&self.inner).table.reset(key, now);
        reset.map_err(errors::to_py)
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
        let (key, given) = (table_key(Some(key))?, given_now(now)?);
        let (min, max, lease) = lease_args(min_units, max_units, lease_us)?;
        let now = given.unwrap_or_else(clock_us);
        let g = lock(&self.inner).table.lease(key, min, max, lease, now);
        Ok(grant_row(g.map_err(errors::to_py)?, now))
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
        let (key, given) = (table_key(Some(key))?, given_now(now)?);
        let (token, units) = (sint_arg(token, "token")?, uint_arg(units, "units")?);
        let refunded = lock(&self.inner).table.refund(key, token, units, given.unwrap_or_else(clock_us));
        refunded.map_err(errors::to_py)
    }

    #[pyo3(signature = (now = None))]
    fn live_keys(&self, now: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let now = now_arg(now)?;
        Ok(lock(&self.inner).table.live_keys(now))
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
        let (key, cost, given) = (key_arg(key)?, cost_arg(cost)?, given_now(now)?);
        let now = given.unwrap_or_else(clock_us);
        let spent = lock(&self.inner).spend(key, cost, now);
        Ok(match spent.map_err(errors::to_py)? {
            Spend::Decided(d) => Some(Decision::from_core(d, now, Source::Lease)),
            Spend::NeedBlock { .. } => None,
        })
    }

    /// `spend(key, cost)` as a bool (None: a block must be leased first), without a `Decision`.
    #[pyo3(signature = (key = None, cost = None))]
    fn hit(&self, key: Option<&Bound<'_, PyAny>>, cost: Option<&Bound<'_, PyAny>>) -> PyResult<Option<bool>> {
        let (key, cost) = (key_arg(key)?, cost_arg(cost)?);
        let spent = lock(&self.inner).spend(key, cost, clock_us());
        Ok(match spent.map_err(errors::to_py)? {
            Spend::Decided(d) => Some(d.allowed),
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
        let added = lock(&self.inner).add(key, granted, token, start, end, sent, received);
        added.map_err(errors::to_py)
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
