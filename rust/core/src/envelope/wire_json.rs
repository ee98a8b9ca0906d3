//! The JSON form of the envelope. Encoding writes the fixed key order by hand (names are
//! validated, so they never need escaping); decoding is strict, via serde_json.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Memo, Meta, ENVELOPE_VERSION};
use crate::error::CoreError;

pub const MARKER: &[u8] = b"{\"ls\":";

const HEAD: &[u8] = b"{\"ls\":1,\"id\":\"";
const FROM: &[u8] = b"\",\"from\":\"";
const SEQ: &[u8] = b"\",\"seq\":";
const TS: &[u8] = b",\"ts\":";
const DATA: &[u8] = b",\"data\":";
const TAIL: &[u8] = b"}";
const FIXED: usize = HEAD.len() + FROM.len() + SEQ.len() + TS.len() + DATA.len() + TAIL.len();

/// Why `bytes` is not one well-formed JSON value (whitespace around it allowed).
/// JSON text is UTF-8; serde_json does not check that for strings it skips, so we do.
fn json_error(bytes: &[u8]) -> Option<String> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Some(format!("invalid UTF-8 at byte {}", e.valid_up_to()));
    }
    serde_json::from_slice::<IgnoredAny>(bytes).err().map(|e| e.to_string())
}

pub fn is_json(bytes: &[u8]) -> bool {
    json_error(bytes).is_none()
}

pub fn check_data(data: &[u8]) -> Result<(), CoreError> {
    match json_error(data) {
        None => Ok(()),
        Some(e) => Err(CoreError::envelope(format!("data is not one well-formed JSON value: {e}"))),
    }
}

/// [`DataCheck::Shape`] of data about to be written: it stays one value inside the envelope.
pub fn check_shape(data: &[u8]) -> Result<(), CoreError> {
    if one_value_shape(data) && std::str::from_utf8(data).is_ok() {
        return Ok(());
    }
    Err(CoreError::envelope(
        "data is not shaped like one JSON value (unclosed string or bracket, or a top-level comma)",
    ))
}

/// [`DataCheck::Line`] of data about to be written: one non-empty line.
pub fn check_line(data: &[u8]) -> Result<(), CoreError> {
    if data.is_empty() || memchr::memchr(b'\n', data).is_some() {
        return Err(CoreError::envelope("data is not one line of JSON (it is empty or holds a newline)"));
    }
    Ok(())
}

/// `ts_text` is `meta.ts` already formatted (once per batch: the ts is shared).
pub fn encoded_len(data: &[u8], meta: &Meta<'_>, ts_text: &str) -> usize {
    FIXED + meta.id.len() + meta.sender.len() + itoa::Buffer::new().format(meta.seq).len() + ts_text.len() + data.len()
}

pub fn write(out: &mut Vec<u8>, data: &[u8], meta: &Meta<'_>, ts_text: &str) {
    out.extend_from_slice(HEAD);
    out.extend_from_slice(meta.id.as_bytes());
    out.extend_from_slice(FROM);
    out.extend_from_slice(meta.sender.as_bytes());
    out.extend_from_slice(SEQ);
    out.extend_from_slice(itoa::Buffer::new().format(meta.seq).as_bytes());
    out.extend_from_slice(TS);
    out.extend_from_slice(ts_text.as_bytes());
    out.extend_from_slice(DATA);
    out.extend_from_slice(data);
    out.extend_from_slice(TAIL);
}

/// The wire shape. Any key order is read; unknown, duplicate or missing keys are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    ls: u64,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    from: Cow<'a, str>,
    seq: u64,
    ts: f64,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The `ls` number right after the marker, if it is a plain integer. Checked before the
/// full parse so a newer envelope says "unsupported version", not "missing field".
fn version(payload: &[u8]) -> Option<u64> {
    let start = payload.iter().position(|&b| b == b':')? + 1;
    let rest = payload.get(start..)?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    crate::decimal::parse_digits(rest.get(..digits)?)
}

fn unsupported(ls: u64) -> CoreError {
    CoreError::envelope(format!("unsupported envelope version ls={ls}; this lockstep reads ls={ENVELOPE_VERSION}"))
}

/// A string of name characters up to its closing quote (no escapes: names never need them).
fn plain_string(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = memchr::memchr(b'"', bytes)?;
    let (text, rest) = bytes.split_at(end);
    if text.iter().any(|&b| b == b'\\' || b < 0x20) {
        return None;
    }
    Some((std::str::from_utf8(text).ok()?, rest.get(1..)?))
}

