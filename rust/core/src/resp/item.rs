//! Reading one item: a header line (and, for bulk types, its payload). Shared by the
//! one-pass builder (`parse.rs`) and the resumable scanner (`scan.rs`).

use memchr::memchr;

use super::parse::{Reply, MAX_LINE};
use crate::error::CoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Aggregate {
    Array,
    Map,
    Set,
    Push,
}

/// What one header (plus its payload, for bulk types) turned out to be.
pub(super) enum Head<'a> {
    Leaf(Reply<'a>),
    /// An aggregate with `children` items to follow (a map of n pairs has 2n).
    Open(Aggregate, usize),
}

pub(super) struct Item<'a> {
    pub head: Head<'a>,
    pub next: usize,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub max_bulk: usize,
    pub max_depth: usize,
}

fn shown(bytes: &[u8]) -> String {
    let cut = bytes.get(..bytes.len().min(40)).unwrap_or_default();
    format!("{:?}", String::from_utf8_lossy(cut))
}

fn parse_i64(line: &[u8], offset: u64, what: &str) -> Result<i64, CoreError> {
    let bad = || CoreError::protocol(offset, format!("expected {what}, got {}", shown(line)));
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.len() > 19 {
        return Err(bad());
    }
    let magnitude = crate::decimal::parse_digits(digits).ok_or_else(bad)?;
    let value = if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.ok_or_else(bad)
}

/// A length header: -1 (null) or a non-negative count.
fn parse_len(line: &[u8], offset: u64) -> Result<Option<usize>, CoreError> {
    match parse_i64(line, offset, "a length")? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| CoreError::protocol(offset, format!("expected a length of -1 or more, got {n}"))),
    }
}

/// Read the item starting at `pos`. `Ok(None)`: not all of it has arrived yet.
pub(super) fn read_item<'a>(
    buf: &'a [u8],
    pos: usize,
    base: u64,
    limits: Limits,
) -> Result<Option<Item<'a>>, CoreError> {
    let at = |p: usize| base + p as u64;
    let Some(&tag) = buf.get(pos) else { return Ok(None) };
    match tag {
        b'+' | b'-' | b':' | b'$' | b'=' | b'!' | b'*' | b'%' | b'~' | b'>' | b'_' | b'#' | b',' => {}
        b'(' | b'|' => {
            return Err(CoreError::protocol(
                at(pos),
                format!("RESP3 type {:?} (big number or attribute) is not supported", tag as char),
            ))
        }
        other => {
            return Err(CoreError::protocol(
                at(pos),
                format!("expected a RESP type byte (one of + - : $ * _ # , % ~ > = !), got {}", shown(&[other])),
            ))
        }
    }
    let line_start = pos + 1;
    let rest = buf.get(line_start..).unwrap_or_default();
    let window = rest.get(..rest.len().min(MAX_LINE + 1)).unwrap_or_default();
    let Some(cr) = memchr(b'\r', window) else {
        if rest.len() > MAX_LINE {
            return Err(CoreError::protocol(at(pos), format!("line longer than {MAX_LINE} bytes without CRLF")));
        }
        return Ok(None);
    };
    let line = window.get(..cr).unwrap_or_default();
    let lf = line_start + cr + 1;
    match buf.get(lf) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(CoreError::protocol(at(lf), "expected \\n after \\r")),
    }
    let next = lf + 1;
    let leaf = |reply: Reply<'a>| Ok(Some(Item { head: Head::Leaf(reply), next }));
    let open = |kind: Aggregate, n: usize| Ok(Some(Item { head: Head::Open(kind, n), next }));
    match tag {
        b'+' => leaf(Reply::Simple(line)),
        b'-' => leaf(Reply::Error(line)),
        b':' => leaf(Reply::Integer(parse_i64(line, at(line_start), "an integer")?)),
        b'$' | b'=' | b'!' => {
            let Some(len) = parse_len(line, at(line_start))? else {
                if tag == b'$' {
                    return leaf(Reply::Nil);
                }
                return Err(CoreError::protocol(at(line_start), format!("{:?} strings cannot be null", tag as char)));
            };
            if len > limits.max_bulk {
                return Err(CoreError::protocol(
                    at(line_start),
                    format!("bulk length {len} is over the limit of {} bytes (max_bulk)", limits.max_bulk),
                ));
            }
            let end = next.saturating_add(len);
            // Check the CRLF as soon as its bytes arrive, so a wrong length fails early.
            let crlf_ok = [(end, b'\r'), (end.saturating_add(1), b'\n')];
            if let Some(&(bad, _)) = crlf_ok.iter().find(|&&(i, want)| buf.get(i).is_some_and(|&b| b != want)) {
                return Err(CoreError::protocol(at(bad), format!("expected CRLF after a bulk string of {len} bytes")));
            }
            if buf.len() < end.saturating_add(2) {
                return Ok(None);
            }
            let payload = buf.get(next..end).unwrap_or_default();
            let after = end + 2;
            let reply = match tag {
                b'$' => Reply::Bulk(payload),
                b'!' => Reply::Error(payload),
                _ => match payload.get(3) {
                    Some(b':') => Reply::Bulk(payload.get(4..).unwrap_or_default()),
                    _ => {
                        return Err(CoreError::protocol(
                            at(next),
                            "expected a verbatim string to start with a 3-byte format and ':'",
                        ))
                    }
                },
            };
            Ok(Some(Item { head: Head::Leaf(reply), next: after }))
        }
        b'*' | b'%' | b'~' | b'>' => {
            let kind = match tag {
                b'*' => Aggregate::Array,
                b'%' => Aggregate::Map,
                b'~' => Aggregate::Set,
                _ => Aggregate::Push,
            };
            match parse_len(line, at(line_start))? {
                None if kind == Aggregate::Array => leaf(Reply::Nil),
                None => {
                    Err(CoreError::protocol(at(line_start), format!("{:?} aggregates cannot be null", tag as char)))
                }
                Some(n) if kind == Aggregate::Map => match n.checked_mul(2) {
                    Some(children) => open(kind, children),
                    None => Err(CoreError::protocol(at(line_start), format!("map of {n} pairs is too large"))),
                },
                Some(n) => open(kind, n),
            }
        }
        b'_' if line.is_empty() => leaf(Reply::Nil),
        b'_' => Err(CoreError::protocol(at(line_start), format!("expected CRLF right after '_', got {}", shown(line)))),
        b'#' => match line {
            b"t" => leaf(Reply::Boolean(true)),
            b"f" => leaf(Reply::Boolean(false)),
            _ => Err(CoreError::protocol(at(line_start), format!("expected a boolean t or f, got {}", shown(line)))),
        },
        b',' => match std::str::from_utf8(line).ok().filter(|s| !s.is_empty()).and_then(|s| s.parse::<f64>().ok()) {
            Some(v) => leaf(Reply::Double(v)),
            None => Err(CoreError::protocol(at(line_start), format!("expected a double, got {}", shown(line)))),
        },
        _ => Err(CoreError::protocol(at(pos), "internal: type byte checked above")),
    }
}

pub(super) fn depth_error(offset: u64, max_depth: usize) -> CoreError {
    CoreError::protocol(offset, format!("replies nested deeper than {max_depth} levels (max_depth)"))
}
