//! The file driver's lease record: one resource's state as the bytes of its lock file.
//!
//! The file driver keeps each resource in a small file it rewrites under `flock` (see
//! `python/lockstep/drivers/sqlite_lease_records.py`); this is the codec, so a lease
//! operation there is one read, one table operation and one write. Layout (big-endian):
//!
//! ```text
//! u32 length of the rest | "LSR1" | str boot id | str resource | u32 slots | u64 fence
//! | u32 holders, each: str token, str owner, str session, u64 fence, f64 expires_at
//! | u32 waiters, each: str ticket, str owner, str session, f64 expires_at
//! ```
//!
//! `str` is a u16 byte length and UTF-8. The leading length means bytes after the record
//! (left by a longer record written earlier) are ignored. Bytes that do not decode, or a
//! record of another boot or resource, decode to `None`: the caller starts the resource
//! over (its fence from the boot's epoch), never trusting a torn or foreign record.

use super::invalid;
use super::table::{Holder, Resource, Waiter};
use crate::error::CoreError;

const MAGIC: &[u8; 4] = b"LSR1";

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.data.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn time(&mut self) -> Option<f64> {
        let t = f64::from_bits(self.u64()?);
        t.is_finite().then_some(t)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
}

/// The bytes a record needs in all, from its first four (None: fewer than four given).
pub fn record_size(data: &[u8]) -> Option<usize> {
    let head: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize + 4)
}

/// The resource in `data` if it is a whole record of this `boot` and `resource`.
pub fn decode_record(data: &[u8], boot: &str, resource: &str) -> Option<Resource> {
    let size = record_size(data)?;
    let mut r = Reader { data: data.get(4..size)?, at: 0 };
    if r.take(4)? != MAGIC || r.str()? != boot || r.str()? != resource {
        return None;
    }
    let slots = r.u32()?;
    let fence = r.u64()?;
    if slots == 0 {
        return None;
    }
    let count = r.u32()? as usize;
    let mut holders = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        holders.push(Holder {
            token: r.string()?,
            owner: r.string()?,
            session: r.string()?,
            fence: r.u64()?,
            expires_at: r.time()?,
        });
    }
    let count = r.u32()? as usize;
    let mut queue = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        queue.push(Waiter { ticket: r.string()?, owner: r.string()?, session: r.string()?, expires_at: r.time()? });
    }
    Some(Resource { slots, fence, holders, queue })
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), CoreError> {
    let n = u16::try_from(s.len())
        .map_err(|_| invalid(format!("a lease record string is too long ({} bytes)", s.len())))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn count(n: usize) -> Result<[u8; 4], CoreError> {
    u32::try_from(n).map(u32::to_be_bytes).map_err(|_| invalid("a lease record has too many entries".into()))
}

/// The record of `res` for this `boot` and `resource`.
pub fn encode_record(res: &Resource, boot: &str, resource: &str) -> Result<Vec<u8>, CoreError> {
    let mut out = Vec::with_capacity(64 + boot.len() + resource.len() + 96 * (res.holders.len() + res.queue.len()));
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(MAGIC);
    put_str(&mut out, boot)?;
    put_str(&mut out, resource)?;
    out.extend_from_slice(&res.slots.to_be_bytes());
    out.extend_from_slice(&res.fence.to_be_bytes());
    out.extend_from_slice(&count(res.holders.len())?);
    for h in &res.holders {
        put_str(&mut out, &h.token)?;
        put_str(&mut out, &h.owner)?;
        put_str(&mut out, &h.session)?;
        out.extend_from_slice(&h.fence.to_be_bytes());
        out.extend_from_slice(&h.expires_at.to_bits().to_be_bytes());
    }
    out.extend_from_slice(&count(res.queue.len())?);
    for w in &res.queue {
        put_str(&mut out, &w.ticket)?;
        put_str(&mut out, &w.owner)?;
        put_str(&mut out, &w.session)?;
        out.extend_from_slice(&w.expires_at.to_bits().to_be_bytes());
    }
    let rest = count(out.len() - 4)?;
    out[..4].copy_from_slice(&rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Resource {
        Resource {
            slots: 2,
            fence: (3 << 40) + 7,
            holders: vec![Holder {
                token: "s.t".into(),
                owner: "alice".into(),
                session: "s:0:12".into(),
                fence: (3 << 40) + 7,
                expires_at: 1.5e9,
            }],
            queue: vec![Waiter {
                ticket: "q.t".into(),
                owner: "bob".into(),
                session: "q:1:13".into(),
                expires_at: 1.6e9,
            }],
        }
    }

    #[test]
    fn round_trips_and_ignores_trailing_bytes() {
        let mut bytes = encode_record(&sample(), "boot", "ls:ns:{lock:a}").unwrap();
        assert_eq!(record_size(&bytes), Some(bytes.len()));
        bytes.extend_from_slice(b"left by a longer record");
        assert_eq!(decode_record(&bytes, "boot", "ls:ns:{lock:a}"), Some(sample()));
    }

    #[test]
    fn foreign_or_torn_records_decode_to_none() {
        let bytes = encode_record(&sample(), "boot", "r").unwrap();
        assert_eq!(decode_record(&bytes, "other boot", "r"), None);
        assert_eq!(decode_record(&bytes, "boot", "other"), None);
        for cut in 0..bytes.len() {
            assert_eq!(decode_record(&bytes[..cut], "boot", "r"), None);
        }
        assert_eq!(decode_record(b"", "boot", "r"), None);
    }
}
