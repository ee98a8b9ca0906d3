//! Messages on the way in: pub/sub push frames and stream-read replies found in parsed RESP
//! replies, the payload of a stream entry, and per-sender sequence tracking that tells a
//! subscriber exactly which messages it missed.
//!
//! Everything here borrows the parser's buffer: nothing is copied until the glue builds
//! Python objects, in one pass per socket read.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::envelope::{self, Codec, Decoded};
use crate::error::CoreError;
use crate::resp::Reply;

/// What one reply on a subscribed (RESP2) connection is.
#[derive(Clone, Debug, PartialEq)]
pub enum PushFrame<'a> {
    /// `message` (`pattern` None) or `pmessage`.
    Message { pattern: Option<&'a [u8]>, channel: &'a [u8], payload: &'a [u8] },
    /// `subscribe`, `unsubscribe`, `psubscribe`, `punsubscribe` confirmations.
    Subscription { kind: &'a [u8], channel: Option<&'a [u8]>, count: i64 },
    /// The answer to `PING` while subscribed: `["pong", payload]` (or `+PONG`).
    Pong(&'a [u8]),
    /// An error reply (`-ERR ...`).
    Error(&'a [u8]),
    /// Anything else: the connection is not speaking pub/sub as expected.
    Unexpected,
}

fn bulk<'a>(reply: Option<&Reply<'a>>) -> Option<&'a [u8]> {
    match reply {
        Some(Reply::Bulk(b) | Reply::Simple(b)) => Some(b),
        _ => None,
    }
}

/// Classify one reply read on a subscribed connection.
pub fn classify_push<'a>(reply: &Reply<'a>) -> PushFrame<'a> {
    let items = match reply {
        Reply::Array(items) | Reply::Push(items) => items,
        Reply::Simple(s) if s.eq_ignore_ascii_case(b"PONG") => return PushFrame::Pong(b""),
        Reply::Error(e) => return PushFrame::Error(e),
        _ => return PushFrame::Unexpected,
    };
    let Some(kind) = bulk(items.first()) else { return PushFrame::Unexpected };
    match (kind, items.len()) {
        (b"message", 3) => match (bulk(items.get(1)), bulk(items.get(2))) {
            (Some(channel), Some(payload)) => PushFrame::Message { pattern: None, channel, payload },
            _ => PushFrame::Unexpected,
        },
        (b"pmessage", 4) => match (bulk(items.get(1)), bulk(items.get(2)), bulk(items.get(3))) {
            (Some(pattern), Some(channel), Some(payload)) => {
                PushFrame::Message { pattern: Some(pattern), channel, payload }
            }
            _ => PushFrame::Unexpected,
        },
        (b"subscribe" | b"unsubscribe" | b"psubscribe" | b"punsubscribe", 3) => {
            let count = match items.get(2) {
                Some(Reply::Integer(n)) => *n,
                _ => return PushFrame::Unexpected,
            };
            PushFrame::Subscription { kind, channel: bulk(items.get(1)), count }
        }
        (b"pong", 2) => PushFrame::Pong(bulk(items.get(1)).unwrap_or_default()),
        _ => PushFrame::Unexpected,
    }
}

/// One stream entry: its id and its field/value pairs (`None` when the entry was deleted,
/// as `XREADGROUP` reports a pending entry that no longer exists).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEntry<'a> {
    pub id: &'a [u8],
    pub fields: Option<Vec<(&'a [u8], &'a [u8])>>,
}

fn malformed(what: &str) -> CoreError {
    CoreError::protocol(0, format!("unexpected reply shape: {what}"))
}

