//! The msgpack form of the envelope: a 6-entry map, `ls` first, then `id`, `from`, `seq`,
//! `ts` and the raw `data` value. Decoding reads the five keys after `ls` in any order;
//! unknown, duplicate or mistyped keys and trailing bytes are errors.

use std::borrow::Cow;

use super::{Meta, ENVELOPE_VERSION};
use crate::error::CoreError;
use crate::msgpack::{self, Reader};

/// fixmap(6), fixstr(2) "ls".
pub const MARKER: &[u8] = &[0x86, 0xa2, b'l', b's'];

const K_ID: &[u8] = b"id";
const K_FROM: &[u8] = b"from";
const K_SEQ: &[u8] = b"seq";
const K_TS: &[u8] = b"ts";
const K_DATA: &[u8] = b"data";

fn bad(reason: String) -> CoreError {
    CoreError::envelope(format!("malformed msgpack envelope: {reason}"))
}

pub fn check_data(data: &[u8]) -> Result<(), CoreError> {
    let mut r = Reader::new(data, 0);
    r.skip_value(msgpack::MAX_DEPTH)
        .map_err(|e| CoreError::envelope(format!("data is not one well-formed msgpack value: {e}")))?;
    if r.pos() != data.len() {
        return Err(CoreError::envelope(format!(
            "data is not one msgpack value: {} trailing bytes after the first value",
            data.len() - r.pos()
        )));
    }
    Ok(())
}

pub fn encoded_len(data: &[u8], meta: &Meta<'_>) -> usize {
    let key = |k: &[u8]| 1 + k.len();
    let s = |v: &str| msgpack::str_header_len(v.len()) + v.len();
    MARKER.len()
        + msgpack::uint_len(ENVELOPE_VERSION)
        + key(K_ID)
        + s(&meta.id)
        + key(K_FROM)
        + s(&meta.sender)
        + key(K_SEQ)
        + msgpack::uint_len(meta.seq)
        + key(K_TS)
        + 9
        + key(K_DATA)
        + data.len()
}

pub fn write(out: &mut Vec<u8>, data: &[u8], meta: &Meta<'_>) {
    out.extend_from_slice(MARKER);
    msgpack::write_uint(out, ENVELOPE_VERSION);
    msgpack::write_str(out, K_ID);
    msgpack::write_str(out, meta.id.as_bytes());
    msgpack::write_str(out, K_FROM);
    msgpack::write_str(out, meta.sender.as_bytes());
    msgpack::write_str(out, K_SEQ);
    msgpack::write_uint(out, meta.seq);
    msgpack::write_str(out, K_TS);
    msgpack::write_f64(out, meta.ts);
    msgpack::write_str(out, K_DATA);
    out.extend_from_slice(data);
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, CoreError> {
    std::str::from_utf8(bytes).map_err(|_| bad(format!("{what} is not valid UTF-8")))
}

fn once<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), CoreError> {
    if slot.is_some() {
        return Err(bad(format!("duplicate key {key:?}")));
    }
    *slot = Some(value);
    Ok(())
}

pub fn read(payload: &[u8]) -> Result<(Meta<'_>, &[u8]), CoreError> {
    let mut r = Reader::new(payload, MARKER.len());
    let ls = r.read_uint("ls").map_err(bad)?;
    if ls != ENVELOPE_VERSION {
        return Err(CoreError::envelope(format!(
            "unsupported envelope version ls={ls}; this lockstep reads ls={ENVELOPE_VERSION}"
        )));
    }
    let (mut id, mut sender, mut seq, mut ts, mut data) = (None, None, None, None, None);
    for _ in 0..5 {
        let key = r.read_str("a key").map_err(bad)?;
        match key {
            K_ID => once(&mut id, utf8(r.read_str("id").map_err(bad)?, "id")?, "id")?,
            K_FROM => once(&mut sender, utf8(r.read_str("from").map_err(bad)?, "from")?, "from")?,
            K_SEQ => once(&mut seq, r.read_uint("seq").map_err(bad)?, "seq")?,
            K_TS => once(&mut ts, r.read_f64("ts").map_err(bad)?, "ts")?,
            K_DATA => {
                let start = r.pos();
                r.skip_value(msgpack::MAX_DEPTH).map_err(|e| bad(format!("data: {e}")))?;
                once(&mut data, payload.get(start..r.pos()).unwrap_or_default(), "data")?
            }
            other => {
                let shown: String = String::from_utf8_lossy(other).chars().take(40).collect();
                return Err(bad(format!("unexpected key {shown:?}")));
            }
        }
    }
    if r.pos() != payload.len() {
        return Err(bad(format!("{} trailing bytes after the envelope", payload.len() - r.pos())));
    }
    // Five distinct known keys were read, so every slot is filled; stay total anyway.
    match (id, sender, seq, ts, data) {
        (Some(id), Some(sender), Some(seq), Some(ts), Some(data)) => {
            Ok((Meta { sender: Cow::Borrowed(sender), seq, ts, id: Cow::Borrowed(id) }, data))
        }
        _ => Err(bad("a key is missing".into())),
    }
}
