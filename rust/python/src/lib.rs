//! `lockstep._core`: thin pyo3 glue over `lockstep-core`. No logic lives here: argument
//! conversion, GIL handling, and the one error map (`errors.rs`).

use pyo3::prelude::*;

mod args;
mod envelope;
mod errors;
mod lease_file;
mod leases;
mod pubsub;
mod ratelimit;
mod resp;

/// Check a name (channel, lock, agent, namespace...); raises InvalidNameError.
#[pyfunction]
#[pyo3(signature = (name, what = "name"))]
fn validate_name(name: &str, what: &str) -> PyResult<()> {
    lockstep_core::names::validate_name(name, what).map_err(errors::to_py)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_NAME_LEN", lockstep_core::names::MAX_NAME_LEN)?;
    m.add_function(wrap_pyfunction!(validate_name, m)?)?;
    envelope::register(m)?;
    resp::register(m)?;
    pubsub::register(m)?;
    leases::register(m)?;
    lease_file::register(m)?;
    ratelimit::register(m)?;
    Ok(())
}
