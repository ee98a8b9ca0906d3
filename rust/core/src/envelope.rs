//! The message envelope: who sent a message, its per-sender sequence number, when, its id,
//! and the payload (`data`), already encoded by Python.
//!
//! JSON (the default; readable by redis-cli and any language), exactly this key order:
//!
//! ```text
//! {"ls":1,"id":"<id>","from":"<sender>","seq":<u64>,"ts":<f64 unix seconds>,"data":<raw JSON>}
//! ```
//!
//! msgpack: a 6-entry map with the same keys in the same order, `data` embedded raw.
//!
//! A payload without the envelope marker (JSON: the first non-whitespace bytes are
//! `{"ls":`; msgpack: `0x86 0xa2 'l' 's'`) is *foreign*, e.g. published by redis-cli: it is
//! delivered whole, classified as JSON, text or bytes. A payload with the marker must be
//! a well-formed envelope; anything else is `CoreError::Envelope` naming what was wrong.

mod wire_json;
mod wire_msgpack;

use std::borrow::Cow;

use crate::error::CoreError;
use crate::names::validate_name;
use crate::resp::write_header;
pub use wire_json::DataCheck;

/// Default size limit of one envelope (or foreign payload), in bytes: 1 MiB.
pub const DEFAULT_MAX_SIZE: usize = 1 << 20;

/// The `ls` value this version writes and reads.
pub const ENVELOPE_VERSION: u64 = 1;

pub use wire_json::{string_end, top_level};

/// The first bytes of a JSON envelope (after optional whitespace).
pub const JSON_MARKER: &[u8] = wire_json::MARKER;
/// The first bytes of a msgpack envelope.
pub const MSGPACK_MARKER: &[u8] = wire_msgpack::MARKER;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Json,
    Msgpack,
}

impl Codec {
    pub fn from_name(name: &str) -> Result<Self, CoreError> {
        match name {
            "json" => Ok(Codec::Json),
            "msgpack" => Ok(Codec::Msgpack),
            _ => Err(CoreError::UnknownCodec { codec: name.to_owned() }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Msgpack => "msgpack",
        }
    }
}

/// What a decoded payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A lockstep envelope; `data` is in the codec's encoding.
    Envelope,
    /// Foreign, and valid JSON.
    Json,
    /// Foreign, not JSON, valid UTF-8.
    Text,
    /// Foreign, anything else.
    Bytes,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Envelope => "envelope",
            Kind::Json => "json",
            Kind::Text => "text",
            Kind::Bytes => "bytes",
        }
    }
}

/// The envelope's own fields (everything but `data`).
#[derive(Clone, Debug, PartialEq)]
pub struct Meta<'a> {
    pub sender: Cow<'a, str>,
    pub seq: u64,
    pub ts: f64,
    pub id: Cow<'a, str>,
}

/// What a batch reader remembers from one payload to the next, so that what repeats is
/// neither parsed nor checked again: the `ts` text of the last envelope with its value
/// (every message of one publish carries the same `ts`), and the last sender whose name
/// passed `validate_name`. Only facts about text already checked are kept: a payload
/// matching them is decoded exactly as without them.
#[derive(Clone, Debug, Default)]
pub struct Memo {
    pub(crate) ts_text: Vec<u8>,
    pub(crate) ts: f64,
    sender: Option<Vec<u8>>,
}

/// One decoded payload. `meta` is present exactly when `kind` is `Kind::Envelope`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded<'a> {
    pub meta: Option<Meta<'a>>,
    pub data: &'a [u8],
    pub kind: Kind,
}

fn check_size(size: usize, limit: usize) -> Result<(), CoreError> {
    if size > limit {
        return Err(CoreError::MessageTooLarge { size, limit });
    }
    Ok(())
}

fn check_meta(meta: &Meta<'_>) -> Result<(), CoreError> {
    validate_name(&meta.sender, "sender")?;
    validate_name(&meta.id, "message id")?;
    if !meta.ts.is_finite() {
        return Err(CoreError::envelope(format!("ts must be a finite number of unix seconds, got {}", meta.ts)));
    }
    Ok(())
}