/// `[[id, [field, value, ...]], ...]`: the entries of `XRANGE`, `XCLAIM`, one stream of `XREAD`.
pub fn stream_entries<'a>(reply: &Reply<'a>) -> Result<Vec<StreamEntry<'a>>, CoreError> {
    let items = match reply {
        Reply::Array(items) => items,
        Reply::Nil => return Ok(Vec::new()),
        _ => return Err(malformed("expected an array of stream entries")),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Reply::Array(pair) = item else { return Err(malformed("expected a stream entry [id, fields]")) };
        let Some(id) = bulk(pair.first()) else { return Err(malformed("expected a stream entry id")) };
        let fields = match pair.get(1) {
            None | Some(Reply::Nil) => None,
            Some(Reply::Array(flat)) => {
                if flat.len() % 2 != 0 {
                    return Err(malformed("odd number of field/value items in a stream entry"));
                }
                let mut fields = Vec::with_capacity(flat.len() / 2);
                for chunk in flat.chunks_exact(2) {
                    match (bulk(chunk.first()), bulk(chunk.get(1))) {
                        (Some(f), Some(v)) => fields.push((f, v)),
                        _ => return Err(malformed("stream entry fields must be strings")),
                    }
                }
                Some(fields)
            }
            Some(_) => return Err(malformed("expected the fields of a stream entry")),
        };
        out.push(StreamEntry { id, fields });
    }
    Ok(out)
}

/// The entries read from each stream: `(key, entries)`.
pub type StreamBatches<'a> = Vec<(&'a [u8], Vec<StreamEntry<'a>>)>;

/// An `XREAD`/`XREADGROUP` reply: `[[key, entries], ...]`, or nil when `BLOCK` timed out.
pub fn stream_read<'a>(reply: &Reply<'a>) -> Result<StreamBatches<'a>, CoreError> {
    let streams = match reply {
        Reply::Nil => return Ok(Vec::new()),
        Reply::Array(streams) => streams,
        // RESP3 servers answer with a map; lockstep speaks RESP2, but read it all the same.
        Reply::Map(pairs) => {
            let mut out = Vec::with_capacity(pairs.len());
            for (key, entries) in pairs {
                let Some(key) = bulk(Some(key)) else { return Err(malformed("expected a stream key")) };
                out.push((key, stream_entries(entries)?));
            }
            return Ok(out);
        }
        _ => return Err(malformed("expected the streams of an XREAD reply")),
    };
    let mut out = Vec::with_capacity(streams.len());
    for stream in streams {
        let Reply::Array(pair) = stream else { return Err(malformed("expected [key, entries]")) };
        let Some(key) = bulk(pair.first()) else { return Err(malformed("expected a stream key")) };
        let entries = pair.get(1).ok_or_else(|| malformed("expected the entries of a stream"))?;
        out.push((key, stream_entries(entries)?));
    }
    Ok(out)
}

/// The field lockstep writes each message into (`XADD key * m <envelope>`).
pub const PAYLOAD_FIELD: &[u8] = b"m";

/// Append `text` as a JSON string (quoted and escaped) to `out`.
pub fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for ch in text.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(b"\\u00");
                let hex = b"0123456789abcdef";
                let v = c as u32;
                out.push(hex.get((v >> 4) as usize).copied().unwrap_or(b'0'));
                out.push(hex.get((v & 0xf) as usize).copied().unwrap_or(b'0'));
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The message payload of a stream entry. lockstep writes one field, `m`. An entry added by
/// another client (`XADD key * field value ...`) is delivered as its single value, or, with
/// several fields, as a JSON object of them (fields and values must then be UTF-8 text;
/// otherwise the first value is delivered).
pub fn entry_payload<'a>(fields: &[(&'a [u8], &'a [u8])]) -> Cow<'a, [u8]> {
    if let Some((_, value)) = fields.iter().find(|(f, _)| *f == PAYLOAD_FIELD) {
        return Cow::Borrowed(value);
    }
    match fields {
        [] => Cow::Borrowed(b""),
        [(_, value)] => Cow::Borrowed(value),
        many => {
            let mut out = Vec::with_capacity(many.iter().map(|(f, v)| f.len() + v.len() + 6).sum::<usize>() + 2);
            out.push(b'{');
            for (index, (field, value)) in many.iter().enumerate() {
                let (Ok(field), Ok(value)) = (std::str::from_utf8(field), std::str::from_utf8(value)) else {
                    return Cow::Borrowed(many.first().map(|(_, v)| *v).unwrap_or_default());
                };
                if index > 0 {
                    out.push(b',');
                }
                write_json_string(&mut out, field);
                out.push(b':');
                write_json_string(&mut out, value);
            }
            out.push(b'}');
            Cow::Owned(out)
        }
    }
}

