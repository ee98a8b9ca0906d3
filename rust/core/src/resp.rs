//! RESP framing: packing commands into one buffer, and an incremental reply parser.
//!
//! RESP2 is fully supported. Of RESP3, the types a RESP2 client may still meet are
//! parsed: null `_`, boolean `#`, double `,`, map `%`, set `~`, push `>`, verbatim
//! string `=` (delivered as a bulk string without its `txt:` format prefix) and blob
//! error `!` (delivered as an error reply). Big numbers `(` and attributes `|` are
//! rejected with `CoreError::Protocol`: lockstep never sends `HELLO 3`, so seeing one
//! means the stream is not what we think it is.

mod item;
mod pack;
mod parse;
mod scan;

pub(crate) use pack::write_header;
pub use pack::{each_head, pack_command, pack_commands, pack_each, pack_each_iter, pack_publish, Arg};
pub use parse::{Reply, RespParser, DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT, MAX_LINE};
