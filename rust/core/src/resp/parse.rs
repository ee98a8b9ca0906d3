//! The incremental reply parser.
//!
//! Bytes are appended with `feed`; `next_reply` hands out complete replies that borrow
//! the parser's buffer (bulk strings are not copied). A reply that is already complete is
//! built in one pass. A partial one is tracked by the resumable scanner (`scan.rs`), so
//! a large reply arriving in many chunks costs linear time, not a re-parse per chunk.
//! The buffer is compacted lazily, on `feed`, once the consumed part dominates it.
//!
//! Any malformed input is a `CoreError::Protocol` naming the byte offset in the stream
//! and what was expected. The parser then stays failed: a byte stream that went wrong
//! once cannot be re-synchronised, so every later call returns the same error.

use super::item::{depth_error, read_item, Aggregate, Head, Limits};
use super::scan::Scan;
use crate::error::CoreError;

/// Default largest bulk string accepted, in bytes (Redis' own `proto-max-bulk-len`).
pub const DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;
/// Default deepest nesting of arrays, maps, sets and pushes.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// `max_depth` may not be set above this (building replies must stay cheap).
pub const MAX_DEPTH_LIMIT: usize = 1000;
/// Longest header or simple line (simple string, error, integer...) accepted, in bytes.
pub const MAX_LINE: usize = 1024 * 1024;