/// Decode a payload in whichever codec its envelope marker names (msgpack or JSON); a
/// payload with neither marker is foreign and delivered whole. JSON data is only checked
/// for shape here: the caller decodes it right after (see `envelope::decode_for_batch`).
pub fn decode_any<'a>(
    payload: &'a [u8],
    max_size: usize,
    memo: &mut envelope::Memo,
) -> Result<(Decoded<'a>, Codec), CoreError> {
    let codec = if payload.starts_with(envelope::MSGPACK_MARKER) { Codec::Msgpack } else { Codec::Json };
    envelope::decode_for_batch(codec, payload, max_size, memo).map(|d| (d, codec))
}

/// The top-level elements of a JSON array, split without parsing them (strings and nesting
/// are followed, so a comma inside either never splits). Whitespace between elements is
/// allowed. Every element is then shaped like one JSON value (`wire_json::DataCheck::Shape`:
/// strings closed, brackets balanced, no comma or colon outside them) and UTF-8, or the
/// whole array is refused; whether each is a well-formed value is left to its receiver.
pub fn split_json_array(array: &[u8]) -> Result<Vec<&[u8]>, CoreError> {
    let bad = |what: &str| CoreError::envelope(format!("expected a JSON array of items: {what}"));
    if let Err(e) = std::str::from_utf8(array) {
        return Err(bad(&format!("invalid UTF-8 at byte {}", e.valid_up_to())));
    }
    let trimmed = array.trim_ascii();
    let inner = trimmed.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")).ok_or_else(|| bad("no [...]"))?;
    let mut out = Vec::new();
    if inner.trim_ascii().is_empty() {
        return Ok(out);
    }
    let mut start = 0;
    let mut colon = false;
    let whole = envelope::top_level(inner, |at| {
        if inner.get(at) == Some(&b':') {
            colon = true;
            return false;
        }
        out.push(inner.get(start..at).unwrap_or_default().trim_ascii());
        start = at + 1;
        true
    });
    match whole {
        None => return Err(bad("an unterminated string or unbalanced brackets")),
        Some(false) if colon => return Err(bad("a colon outside an object")),
        Some(false) => return Err(bad("an unterminated bracket")),
        Some(true) => {}
    }
    out.push(inner.get(start..).unwrap_or_default().trim_ascii());
    if out.iter().any(|item| item.is_empty()) {
        return Err(bad("an empty element"));
    }
    Ok(out)
}

/// The items of `lines`: JSON values each followed by a newline, as msgspec's
/// `Encoder.encode_lines` writes a list. JSON text holds no raw newline inside a string, so
/// each line is exactly one item, found by `memchr` instead of a scan of the JSON; `count`
/// is how many items were encoded, and a different number of lines is refused (an item
/// that holds a newline of its own, a `msgspec.Raw`, must come through [`lines_of_array`]).
/// Lines are checked to be UTF-8 and not empty; whether each is well-formed JSON is left to
/// its receivers, whose line decoder refuses one that is not exactly one value.
pub fn split_json_lines(lines: &[u8], count: usize) -> Result<Vec<&[u8]>, CoreError> {
    let bad = |what: String| CoreError::envelope(format!("expected {count} JSON lines: {what}"));
    if let Err(e) = std::str::from_utf8(lines) {
        return Err(bad(format!("invalid UTF-8 at byte {}", e.valid_up_to())));
    }
    let mut out = Vec::with_capacity(count);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', lines) {
        let line = lines.get(start..end).unwrap_or_default();
        if line.is_empty() {
            return Err(bad(format!("line {} is empty", out.len())));
        }
        out.push(line);
        start = end + 1;
    }
    if start != lines.len() {
        return Err(bad("the last line has no newline".to_owned()));
    }
    if out.len() != count {
        return Err(bad(format!("found {}", out.len())));
    }
    Ok(out)
}

/// How many newlines `bytes` holds, counted eight bytes at a time.
pub fn count_newlines(bytes: &[u8]) -> usize {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let words = bytes.chunks_exact(8);
    let tail = words.remainder().iter().filter(|&&b| b == b'\n').count();
    words.fold(tail, |count, chunk| {
        let word = u64::from_ne_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default()) ^ NEWLINES;
        // the high bit of each byte that was a newline (now zero), exactly: no byte's sum
        // carries into the next (0x7f + 0x7f < 0x100)
        let zeros = !(((word & LOW7) + LOW7) | word | LOW7);
        count + zeros.count_ones() as usize
    })
}

