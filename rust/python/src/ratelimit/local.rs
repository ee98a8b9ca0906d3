//! A `RateTable`'s state behind its mutex (`Local`: the core table, the last-key cache
//! and the clock bound) and the hot path of `hit` and `acquire` on it: keys taken as
//! Python gives them, decided with as little as possible read, converted or counted.

use lockstep_core::ratelimit::{self as rl, HashedKey, SlotRef};
use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::{clock_us, cost_arg, key_arg, ticks};
use crate::errors;

/// The table, and where the last key decided on lives: a hammered key, asked again as the
/// same `str` object, goes straight to its slot. The object is held (so its address cannot
/// pass to another object while cached) and compared by identity; the slot is used only
/// while the table's generation says no slot has moved or gone since (`SlotRef`). Only
/// exact `str` keys are held: dropping one runs no Python code, whatever lock is held.
pub(super) struct Local {
    pub(super) table: rl::RateTable,
    last: Option<(Py<PyString>, SlotRef)>,
    /// the address of the last key looked up by its text: a key is cached only when asked
    /// twice in a row, so keys taken in turn cost no reference counting (only a hint: the
    /// cache itself holds its key)
    seen: usize,
    bound: ClockBound,
}

/// An upper bound on `clock_us()`, from the cycle counter (`ticks()`), so that `hit` can
/// refuse a hammered key without reading the clock: when the key's state refuses at every
/// time before some `T` (`RateTable::refused_before`) and the clock is surely below `T`,
/// the answer is no, and a refusal changes no state. Nothing is ever admitted, stamped or
/// timed by this bound, so however wrong the counter were, it could not admit one unit
/// more (the worst it could do is refuse where a reading of the clock would have
/// admitted, which needs the counter to run more than twice slower than the clock).
///
/// The bound: the last clock reading `us` (its true value below `us + 1`), taken after a
/// counter reading `tick`, plus twice the time the counter says has passed since, at the
/// rate measured between the first such pair and the last (over at least 1 ms, so the
/// rate is known within a fraction of a percent; the factor 2 covers that, any slewing
/// of the clock, and more). A counter reading below `tick` (another core's counter
/// behind, a migrated VM) gives no bound; the clock is read instead.
#[derive(Default)]
struct ClockBound {
    us: i64,
    tick: u64,
    first: Option<(i64, u64)>,
    /// clock microseconds per tick, doubled; 0 until the rate is measured
    us_per_tick_x2: f64,
}

impl ClockBound {
    /// A clock reading `us`, taken after the counter read `tick`.
    fn observe(&mut self, tick: u64, us: i64) {
        let (us0, tick0) = *self.first.get_or_insert((us, tick));
        (self.us, self.tick) = (us, tick);
        if us - us0 >= 1_000 && tick > tick0 {
            self.us_per_tick_x2 = 2.0 * (us - us0) as f64 / (tick - tick0) as f64;
        }
    }

    /// Surely above `clock_us()` now, when the counter reads `tick`; None when unknown.
    #[inline]
    fn above(&self, tick: u64) -> Option<i64> {
        let passed = tick.checked_sub(self.tick)? as f64 * self.us_per_tick_x2;
        (self.us_per_tick_x2 > 0.0 && passed < 1e12).then(|| self.us + 2 + passed as i64)
    }
}

/// A key as the table hashes it: by the hash Python keeps for its text (see the core's
/// `key.rs`): the object's own when it is an exact `str` (cached in it, read without its
/// text), else that of an exact `str` made from the text (a subclass may hash otherwise).
/// Not a string, or not valid Unicode: InvalidNameError.
pub(super) fn table_key<'a>(key: Option<&'a Bound<'_, PyAny>>) -> PyResult<HashedKey<'a>> {
    let text = key_arg(key)?;
    let hash = match key.map(|k| k.cast_exact::<PyString>()) {
        Some(Ok(exact)) => exact.hash()?,
        _ => match key {
            Some(k) => PyString::new(k.py(), text).hash()?,
            None => Python::attach(|py| PyString::new(py, text).hash())?,
        },
    };
    Ok(HashedKey { text, hash: hash as u64 })
}