/// Compact only when at least this much has been consumed (and it is half the buffer).
const COMPACT_MIN: usize = 64 * 1024;
/// After a big reply, give memory back when the buffer is this large and empty.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// One reply. Strings borrow the parser's buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply<'a> {
    Simple(&'a [u8]),
    /// An error reply (`-ERR ...` or a RESP3 blob error): a value, not a parse failure.
    Error(&'a [u8]),
    Integer(i64),
    Bulk(&'a [u8]),
    /// Null bulk `$-1`, null array `*-1`, or RESP3 `_`.
    Nil,
    Array(Vec<Reply<'a>>),
    Boolean(bool),
    Double(f64),
    Map(Vec<(Reply<'a>, Reply<'a>)>),
    Set(Vec<Reply<'a>>),
    Push(Vec<Reply<'a>>),
}

struct Frame<'a> {
    kind: Aggregate,
    want: usize,
    items: Vec<Reply<'a>>,
}

impl<'a> Frame<'a> {
    fn finish(self) -> Reply<'a> {
        match self.kind {
            Aggregate::Array => Reply::Array(self.items),
            Aggregate::Set => Reply::Set(self.items),
            Aggregate::Push => Reply::Push(self.items),
            Aggregate::Map => {
                let mut pairs = Vec::with_capacity(self.items.len() / 2);
                let mut items = self.items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((k, v));
                }
                Reply::Map(pairs)
            }
        }
    }
}

/// Build the reply starting at `pos`, iteratively (no recursion on hostile depth).
/// `Ok(None)`: incomplete. On success, also returns where the reply ends.
fn build(buf: &[u8], mut pos: usize, base: u64, limits: Limits) -> Result<Option<(Reply<'_>, usize)>, CoreError> {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    loop {
        let item_at = pos;
        let Some(item) = read_item(buf, pos, base, limits)? else { return Ok(None) };
        pos = item.next;
        let mut value = match item.head {
            Head::Leaf(reply) => reply,
            Head::Open(kind, 0) => Frame { kind, want: 0, items: Vec::new() }.finish(),
            Head::Open(kind, want) => {
                if stack.len() >= limits.max_depth {
                    return Err(depth_error(base + item_at as u64, limits.max_depth));
                }
                // Every item takes at least 3 bytes, so never reserve more than could follow.
                let cap = want.min(buf.len().saturating_sub(pos) / 3);
                stack.push(Frame { kind, want, items: Vec::with_capacity(cap) });
                continue;
            }
        };
        loop {
            let Some(frame) = stack.last_mut() else { return Ok(Some((value, pos))) };
            frame.items.push(value);
            if frame.items.len() < frame.want {
                break;
            }
            match stack.pop() {
                Some(done) => value = done.finish(),
                None => return Err(CoreError::protocol(base + pos as u64, "internal: aggregate stack underflow")),
            }
        }
    }
}

/// `$<len>\r\n<bytes>\r\n` at the front of `b`, if complete and plain.
fn fast_bulk(b: &[u8], max_bulk: usize) -> Option<(&[u8], &[u8])> {
    let rest = b.strip_prefix(b"$")?;
    let digits = rest.iter().take(20).take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let len = usize::try_from(crate::decimal::parse_digits(rest.get(..digits)?)?).ok()?;
    if len > max_bulk {
        return None;
    }
    let rest = rest.get(digits..)?.strip_prefix(b"\r\n")?;
    let value = rest.get(..len)?;
    let rest = rest.get(len..)?.strip_prefix(b"\r\n")?;
    Some((value, rest))
}

/// The incremental parser. See the module docs.
#[derive(Debug)]
pub struct RespParser {
    buf: Vec<u8>,
    /// Start of the first unconsumed reply in `buf`.
    start: usize,
    /// Stream offset of `buf[0]` (bytes dropped by compaction).
    base: u64,
    limits: Limits,
    /// Tracks a reply known to be incomplete; `None` when no partial reply is pending.
    scan: Option<Scan>,
    failed: Option<CoreError>,
}

impl RespParser {
    /// `max_depth` must be 1 to `MAX_DEPTH_LIMIT`.
    pub fn new(max_bulk: usize, max_depth: usize) -> Result<Self, CoreError> {
        if max_depth == 0 || max_depth > MAX_DEPTH_LIMIT {
            return Err(CoreError::InvalidArgument {
                reason: format!("max_depth must be 1 to {MAX_DEPTH_LIMIT}, got {max_depth}"),
            });
        }
        Ok(RespParser {
            buf: Vec::new(),
            start: 0,
            base: 0,
            limits: Limits { max_bulk, max_depth },
            scan: None,
            failed: None,
        })
    }

    /// Bytes received but not yet handed out as replies.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The error the parser failed with, if it did.
    pub fn error(&self) -> Option<&CoreError> {
        self.failed.as_ref()
    }

    fn fail(&mut self, err: CoreError) -> CoreError {
        self.failed = Some(err.clone());
        err
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<(), CoreError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.compact();
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf.shrink_to(COMPACT_MIN);
            }
        } else if self.start >= COMPACT_MIN && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
        } else {
            return;
        }
        self.base += self.start as u64;
        if let Some(scan) = &mut self.scan {
            scan.shift(self.start);
        }
        self.start = 0;
    }

    /// A pub/sub `message` frame at the front, read without building a `Reply` (the
    /// subscriber's hot path): `Some((channel, payload))`. `None` when the next reply is
    /// anything else, is not all here yet, or looks unusual in any way: then call
    /// [`Self::next_reply`], which reads it (or fails) the general way.
    pub fn next_message_frame(&mut self) -> Option<(&[u8], &[u8])> {
        if self.failed.is_some() || self.scan.is_some() {
            return None;
        }
        let max_bulk = self.limits.max_bulk;
        let buf = self.buf.get(self.start..)?;
        let rest = buf.strip_prefix(b"*3\r\n$7\r\nmessage\r\n")?;
        let (channel, rest) = fast_bulk(rest, max_bulk)?;
        let (payload, rest) = fast_bulk(rest, max_bulk)?;
        self.start += buf.len() - rest.len();
        Some((channel, payload))
    }

    /// Consume up to `max` plain integer or bulk-string replies at the front without
    /// building them (the replies of a pipeline of `PUBLISH`es or `XADD`s, which nobody
    /// reads); returns how many. Stops at anything else, incomplete or unusual, which
    /// [`Self::next_reply`] then reads (or fails) the general way.
    pub fn skip_plain(&mut self, max: usize) -> usize {
        if self.failed.is_some() || self.scan.is_some() {
            return 0;
        }
        let max_bulk = self.limits.max_bulk;
        let mut skipped = 0;
        while skipped < max {
            let Some(buf) = self.buf.get(self.start..) else { break };
            let rest = match buf.first() {
                Some(b':') => {
                    let body = buf.get(1..).unwrap_or_default();
                    // up to 18 digits: surely an i64 (a longer one is checked the general way)
                    let digits = body.iter().take(19).take_while(|c| c.is_ascii_digit()).count();
                    match body.get(digits..).and_then(|r| r.strip_prefix(b"\r\n")) {
                        Some(rest) if (1..=18).contains(&digits) => rest,
                        _ => break,
                    }
                }
                Some(b'$') => match fast_bulk(buf, max_bulk) {
                    Some((_, rest)) => rest,
                    None => break,
                },
                _ => break,
            };
            self.start += buf.len() - rest.len();
            skipped += 1;
        }
        skipped
    }

    /// The next complete reply, or `None` until more bytes arrive.
    pub fn next_reply(&mut self) -> Result<Option<Reply<'_>>, CoreError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.start >= self.buf.len() {
            return Ok(None);
        }
        if let Some(scan) = self.scan.as_mut() {
            match scan.resume(&self.buf, self.base, self.limits) {
                Ok(None) => return Ok(None),
                Ok(Some(_end)) => self.scan = None,
                Err(e) => return Err(self.fail(e)),
            }
        }
        // Only fields other than `buf` are written below while a reply borrows `buf`.
        match build(&self.buf, self.start, self.base, self.limits) {
            Ok(Some((reply, end))) => {
                self.start = end;
                Ok(Some(reply))
            }
            Ok(None) => {
                let mut scan = Scan::new(self.start);
                let scanned = scan.resume(&self.buf, self.base, self.limits);
                match scanned {
                    Ok(None) => {
                        self.scan = Some(scan);
                        Ok(None)
                    }
                    Ok(Some(_)) => {
                        let err = CoreError::protocol(
                            self.base + self.start as u64,
                            "internal: scanner and builder disagree",
                        );
                        self.failed = Some(err.clone());
                        Err(err)
                    }
                    Err(e) => {
                        self.failed = Some(e.clone());
                        Err(e)
                    }
                }
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }
}