/// The length of the longest line of `lines` (lines end at a newline; a last one may not).
pub fn longest_line(lines: &[u8]) -> usize {
    let mut start = 0;
    let mut longest = 0;
    for end in memchr::memchr_iter(b'\n', lines) {
        longest = longest.max(end - start);
        start = end + 1;
    }
    longest.max(lines.len().saturating_sub(start))
}

/// The items of `array` (a JSON array, split and checked as [`split_json_array`] does) as
/// JSON lines, for items that hold newlines of their own (a `msgspec.Raw` of pretty-printed
/// JSON): JSON allows a newline only as whitespace between tokens, so each becomes a space
/// and the item means what it meant. A newline inside a string is not JSON: refused.
pub fn lines_of_array(array: &[u8]) -> Result<Vec<u8>, CoreError> {
    let items = split_json_array(array)?;
    let mut out = Vec::with_capacity(array.len() + 1);
    for (index, item) in items.iter().enumerate() {
        let mut at = 0;
        while let Some(newline) = memchr::memchr(b'\n', item.get(at..).unwrap_or_default()) {
            let newline = at + newline;
            // where the strings before the newline end: it is inside one if it comes first
            let mut i = at;
            while let Some(quote) = memchr::memchr(b'"', item.get(i..newline).unwrap_or_default()) {
                let end = envelope::string_end(item, i + quote + 1)
                    .ok_or_else(|| CoreError::envelope(format!("item {index}: an unterminated string")))?;
                if end > newline {
                    return Err(CoreError::envelope(format!(
                        "item {index}: a raw newline inside a string is not JSON (write it as \\n)"
                    )));
                }
                i = end;
            }
            out.extend_from_slice(item.get(at..newline).unwrap_or_default());
            out.push(b' ');
            at = newline + 1;
        }
        out.extend_from_slice(item.get(at..).unwrap_or_default());
        out.push(b'\n');
    }
    Ok(out)
}

/// The envelopes of every item of `lines` (see [`split_json_lines`]), each inside
/// `command_head`'s command when it is not empty. Each item is one line: not scanned again.
pub fn encode_json_lines(
    lines: &[u8],
    count: usize,
    batch: &envelope::BatchMeta<'_>,
    command_head: &[u8],
) -> Result<envelope::EncodedBatch, CoreError> {
    let items = split_json_lines(lines, count)?;
    envelope::encode_batch(Codec::Json, &items, batch, envelope::Layout::checked(command_head))
}

/// Data items of one codec, kept back to back to be decoded by ONE call (JSON: each on a
/// line of its own, for a line decoder; msgpack: behind an array header written at the end).
/// A JSON item must hold no newline (see `wire_json::DataCheck::Line`) and a msgpack item be
/// exactly one value (as the envelope readers check), so no item can run into the next.
#[derive(Clone, Debug, Default)]
pub struct DataArray {
    bytes: Vec<u8>,
    count: usize,
}

impl DataArray {
    pub fn with_capacity(bytes: usize) -> Self {
        DataArray { bytes: Vec::with_capacity(bytes), count: 0 }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Append one item; returns where its bytes are in [`Self::items`].
    pub fn push(&mut self, codec: Codec, data: &[u8]) -> (usize, usize) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        let end = self.bytes.len();
        if codec == Codec::Json {
            self.bytes.push(b'\n');
        }
        self.count += 1;
        (start, end)
    }