/// Append one envelope to `out`. `meta` must already be checked (names, ts), and
/// `ts_text` be `meta.ts` formatted for JSON. With a `command_head` (see [`Layout`]) the
/// envelope is written as that command's last bulk argument.
fn write_one(
    codec: Codec,
    out: &mut Vec<u8>,
    data: &[u8],
    meta: &Meta<'_>,
    ts_text: &str,
    max_size: usize,
    layout: Layout<'_>,
) -> Result<(), CoreError> {
    match (codec, layout.data_check) {
        (Codec::Json, Some(DataCheck::Full)) => wire_json::check_data(data)?,
        (Codec::Json, Some(DataCheck::Shape)) => wire_json::check_shape(data)?,
        (Codec::Json, Some(DataCheck::Line)) => wire_json::check_line(data)?,
        (Codec::Json, None) => {}
        (Codec::Msgpack, _) => wire_msgpack::check_data(data)?,
    }
    let size = match codec {
        Codec::Json => wire_json::encoded_len(data, meta, ts_text),
        Codec::Msgpack => wire_msgpack::encoded_len(data, meta),
    };
    check_size(size, max_size)?;
    out.reserve(size + layout.command_head.len() + 24);
    if !layout.command_head.is_empty() {
        out.extend_from_slice(layout.command_head);
        write_header(out, b'$', size);
    }
    match codec {
        Codec::Json => wire_json::write(out, data, meta, ts_text),
        Codec::Msgpack => wire_msgpack::write(out, data, meta),
    }
    if !layout.command_head.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// How [`encode_batch`] writes and checks each envelope.
#[derive(Clone, Copy, Debug)]
pub struct Layout<'a> {
    /// Written before each envelope, which then follows as one more bulk string: the array
    /// header and leading arguments of a command (`*3 $7 PUBLISH $n <channel>`, see
    /// [`crate::resp::each_head`]), so the batch is a pipeline of commands ready to send.
    /// Empty: the envelopes alone, back to back.
    pub command_head: &'a [u8],
    /// How much of each JSON `data` is checked. `Shape` is for data that a receiver parses
    /// strictly anyway, where it only matters that it cannot spill into the envelope's own
    /// fields. None only inside this crate: for the items of
    /// [`crate::pubsub::encode_json_array`], whose split already checked their shape.
    data_check: Option<DataCheck>,
}

impl<'a> Layout<'a> {
    /// Envelopes alone, each data fully checked.
    pub const BARE: Layout<'static> = Layout { command_head: b"", data_check: Some(DataCheck::Full) };

    pub fn new(command_head: &'a [u8], data_check: DataCheck) -> Self {
        Layout { command_head, data_check: Some(data_check) }
    }

    /// For data already checked to be shaped like one value each (and UTF-8).
    pub(crate) fn checked(command_head: &'a [u8]) -> Self {
        Layout { command_head, data_check: None }
    }
}

/// Encode one envelope around `data` (already encoded in `codec`'s format).
pub fn encode(codec: Codec, data: &[u8], meta: &Meta<'_>, max_size: usize) -> Result<Vec<u8>, CoreError> {
    check_meta(meta)?;
    let mut ts_text = ryu::Buffer::new();
    let mut out = Vec::new();
    write_one(codec, &mut out, data, meta, ts_text.format_finite(meta.ts), max_size, Layout::BARE)?;
    Ok(out)
}

/// Many envelopes written back to back into one buffer; `ends[i]` is where item i ends.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
}

impl EncodedBatch {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The envelopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(s, e)| self.buf.get(s..e).unwrap_or_default())
    }
}

/// What every envelope of a batch shares: item i gets seq `seq_start + i` and id
/// `"{id_prefix}{seq}"`; each envelope may be at most `max_size` bytes.
#[derive(Clone, Copy, Debug)]
pub struct BatchMeta<'a> {
    pub sender: &'a str,
    pub seq_start: u64,
    pub ts: f64,
    pub id_prefix: &'a str,
    pub max_size: usize,
}