fn digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Length of the JSON number at the start of `bytes`: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn json_number_len(bytes: &[u8]) -> Option<usize> {
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let int = digits(bytes.get(i..)?);
    if int == 0 || (int > 1 && bytes.get(i) == Some(&b'0')) {
        return None;
    }
    i += int;
    if bytes.get(i) == Some(&b'.') {
        let frac = digits(bytes.get(i + 1..)?);
        if frac == 0 {
            return None;
        }
        i += 1 + frac;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(bytes.get(i..)?);
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    Some(i)
}

/// The canonical form `write` produces, read without serde. `None` means "not exactly
/// canonical": the strict serde path then decides, and names any error.
fn read_canonical<'a>(payload: &'a [u8], data_check: DataCheck, memo: &mut Memo) -> Option<(Meta<'a>, &'a [u8])> {
    let rest = payload.strip_prefix(HEAD)?;
    let (id, rest) = plain_string(rest)?;
    let (sender, rest) = plain_string(rest.strip_prefix(&FROM[1..])?)?;
    let rest = rest.strip_prefix(&SEQ[1..])?;
    let seq_len = digits(rest);
    if seq_len == 0 || (seq_len > 1 && rest.first() == Some(&b'0')) {
        return None;
    }
    let (seq, rest) = rest.split_at(seq_len);
    let seq = crate::decimal::parse_digits(seq)?;
    let rest = rest.strip_prefix(TS)?;
    // The memo's text is a whole number when the data key follows it (a comma ends one).
    let (ts, rest) = match rest.strip_prefix(memo.ts_text.as_slice()).filter(|r| r.starts_with(DATA)) {
        Some(rest) if !memo.ts_text.is_empty() => (memo.ts, rest),
        _ => {
            let (text, rest) = rest.split_at(json_number_len(rest)?);
            let ts: f64 = std::str::from_utf8(text).ok()?.parse().ok().filter(|t: &f64| t.is_finite())?;
            memo.ts_text.clear();
            memo.ts_text.extend_from_slice(text);
            memo.ts = ts;
            (ts, rest)
        }
    };
    let data = rest.strip_prefix(DATA)?.strip_suffix(TAIL)?;
    let padded = |b: Option<&u8>| b.is_none_or(|b| b.is_ascii_whitespace());
    let valid = match data_check {
        DataCheck::Full => is_json(data),
        DataCheck::Shape => one_value_shape(data),
        DataCheck::Line => true, // the caller's line decoder checks (see DataCheck::Line)
    };
    if padded(data.first()) || padded(data.last()) || !valid {
        return None;
    }
    Some((Meta { sender: Cow::Borrowed(sender), seq, ts, id: Cow::Borrowed(id) }, data))
}

/// How much of `data` the reader checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCheck {
    /// It is one well-formed JSON value (a full parse).
    Full,
    /// It is shaped like one value: strings closed, brackets balanced, no top-level comma
    /// or colon. For callers that parse the data right after anyway (a batch decoded by one
    /// JSON-array parse, which then fails for a malformed item), so that no item can spill
    /// into its neighbours.
    Shape,
    /// It is one line. A writer checks that it is not empty and holds no newline. A reader
    /// checks nothing: its caller parses the data right after as one line of
    /// newline-delimited JSON (a batch decoded by one `decode_lines`, which fails for a line
    /// that is not exactly one value, and then the data alone) and must decode data that
    /// holds a newline on its own (a `memchr` finds it), so no item can spill into its
    /// neighbours and no scan of the data's JSON is needed.
    Line,
}

/// Where the string starting just after an opening quote at `from` ends (the index after
/// its closing quote), skipping escapes; `None` if it never closes. Looks at 8 bytes at a
/// time for a quote or a backslash (most strings are short: a vector search would cost
/// more to set up than it saves).
pub fn string_end(bytes: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // a byte of `x` is zero: its high bit set in the result (the lowest set one is exact)
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    loop {
        let mut at = from;
        loop {
            let Some(chunk) = bytes.get(at..at + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) else {
                at += bytes.get(at..)?.iter().position(|&b| b == b'"' || b == b'\\')?;
                break;
            };
            let word = u64::from_le_bytes(chunk);
            let hits =
                zero_bytes(word ^ u64::from_ne_bytes([b'"'; 8])) | zero_bytes(word ^ u64::from_ne_bytes([b'\\'; 8]));
            if hits != 0 {
                at += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        if bytes.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        from = at + 2; // a backslash escapes the next byte, whatever it is
    }
}

/// What a byte means to [`top_level`]: 0 nothing, else one of the classes below.
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;
const SEPARATOR: u8 = 4;
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'"' as usize] = QUOTE;
    table[b'[' as usize] = OPEN;
    table[b'{' as usize] = OPEN;
    table[b']' as usize] = CLOSE;
    table[b'}' as usize] = CLOSE;
    table[b',' as usize] = SEPARATOR;
    table[b':' as usize] = SEPARATOR;
    table
};

/// Follows the strings and brackets of JSON text without parsing it, calling `separator(i)`
/// for each `,` or `:` at index `i` outside all of them; it returns whether to go on.
/// `Some(true)` when the text ends outside every string and bracket and no call said stop,
/// `Some(false)` when one did, `None` when a string never closes or a bracket closes
/// none. (Brackets are counted, not matched: `[}` passes; a parser decides later.)
pub fn top_level(text: &[u8], mut separator: impl FnMut(usize) -> bool) -> Option<bool> {
    let mut depth = 0usize;
    let mut i = 0;
    // Tests in order of frequency, not a `match`: that compiled to a jump table, one
    // indirect branch per byte (5-10% slower on the seed's data).
    while let Some(&b) = text.get(i) {
        i += 1;
        let class = CLASS[b as usize];
        if class == 0 {
            continue;
        }
        if class == QUOTE {
            i = string_end(text, i)?;
        } else if class == OPEN {
            depth += 1;
        } else if class == CLOSE {
            depth = depth.checked_sub(1)?;
        } else if depth == 0 && !separator(i - 1) {
            return Some(false);
        }
    }
    Some(depth == 0)
}

