//! Lease bookkeeping: pure, time passed in, no I/O.
//!
//! Two halves:
//! * [`HeldLeases`]: a client's view of the leases it holds, for the one renewer of a
//!   coordinator: local deadlines (computed from when each request was *sent*, so they
//!   are conservative), when each lease is next due for renewal (ttl/3, jittered by a
//!   seeded xorshift), and the highest fence seen per resource, so a fence that goes
//!   backwards (a backend that lost acknowledged writes) is caught.
//! * [`LeaseTable`]: the authoritative lease state of the local drivers (the memory
//!   driver keeps one; the SQLite driver loads the rows of the resources a transaction
//!   touches into one, applies the operation and writes them back): per resource a slot
//!   count, the holders with their expiry, fence and owner, a fence counter that only
//!   grows, and a FIFO queue of waiters whose entries expire unless refreshed.
//!
//! The Redis driver runs the same rules in Lua (`python/lockstep/drivers/lua/lease_*.lua`);
//! the contract tests hold every driver to them.
//!
//! Times are seconds as `f64` on whatever clock the caller uses (monotonic for the memory
//! driver and the renewer, the host's wall clock for SQLite). Every input is checked:
//! bad values return [`CoreError::InvalidArgument`], never a panic.

mod held;
mod record;
mod rng;
mod table;

pub use held::{HeldLease, HeldLeases, RENEW_FRACTION, RENEW_JITTER};
pub use record::{decode_record, encode_record, record_size};
pub use rng::XorShift;
pub use table::{Acquire, AcquireRequest, Blocker, Holder, LeaseTable, Released, Resource, Waiter, HANDOFF_RECHECK};

use crate::error::CoreError;

fn invalid(reason: String) -> CoreError {
    CoreError::InvalidArgument { reason }
}

/// A point in time: any finite number.
pub(crate) fn check_time(what: &str, t: f64) -> Result<f64, CoreError> {
    if t.is_finite() {
        Ok(t)
    } else {
        Err(invalid(format!("{what} must be a finite number of seconds, got {t}")))
    }
}

/// A duration: finite and above zero.
pub(crate) fn check_ttl(what: &str, ttl: f64) -> Result<f64, CoreError> {
    if ttl.is_finite() && ttl > 0.0 {
        Ok(ttl)
    } else {
        Err(invalid(format!("{what} must be a positive, finite number of seconds, got {ttl}")))
    }
}

pub(crate) fn check_token(what: &str, token: &str) -> Result<(), CoreError> {
    if token.is_empty() {
        Err(invalid(format!("{what} must not be empty")))
    } else {
        Ok(())
    }
}

/// One or more resource names, none empty, none repeated.
pub(crate) fn check_resources(resources: &[String]) -> Result<(), CoreError> {
    if resources.is_empty() {
        return Err(invalid("a lease needs at least one resource".into()));
    }
    for (i, name) in resources.iter().enumerate() {
        if name.is_empty() {
            return Err(invalid(format!("resource {i} is an empty name")));
        }
        if resources[..i].contains(name) {
            return Err(invalid(format!("resource {name:?} is listed twice")));
        }
    }
    Ok(())
}
