//! lockstep's pure-Rust core. Bytes and bookkeeping only: time is passed in, nothing does I/O.

mod decimal;
pub mod envelope;
pub mod error;
pub mod leases;
mod msgpack;
pub mod names;
pub mod pubsub;
pub mod ratelimit;
pub mod resp;

pub use error::CoreError;