    /// The items' bytes (JSON's with their newlines).
    pub fn items(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole batch as `codec`'s one call reads it, as (head, items, tail) to copy out
    /// back to back: the caller copies the items once, e.g. straight into a Python `bytes`.
    pub fn array(&self, codec: Codec) -> (Vec<u8>, &[u8], &'static [u8]) {
        match codec {
            Codec::Json => (Vec::new(), &self.bytes, b""),
            Codec::Msgpack => {
                let mut head = Vec::with_capacity(5);
                crate::msgpack::write_array_header(&mut head, self.count);
                (head, &self.bytes, b"")
            }
        }
    }
}

/// Inclusive range of sequence numbers a subscriber missed from one sender.
pub type Missed = (u64, u64);

/// The last sequence number seen per sender stream. A sender stream is the sender name plus
/// the random prefix of its message ids (`"<prefix><seq>"`), so a restarted sender, or two
/// coordinators sharing a member name, each count from 1 without looking like a gap.
#[derive(Debug)]
pub struct SeqTracker {
    last: HashMap<Box<[u8]>, u64>,
    /// The stream observed last (`sender \0 id prefix`, always a key of `last`) and, while
    /// `current` is Some, its last seq, written back to `last` only when another stream comes:
    /// consecutive messages mostly come from one stream, which then costs no hashing.
    key: Vec<u8>,
    current: Option<u64>,
    capacity: usize,
}

impl SeqTracker {
    /// Remember at most `capacity` sender streams (the oldest are forgotten past it, which can
    /// only hide a gap of a sender silent for that long, never invent one).
    pub fn new(capacity: usize) -> Self {
        SeqTracker { last: HashMap::new(), key: Vec::with_capacity(64), current: None, capacity: capacity.max(1) }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The part of `id` that names the sender stream: `id` without its trailing `seq` digits
    /// when it ends with them (lockstep's ids do), else the whole id is not a stream and the
    /// sender alone counts.
    fn stream_prefix(id: &str, seq: u64) -> &str {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(seq);
        id.strip_suffix(text).unwrap_or("")
    }

    /// Whether `key` is `sender \0 prefix`.
    fn is_key(&self, sender: &str, prefix: &str) -> bool {
        let (s, p) = (sender.as_bytes(), prefix.as_bytes());
        self.key.len() == s.len() + 1 + p.len()
            && self.key.starts_with(s)
            && self.key.get(s.len()) == Some(&0)
            && self.key.ends_with(p)
    }

    fn write_back(&mut self) {
        if let Some(seq) = self.current.take() {
            if let Some(last) = self.last.get_mut(self.key.as_slice()) {
                *last = seq;
            }
        }
    }

    /// Record `seq` from `sender`; returns the range missed just before it, if any.
    pub fn observe(&mut self, sender: &str, id: &str, seq: u64) -> Option<Missed> {
        let prefix = Self::stream_prefix(id, seq);
        let previous = match self.current {
            Some(previous) if self.is_key(sender, prefix) => previous,
            _ => {
                self.write_back();
                self.key.clear();
                self.key.extend_from_slice(sender.as_bytes());
                self.key.push(0);
                self.key.extend_from_slice(prefix.as_bytes());
                match self.last.get(self.key.as_slice()) {
                    Some(&previous) => previous,
                    None => {
                        if self.last.len() >= self.capacity {
                            // Forget half, arbitrarily: bounded memory under a flood of one-shot senders.
                            let drop: Vec<Box<[u8]>> = self.last.keys().take(self.capacity / 2 + 1).cloned().collect();
                            for key in drop {
                                self.last.remove(&key);
                            }
                        }
                        self.last.insert(self.key.clone().into_boxed_slice(), seq);
                        self.current = Some(seq);
                        return None;
                    }
                }
            }
        };
        self.current = Some(previous.max(seq));
        (seq > previous.saturating_add(1)).then(|| (previous + 1, seq - 1))
    }

    /// Forget every sender (e.g. after a replay that is not contiguous with what came before).
    pub fn clear(&mut self) {
        self.last.clear();
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn tracker_reports_exact_ranges_per_sender_stream() {
        let mut t = SeqTracker::new(100);
        assert_eq!(t.observe("a", "p-1", 1), None);
        assert_eq!(t.observe("a", "p-2", 2), None);
        assert_eq!(t.observe("a", "p-6", 6), Some((3, 5)));
        assert_eq!(t.observe("a", "p-6", 6), None, "a duplicate is not a gap");
        assert_eq!(t.observe("a", "p-4", 4), None, "an old one is not a gap");
        assert_eq!(t.observe("a", "q-1", 1), None, "a restarted sender starts a new stream");
        assert_eq!(t.observe("b", "p-9", 9), None, "the first message of a sender is no gap");
        assert_eq!(t.observe("c", "x", 9), None);
        assert_eq!(t.observe("c", "y", 11), Some((10, 10)), "ids without the seq count per sender");
        assert_eq!(t.observe("c", "z", 12), None);
    }

    /// The tracker (its write-back of the current stream included) against a plain map.
    #[test]
    fn tracker_agrees_with_a_plain_map() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut t = SeqTracker::new(1_000);
        let mut model: HashMap<String, u64> = HashMap::new();
        for step in 0..50_000 {
            if step % 9_999 == 0 {
                t.clear();
                model.clear();
            }
            let (sender, stream) = (format!("s{}", next(4)), format!("p{}-", next(3)));
            let seq = 1 + next(40);
            let want = match model.get(&format!("{sender}\0{stream}")) {
                Some(&previous) if seq > previous + 1 => Some((previous + 1, seq - 1)),
                _ => None,
            };
            let last = model.entry(format!("{sender}\0{stream}")).or_insert(seq);
            *last = (*last).max(seq);
            assert_eq!(t.observe(&sender, &format!("{stream}{seq}"), seq), want, "step {step}");
            assert_eq!(t.len(), model.len());
        }
    }

    /// Each codec's array is one value holding exactly the items pushed, whatever its size.
    #[test]
    fn data_arrays_hold_exactly_their_items() {
        for count in [0usize, 1, 15, 16, 0xffff, 0x10000] {
            let (mut js, mut mp) = (DataArray::default(), DataArray::default());
            for i in 0..count {
                js.push(Codec::Json, if i % 2 == 0 { b"{\"a\":[1,\",\"]}" } else { b"7" });
                mp.push(Codec::Msgpack, if i % 2 == 0 { &[0x81, 0xa1, b'a', 0x92, 0x01, 0xc0][..] } else { &[0x07] });
            }
            let (head, items, tail) = js.array(Codec::Json);
            let text = [head.as_slice(), items, tail].concat();
            let parsed: Vec<serde_json::Value> =
                serde_json::Deserializer::from_slice(&text).into_iter().collect::<Result<_, _>>().unwrap();
            assert_eq!(parsed.len(), count);
            assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), count, "one line each");
            let (head, items, tail) = mp.array(Codec::Msgpack);
            let bytes = [head.as_slice(), items, tail].concat();
            let mut whole = crate::msgpack::Reader::new(&bytes, 0);
            whole.skip_value(crate::msgpack::MAX_DEPTH).unwrap();
            assert_eq!(whole.pos(), bytes.len(), "one value, {count} items");
            let mut each = crate::msgpack::Reader::new(&bytes, head.len());
            for _ in 0..count {
                each.skip_value(crate::msgpack::MAX_DEPTH).unwrap();
            }
            assert_eq!(each.pos(), bytes.len());
            assert_eq!((js.len(), mp.len()), (count, count));
        }
    }