/// Encode each of `datas` under `batch`, written and checked as `layout` says (e.g. each
/// envelope inside its `PUBLISH` command, so the buffer goes to the socket as it is). All
/// or nothing: the first bad item fails the batch, and the error names its index.
pub fn encode_batch(
    codec: Codec,
    datas: &[&[u8]],
    batch: &BatchMeta<'_>,
    layout: Layout<'_>,
) -> Result<EncodedBatch, CoreError> {
    let BatchMeta { sender, seq_start, ts, id_prefix, max_size } = *batch;
    let count = u64::try_from(datas.len()).unwrap_or(u64::MAX);
    let last_seq = match count.checked_sub(1) {
        None => return Ok(EncodedBatch::default()),
        Some(k) => seq_start
            .checked_add(k)
            .ok_or_else(|| CoreError::envelope(format!("seq {seq_start} + {k} overflows a u64")))?,
    };
    // Digits are always allowed in a name, so the longest id (the last) stands for all.
    let mut id = String::with_capacity(id_prefix.len() + 20);
    id.push_str(id_prefix);
    id.push_str(itoa::Buffer::new().format(last_seq));
    check_meta(&Meta { sender: Cow::Borrowed(sender), seq: last_seq, ts, id: Cow::Borrowed(&id) })?;

    let per_item = 64 + sender.len() + id.len() + layout.command_head.len() + 24;
    let total: usize = datas.iter().map(|d| d.len() + per_item).sum();
    let mut batch = EncodedBatch { buf: Vec::with_capacity(total), ends: Vec::with_capacity(datas.len()) };
    let mut ts_buffer = ryu::Buffer::new();
    let ts_text = ts_buffer.format_finite(ts);
    let mut seq = seq_start;
    for (index, data) in datas.iter().enumerate() {
        id.truncate(id_prefix.len());
        id.push_str(itoa::Buffer::new().format(seq));
        let meta = Meta { sender: Cow::Borrowed(sender), seq, ts, id: Cow::Borrowed(&id) };
        write_one(codec, &mut batch.buf, data, &meta, ts_text, max_size, layout).map_err(|e| at_index(e, index))?;
        batch.ends.push(batch.buf.len());
        seq = seq.wrapping_add(1);
    }
    Ok(batch)
}

fn at_index(err: CoreError, index: usize) -> CoreError {
    match err {
        CoreError::Envelope { reason } => CoreError::envelope(format!("item {index}: {reason}")),
        other => other,
    }
}

/// Whitespace JSON allows before a value.
fn skip_json_ws(payload: &[u8]) -> &[u8] {
    let start = payload.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')).unwrap_or(payload.len());
    payload.get(start..).unwrap_or_default()
}

fn is_envelope(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Json => skip_json_ws(payload).starts_with(wire_json::MARKER),
        Codec::Msgpack => payload.starts_with(wire_msgpack::MARKER),
    }
}

fn classify_foreign(payload: &[u8]) -> Kind {
    if wire_json::is_json(payload) {
        Kind::Json
    } else if std::str::from_utf8(payload).is_ok() {
        Kind::Text
    } else {
        Kind::Bytes
    }
}

/// Decode one payload: an envelope, or a foreign message delivered whole.
pub fn decode(codec: Codec, payload: &[u8], max_size: usize) -> Result<Decoded<'_>, CoreError> {
    decode_checking(codec, payload, max_size, wire_json::DataCheck::Full, &mut Memo::default())
}

/// [`decode`] for a caller that parses JSON data itself right after, in a batch of lines:
/// the data of a canonical JSON envelope is not checked here (see
/// `wire_json::DataCheck::Line`: the caller decodes data holding a newline on its own), so
/// malformed data surfaces from that parse instead.
/// `memo` carries what the previous payloads of the batch (or stream) established.
pub fn decode_for_batch<'a>(
    codec: Codec,
    payload: &'a [u8],
    max_size: usize,
    memo: &mut Memo,
) -> Result<Decoded<'a>, CoreError> {
    decode_checking(codec, payload, max_size, wire_json::DataCheck::Line, memo)
}

fn decode_checking<'a>(
    codec: Codec,
    payload: &'a [u8],
    max_size: usize,
    data_check: wire_json::DataCheck,
    memo: &mut Memo,
) -> Result<Decoded<'a>, CoreError> {
    check_size(payload.len(), max_size)?;
    if !is_envelope(codec, payload) {
        return Ok(Decoded { meta: None, data: payload, kind: classify_foreign(payload) });
    }
    let (meta, data) = match codec {
        Codec::Json => wire_json::read_checking(payload, data_check, memo)?,
        Codec::Msgpack => wire_msgpack::read(payload)?,
    };
    let named = |e: CoreError| CoreError::envelope(e.to_string());
    if memo.sender.as_deref() != Some(meta.sender.as_bytes()) {
        validate_name(&meta.sender, "sender").map_err(named)?;
        memo.sender = Some(meta.sender.as_bytes().to_vec());
    }
    validate_name(&meta.id, "message id").map_err(named)?;
    if !meta.ts.is_finite() {
        return Err(CoreError::envelope(format!("ts is {}, not a finite number", meta.ts)));
    }
    Ok(Decoded { meta: Some(meta), data, kind: Kind::Envelope })
}

/// Decode each payload on its own: one malformed payload never costs the others.
pub fn decode_batch<'a>(codec: Codec, payloads: &[&'a [u8]], max_size: usize) -> Vec<Result<Decoded<'a>, CoreError>> {
    payloads.iter().map(|p| decode(codec, p, max_size)).collect()
}