/// See [`DataCheck::Shape`].
pub fn one_value_shape(data: &[u8]) -> bool {
    !data.is_empty() && top_level(data, |_| false) == Some(true)
}

pub fn read_checking<'a>(
    payload: &'a [u8],
    data_check: DataCheck,
    memo: &mut Memo,
) -> Result<(Meta<'a>, &'a [u8]), CoreError> {
    match read_canonical(payload, data_check, memo) {
        Some(found) => Ok(found),
        None => read_strict(payload),
    }
}

/// Any key order and whitespace; every deviation is an error naming what was wrong.
fn read_strict(payload: &[u8]) -> Result<(Meta<'_>, &[u8]), CoreError> {
    if let Some(ls) = version(payload).filter(|&ls| ls != ENVELOPE_VERSION) {
        return Err(unsupported(ls));
    }
    let wire: Wire<'_> =
        serde_json::from_slice(payload).map_err(|e| CoreError::envelope(format!("malformed JSON envelope: {e}")))?;
    if wire.ls != ENVELOPE_VERSION {
        return Err(unsupported(wire.ls));
    }
    let meta = Meta { sender: wire.from, seq: wire.seq, ts: wire.ts, id: wire.id };
    Ok((meta, wire.data.get().as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn shapes_of_one_value() {
        for good in [&b"1"[..], b"{\"a\":[1,{}]}", b"\"a,b:c\"", b"[1,2]", b"tru", b"1 2"] {
            assert!(one_value_shape(good), "{}", String::from_utf8_lossy(good));
        }
        for bad in [&b""[..], b"1,2", b"\"a\":1", b"[1", b"]", b"{}}", b"\"open", b"[\"\\\"]"] {
            assert!(!one_value_shape(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// The word-at-a-time search against a byte-at-a-time one, across chunk boundaries.
    #[test]
    fn string_ends_as_a_plain_scan_finds_them() {
        fn plain(bytes: &[u8], mut i: usize) -> Option<usize> {
            loop {
                match bytes.get(i)? {
                    b'"' => return Some(i + 1),
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            }
        }
        let mut state: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| match (state >> (i % 60)) % 11 {
                    0 => b'"',
                    1 => b'\\',
                    2 => 0xe9,
                    _ => b'a' + (i % 26) as u8,
                })
                .collect();
            for from in 0..=len.min(9) {
                assert_eq!(
                    string_end(&text, from),
                    plain(&text, from),
                    "{:?} from {from}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    /// The fast path may only accept what the strict path accepts, with the same result.
    #[test]
    fn canonical_fast_path_agrees_with_the_strict_path() {
        let base = br#"{"ls":1,"id":"p-12","from":"agent-1","seq":12,"ts":1700000000.5,"data":{"a":[1,2]}}"#;
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\":,. 0123456789-+eE\\a\xff\xc3\xa9";
        let mut accepted = 0;
        // one memo across all mutants, as a batch reader keeps it: it must never change a result
        let mut memo = Memo::default();
        for _ in 0..100_000 {
            let mut p = base.to_vec();
            for _ in 0..=(next() % 3) {
                let i = (next() % p.len() as u64) as usize;
                let b = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => p[i] = b,
                    1 => p.insert(i, b),
                    _ => {
                        p.remove(i);
                    }
                }
            }
            let fresh = read_canonical(&p, DataCheck::Full, &mut Memo::default());
            let remembered = read_canonical(&p, DataCheck::Full, &mut memo);
            assert_eq!(fresh, remembered, "{}", String::from_utf8_lossy(&p));
            if let Some(fast) = fresh {
                accepted += 1;
                let strict = read_strict(&p).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&p)));
                assert_eq!(fast.0, strict.0);
                assert_eq!(fast.1, strict.1);
            }
        }
        assert!(accepted > 1000, "only {accepted} mutants took the fast path");
        for bad in [
            &br#"{"ls":1,"id":"i","from":"a","seq":01,"ts":1,"data":1}"#[..],
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":01,"data":1}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":1.,"data":1}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":.5,"data":1}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":1e,"data":1}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":+1,"data":1}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":1e999,"data":1}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":1,"data":1,"x":2}"#,
            br#"{"ls":1,"id":"i","from":"a","seq":1,"ts":1,"data": 1}"#,
            br#"{"ls":1,"id":"\u0069","from":"a","seq":1,"ts":1,"data":1}"#,
        ] {
            assert!(
                read_canonical(bad, DataCheck::Full, &mut Memo::default()).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