    #[test]
    fn tracker_stays_bounded() {
        let mut t = SeqTracker::new(10);
        for i in 0..1000 {
            t.observe(&format!("s{i}"), "p-1", 1);
        }
        assert!(t.len() <= 10);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        write_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#.as_bytes().to_vec());
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn arrays_split_into_their_elements() {
        let parts = split_json_array(br#"[1, {"a":[1,2],"b":"x,]"}, "q\"," ,[[]]]"#).unwrap();
        assert_eq!(parts, vec![&b"1"[..], br#"{"a":[1,2],"b":"x,]"}"#, br#""q\",""#, b"[[]]"]);
        assert!(split_json_array(b"[]").unwrap().is_empty());
        for bad in [&b"1,2"[..], b"[1,]", b"[,1]", b"[1", b"[\"a]", b"[{]", b"[1]]", b"[\"a\":1]", b"[1,\"\xff\"]"] {
            assert!(split_json_array(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn lines_split_by_newline_and_count() {
        let lines = b"1\n{\"a\":\"x,]\"}\n\"q\"\n";
        assert_eq!(split_json_lines(lines, 3).unwrap(), vec![&b"1"[..], br#"{"a":"x,]"}"#, br#""q""#]);
        assert!(split_json_lines(b"", 0).unwrap().is_empty());
        for (bad, count, why) in [
            (&b"1\n2\n"[..], 3, "found 2"),
            (b"1\n2\n", 1, "found 2"),
            (b"1\n\n2\n", 3, "line 1 is empty"),
            (b"1\n2", 2, "no newline"),
            (b"\"\xff\"\n", 1, "invalid UTF-8"),
        ] {
            let err = split_json_lines(bad, count).unwrap_err().to_string();
            assert!(err.contains(why), "{}: {err}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn newlines_are_counted_and_lines_measured() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"\n\x0a\x8a\x0b\x09\xffa ";
        for len in 0..200 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes: Vec<u8> =
                (0..len).map(|i| alphabet[((state >> (i % 60)) as usize + i) % alphabet.len()]).collect();
            assert_eq!(count_newlines(&bytes), bytes.iter().filter(|&&b| b == b'\n').count(), "{bytes:?}");
            let longest = bytes.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
            assert_eq!(longest_line(&bytes), longest, "{bytes:?}");
        }
    }

    #[test]
    fn arrays_become_lines_with_their_newlines_made_spaces() {
        let array = b"[1, {\n \"a\": [1,\n2],\n \"b\": \"x\\n\"\n}, \"q\"]";
        let lines = lines_of_array(array).unwrap();
        assert_eq!(lines, b"1\n{  \"a\": [1, 2],  \"b\": \"x\\n\" }\n\"q\"\n".to_vec());
        let values: Vec<serde_json::Value> =
            split_json_lines(&lines, 3).unwrap().iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        let want: Vec<serde_json::Value> = serde_json::from_slice(array).unwrap();
        assert_eq!(values, want);
        let err = lines_of_array(b"[1, \"a\nb\"]").unwrap_err().to_string();
        assert!(err.contains("item 1: a raw newline inside a string"), "{err}");
        assert!(lines_of_array(b"[1,]").is_err());
        assert_eq!(lines_of_array(b"[]").unwrap(), b"".to_vec());
    }

    /// Random arrays: every one that splits becomes lines that split back into its items
    /// (their newlines made spaces), or is refused for a newline inside a string; and
    /// `encode_json_lines` writes what `encode_batch` with the line check writes.
    #[test]
    fn arrays_as_lines_keep_their_items() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"[]{}\":,\\ 1a\n\xc3\xa9";
        let head = b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n";
        let meta = envelope::BatchMeta { sender: "me", seq_start: 1, ts: 1.5, id_prefix: "p-", max_size: 1 << 20 };
        let (mut converted, mut refused) = (0, 0);
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 2 + (state % 10) as usize;
            let mut array = vec![b'['];
            array.extend((0..len).map(|i| alphabet[((state >> (4 * i)) % alphabet.len() as u64) as usize]));
            array.push(b']');
            let Ok(items) = split_json_array(&array) else { continue };
            let Ok(lines) = lines_of_array(&array) else {
                refused += 1;
                continue;
            };
            converted += 1;
            let split = split_json_lines(&lines, items.len()).unwrap();
            let spaced: Vec<Vec<u8>> =
                items.iter().map(|i| i.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect()).collect();
            assert_eq!(split, spaced.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let checked = envelope::Layout::new(head, envelope::DataCheck::Line);
            let want = envelope::encode_batch(Codec::Json, &split, &meta, checked)
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&array)));
            assert_eq!(encode_json_lines(&lines, items.len(), &meta, head).unwrap().buf, want.buf);
        }
        assert!(converted > 1_000 && refused > 100, "{converted} converted, {refused} refused");
    }

    #[test]
    fn entry_payloads() {
        assert_eq!(entry_payload(&[(b"x", b"1"), (b"m", b"env")]).as_ref(), b"env");
        assert_eq!(entry_payload(&[(b"data", b"{\"a\":1}")]).as_ref(), b"{\"a\":1}");
        let many = entry_payload(&[(b"a", b"1"), (b"b", b"two")]);
        assert_eq!(many.as_ref(), br#"{"a":"1","b":"two"}"#);
        assert_eq!(entry_payload(&[(b"a", b"\xff"), (b"b", b"2")]).as_ref(), b"\xff");
        assert_eq!(entry_payload(&[]).as_ref(), b"");
    }
}
