//! lockstep's pure-Rust core. Bytes and bookkeeping only: time is passed in, nothing does I/O.

pub mod error;
pub mod names;

pub use error::CoreError;