/// The key of a `hit` or `acquire`: an exact `str`, whose text and hash are read only when
/// the last-key cache misses, or a key read (and checked) before the table was borrowed.
#[derive(Clone, Copy)]
pub(super) enum KeyIn<'a, 'py> {
    Exact(&'a Bound<'py, PyString>),
    Read(HashedKey<'a>),
}

impl<'a, 'py> KeyIn<'a, 'py> {
    #[inline(always)]
    fn new(key: Option<&'a Bound<'py, PyAny>>) -> PyResult<Self> {
        match key.map(|k| k.cast_exact::<PyString>()) {
            Some(Ok(exact)) => Ok(KeyIn::Exact(exact)),
            _ => table_key(key).map(KeyIn::Read),
        }
    }
}

/// Why a decision was refused inside the borrow: the core said no, or the key's text could
/// not be read (its error, which may show the key's repr, is built after the release).
///
/// The core's error is boxed: the hot path returns `Result<bool, Refused>`, and a small
/// one stays in registers (a large one is built on the stack and copied out, which
/// stalls).
pub(super) enum Refused {
    Core(Box<CoreError>),
    BadKey,
}

impl From<CoreError> for Refused {
    fn from(e: CoreError) -> Self {
        Refused::Core(Box::new(e))
    }
}

impl Refused {
    pub(super) fn into_py(self, key: Option<&Bound<'_, PyAny>>) -> PyErr {
        match self {
            Refused::Core(e) => errors::to_py(*e),
            Refused::BadKey => match key_arg(key) {
                Err(e) => e,
                Ok(text) => super::invalid(format!("rate-limit key {text:?} could not be read")),
            },
        }
    }
}

impl Local {
    pub(super) fn new(table: rl::RateTable) -> Self {
        Local { table, last: None, seen: 0, bound: ClockBound::default() }
    }

    /// Where the last key's state is, when `key` is that key again.
    #[inline]
    fn cached(&self, key: KeyIn<'_, '_>) -> Option<SlotRef> {
        match (key, &self.last) {
            (KeyIn::Exact(exact), Some((last, slot))) if last.is(exact) => Some(*slot),
            _ => None,
        }
    }

    /// `at` on the last key's slot when `key` is that key again; else `keyed`, by its text.
    #[inline]
    pub(super) fn spend<T>(
        &mut self,
        key: KeyIn<'_, '_>,
        at: impl FnOnce(&mut rl::RateTable, SlotRef) -> Option<Result<T, CoreError>>,
        keyed: impl FnOnce(&mut rl::RateTable, HashedKey<'_>) -> Result<(T, SlotRef), CoreError>,
    ) -> Result<T, Refused> {
        if let Some(slot) = self.cached(key) {
            if let Some(decided) = at(&mut self.table, slot) {
                return decided.map_err(Refused::from);
            }
        }
        let hashed = match key {
            KeyIn::Exact(exact) => {
                // neither runs Python code on an exact `str`; a lone surrogate fails to_str
                let text = exact.to_str().map_err(|_| Refused::BadKey)?;
                HashedKey { text, hash: exact.hash().map_err(|_| Refused::BadKey)? as u64 }
            }
            KeyIn::Read(hashed) => hashed,
        };
        let (decided, slot) = keyed(&mut self.table, hashed).map_err(Refused::from)?;
        if let KeyIn::Exact(exact) = key {
            let address = exact.as_ptr() as usize;
            if address == self.seen {
                if let Some((old, _)) = self.last.replace((exact.clone().unbind(), slot)) {
                    old.drop_ref(exact.py()); // an exact `str`: no Python code runs
                }
            }
            self.seen = address;
        }
        Ok(decided)
    }

    /// `admit(key, cost)` on the table's clock. A hammered key that is surely refused
    /// whatever the clock now reads is refused without reading it (see `ClockBound`).
    #[inline]
    pub(super) fn hit(&mut self, key: KeyIn<'_, '_>, cost: u64) -> Result<bool, Refused> {
        if let Some(slot) = self.cached(key) {
            if let Some(until) = self.table.refused_before(slot, cost) {
                let tick = ticks();
                if self.bound.above(tick).is_some_and(|above| above < until) {
                    return Ok(false);
                }
                let now = clock_us();
                self.bound.observe(tick, now);
                if let Some(decided) = self.table.admit_at(slot, cost, now) {
                    return decided.map_err(Refused::from);
                }
            }
        }
        let now = clock_us();
        self.spend(key, |table, at| table.admit_at(at, cost, now), |table, key| table.admit_keyed(key, cost, now))
    }
}

/// The key and the cost of a `hit` or `acquire`; a bad key is reported before a bad cost.
/// Always inlined: returned through memory, the pair is read back wider than it was
/// written, which stalls the hot path on store forwarding.
#[inline(always)]
pub(super) fn key_and_cost<'a, 'py>(
    key: Option<&'a Bound<'py, PyAny>>,
    cost: Option<&Bound<'py, PyAny>>,
) -> PyResult<(KeyIn<'a, 'py>, u64)> {
    let key_in = KeyIn::new(key)?;
    match cost_arg(cost) {
        Ok(cost) => Ok((key_in, cost)),
        Err(e) => Err(key_arg(key).err().unwrap_or(e)),
    }
}
