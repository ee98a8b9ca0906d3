//! The one error type of the core. The glue crate maps each variant to a class of
//! `lockstep.errors` in one place (`rust/python/src/errors.rs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A channel, lock, agent or other name breaks the documented pattern.
    InvalidName { what: String, name: String, reason: String },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidName { what, name, reason } => write!(f, "invalid {what} name {name:?}: {reason}"),
        }
    }
}

impl std::error::Error for CoreError {}
