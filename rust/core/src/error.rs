//! The one error type of the core. The glue crate maps each variant to a class of
//! `lockstep.errors` in one place (`rust/python/src/errors.rs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A channel, lock, agent or other name breaks the documented pattern.
    InvalidName { what: String, name: String, reason: String },
    /// A message envelope cannot be encoded or decoded; `reason` says why.
    Envelope { reason: String },
    /// An envelope (or a foreign payload) is over the size limit, in bytes.
    MessageTooLarge { size: usize, limit: usize },
    /// Malformed RESP; `offset` counts bytes from the start of the stream.
    Protocol { offset: u64, reason: String },
    /// A codec name other than the accepted ones.
    UnknownCodec { codec: String },
    /// An argument is outside what the operation accepts (e.g. an empty command).
    InvalidArgument { reason: String },
    /// A configuration value is wrong (a rate string, a limit, two configs for one name).
    Config { reason: String },
    /// A fence granted for `resource` is not above `highest`, the highest seen before:
    /// the backend lost acknowledged writes (e.g. Redis restarted without AOF).
    FenceRegression { resource: String, fence: u64, highest: u64 },
}

impl CoreError {
    pub(crate) fn envelope(reason: impl Into<String>) -> Self {
        CoreError::Envelope { reason: reason.into() }
    }

    pub(crate) fn protocol(offset: u64, reason: impl Into<String>) -> Self {
        CoreError::Protocol { offset, reason: reason.into() }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidName { what, name, reason } => write!(f, "invalid {what} name {name:?}: {reason}"),
            CoreError::Envelope { reason } => write!(f, "bad message envelope: {reason}"),
            CoreError::MessageTooLarge { size, limit } => {
                write!(f, "message is {size} bytes; the limit is {limit} bytes (max_size)")
            }
            CoreError::Protocol { offset, reason } => write!(f, "malformed RESP at byte {offset}: {reason}"),
            CoreError::UnknownCodec { codec } => {
                let shown: String = codec.chars().take(40).collect();
                write!(f, "unknown codec {shown:?}; accepted codecs: \"json\", \"msgpack\"")
            }
            CoreError::InvalidArgument { reason } | CoreError::Config { reason } => f.write_str(reason),
            CoreError::FenceRegression { resource, fence, highest } => write!(
                f,
                "fence {fence} granted for {resource:?} is not above {highest}, the highest seen before: \
                 the backend went backwards (restarted without its acknowledged writes?)"
            ),
        }
    }
}

impl std::error::Error for CoreError {}
