//! `MessageDecoder`: how payloads become `Message` objects, a batch at a time. Envelopes are
//! decoded in Rust; the data of the whole batch is decoded by ONE call of a msgspec decoder
//! per codec, over bytes built here (JSON: `d1\nd2\n...` for `decode_lines`, each item
//! free of newlines, so each line is one item; msgpack: an array header and the items, each
//! checked to be exactly one value); each sender's sequence numbers are
//! tracked to report what was missed. A payload that fails becomes an `EnvelopeError`
//! instance in its place.

use std::collections::HashMap;

use lockstep_core::envelope::{Codec, Kind, Memo, DEFAULT_MAX_SIZE};
use lockstep_core::pubsub::{self, DataArray, SeqTracker};
use lockstep_core::CoreError;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyList, PyString};
use pyo3::{intern, IntoPyObjectExt};

use crate::args;
use crate::envelope::SenderCache;
use crate::errors;

/// Sender streams a decoder remembers for gap detection.
const TRACKED_SENDERS: usize = 65_536;

/// Where a slot's data comes from once the batch is decoded.
enum Value<'py> {
    /// Bytes `start..end` of the batch's array in that codec.
    Bulk { codec: Codec, start: usize, end: usize },
    /// Already a Python value (untyped text or bytes).
    Ready(Bound<'py, PyAny>),
    /// Needs `decode_item(channel, data, kind)`.
    Item(Bound<'py, PyBytes>, &'static str),
    /// The payload is bad: this error instance is delivered in its place.
    Bad(Bound<'py, PyAny>),
}

struct Meta<'py> {
    sender: Bound<'py, PyString>,
    seq: u64,
    ts: Bound<'py, PyFloat>,
    id: Bound<'py, PyString>,
}

struct Slot<'py> {
    channel: Bound<'py, PyString>,
    position: Bound<'py, PyAny>,
    meta: Option<Meta<'py>>,
    value: Value<'py>,
}

/// One call of `decode` over `items` (JSON lines, or a msgpack array): its values, or None
/// when there are none, when the call failed (e.g. a typed channel got an item of the wrong
/// shape, or a line is not exactly one value) or gave a different count.
fn decode_items<'py>(
    py: Python<'py>,
    items: &DataArray,
    codec: Codec,
    decode: Option<&Py<PyAny>>,
) -> Option<Bound<'py, PyList>> {
    let decode = decode.filter(|_| !items.is_empty())?;
    let (head, body, tail) = items.array(codec);
    let (at_body, at_tail) = (head.len(), head.len() + body.len());
    let array = PyBytes::new_with(py, at_tail + tail.len(), |out| {
        for (at, part) in [(0, head.as_slice()), (at_body, body), (at_tail, tail)] {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
        }
        Ok(())
    })
    .ok()?;
    let values = decode.bind(py).call1((array,)).ok()?;
    values.cast_into::<PyList>().ok().filter(|list| list.len() == items.len())
}

/// The messages of one call, built in one pass, decoded at `finish`. What repeats from one
/// message to the next (its channel, its sender, the `ts` of one publish) is made into a
/// Python object once.
pub(super) struct Batch<'py> {
    py: Python<'py>,
    /// the data items of each codec, at [`at`]
    arrays: [DataArray; 2],
    slots: Vec<Slot<'py>>,
    jumps: Vec<(usize, Bound<'py, PyString>, u64, u64)>,
    senders: SenderCache<'py>,
    channel: Option<(Vec<u8>, Bound<'py, PyString>)>,
    ts: Option<(u64, Bound<'py, PyFloat>)>,
}

impl<'py> Batch<'py> {
    /// Nothing pushed yet.
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// `bytes` bounds the payload bytes to come (0 when unknown), so buffers grow once.
    pub(super) fn new(py: Python<'py>, bytes: usize) -> Self {
        Batch {
            py,
            arrays: [DataArray::with_capacity(bytes + 2), DataArray::default()],
            slots: Vec::with_capacity(bytes / 128),
            jumps: Vec::new(),
            senders: SenderCache::new(py),
            channel: None,
            ts: None,
        }
    }

    /// `dec.channel(wire)`, the last one remembered.
    pub(super) fn channel(&mut self, dec: &MessageDecoder, wire: &[u8]) -> Bound<'py, PyString> {
        match &self.channel {
            Some((last, name)) if last.as_slice() == wire => name.clone(),
            _ => {
                let name = dec.channel(self.py, wire);
                self.channel = Some((wire.to_vec(), name.clone()));
                name
            }
        }
    }

    fn ts(&mut self, ts: f64) -> Bound<'py, PyFloat> {
        match &self.ts {
            Some((bits, obj)) if *bits == ts.to_bits() => obj.clone(),
            _ => {
                let obj = PyFloat::new(self.py, ts);
                self.ts = Some((ts.to_bits(), obj.clone()));
                obj
            }
        }
    }

    fn push_bulk(&mut self, codec: Codec, data: &[u8]) -> Value<'py> {
        let (start, end) = self.arrays[at(codec)].push(codec, data);
        Value::Bulk { codec, start, end }
    }

    /// Add one payload; `position` is its place in a log (None for pub/sub).
    pub(super) fn push(
        &mut self,
        dec: &mut MessageDecoder,
        channel: Bound<'py, PyString>,
        payload: &[u8],
        position: Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let py = self.py;
        let (meta, value) = match pubsub::decode_any(payload, dec.max_size, &mut dec.memo) {
            Err(err) => {
                let bad = channel_error(py, &channel, &err, &position)?;
                bad.setattr(intern!(py, "payload"), PyBytes::new(py, payload))?;
                (None, Value::Bad(bad))
            }
            Ok((decoded, codec)) => {
                let meta = match &decoded.meta {
                    Some(m) => {
                        let sender = self.senders.get(&m.sender);
                        if let Some(tracker) = dec.tracker.as_mut() {
                            if let Some((lo, hi)) = tracker.observe(&m.sender, &m.id, m.seq) {
                                self.jumps.push((self.slots.len(), sender.clone(), lo, hi));
                            }
                        }
                        Some(Meta { sender, seq: m.seq, ts: self.ts(m.ts), id: PyString::new(py, &m.id) })
                    }
                    None => None,
                };
                let data = decoded.data;
                // JSON data is decoded as a line: one that holds a newline (whitespace in
                // pretty-printed JSON) is decoded alone instead
                let multiline = || memchr::memchr(b'\n', data).is_some();
                let value = match (decoded.kind, codec) {
                    (Kind::Envelope, Codec::Json) | (Kind::Json, _) if multiline() => {
                        Value::Item(PyBytes::new(py, data), "json")
                    }
                    (Kind::Envelope, codec) => self.push_bulk(codec, data),
                    (Kind::Json, _) => self.push_bulk(Codec::Json, data),
                    (Kind::Text, _) if !dec.typed => {
                        Value::Ready(PyString::new(py, &String::from_utf8_lossy(data)).into_any())
                    }
                    (Kind::Text, _) => Value::Item(PyBytes::new(py, data), "text"),
                    (Kind::Bytes, _) if !dec.typed => Value::Ready(PyBytes::new(py, data).into_any()),
                    (Kind::Bytes, _) => Value::Item(PyBytes::new(py, data), "bytes"),
                };
                (meta, value)
            }
        };
        self.slots.push(Slot { channel, position, meta, value });
        Ok(())
    }

    /// Decode every data value and build the messages: `(items, jumps)`. One call per codec
    /// for the whole batch; if one fails, its items are decoded one by one instead (so a bad
    /// item fails alone).
    pub(super) fn finish(self, dec: &MessageDecoder) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let py = self.py;
        let decoders = [Some(&dec.decode_lines), dec.decode_msgpack_array.as_ref()];
        let bulk = CODECS.map(|codec| (decode_items(py, &self.arrays[at(codec)], codec, decoders[at(codec)]), 0));
        build(py, dec, self.slots, bulk, &self.arrays, self.jumps)
    }
}

const CODECS: [Codec; 2] = [Codec::Json, Codec::Msgpack];

/// Where a codec's data is kept in a batch's per-codec arrays.
const fn at(codec: Codec) -> usize {
    match codec {
        Codec::Json => 0,
        Codec::Msgpack => 1,
    }
}

/// Each codec's decoded values (None: decode item by item) and how many were taken.
type Bulk<'py> = [(Option<Bound<'py, PyList>>, usize); 2];

fn next_value<'py>(bulk: &mut Bulk<'py>, codec: Codec) -> Option<Bound<'py, PyAny>> {
    let (list, taken) = &mut bulk[at(codec)];
    *taken += 1;
    list.as_ref()?.get_item(*taken - 1).ok()
}

fn build<'py>(
    py: Python<'py>,
    dec: &MessageDecoder,
    slots: Vec<Slot<'py>>,
    mut bulk: Bulk<'py>,
    arrays: &[DataArray; 2],
    jumps: Vec<(usize, Bound<'py, PyString>, u64, u64)>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let message_type = dec.message_type.bind(py);
    let decode_item = dec.decode_item.bind(py);
    // gathered first, so the list is made at its size once (not grown message by message)
    let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(slots.len());
    for slot in slots {
        let item = |data: Bound<'py, PyBytes>, kind: &str| decode_item.call1((&slot.channel, data, kind));
        let value = match slot.value {
            Value::Bad(err) => {
                items.push(err);
                continue;
            }
            Value::Ready(v) => Ok(v),
            Value::Item(data, kind) => item(data, kind),
            Value::Bulk { codec, start, end } => match next_value(&mut bulk, codec) {
                Some(v) => Ok(v),
                None => {
                    let bytes = arrays[at(codec)].items().get(start..end).unwrap_or_default();
                    item(PyBytes::new(py, bytes), codec.name())
                }
            },
        };
        let value = match value {
            Ok(v) => v,
            Err(err) => {
                let instance = err.into_value(py).into_bound(py).into_any();
                annotate(py, &instance, &slot.channel, &slot.position, slot.meta.as_ref())?;
                items.push(instance);
                continue;
            }
        };
        let message = match &slot.meta {
            Some(m) => message_type.call1((
                &slot.channel,
                value,
                &m.sender,
                m.seq.into_bound_py_any(py)?,
                &m.ts,
                &m.id,
                &slot.position,
            ))?,
            None => message_type.call1((
                &slot.channel,
                value,
                py.None(),
                py.None(),
                py.None(),
                py.None(),
                &slot.position,
            ))?,
        };
        items.push(message);
    }
    let items = PyList::new(py, items)?;
    let jump_list = PyList::empty(py);
    for (index, sender, lo, hi) in jumps {
        jump_list.append((index, sender, lo, hi))?;
    }
    Ok((items, jump_list))
}

/// Name the channel, position and sender on an error delivered in a message's place.
fn annotate<'py>(
    py: Python<'py>,
    err: &Bound<'py, PyAny>,
    channel: &Bound<'py, PyString>,
    position: &Bound<'py, PyAny>,
    meta: Option<&Meta<'py>>,
) -> PyResult<()> {
    err.setattr(intern!(py, "channel"), channel)?;
    err.setattr(intern!(py, "position"), position)?;
    match meta {
        Some(m) => {
            err.setattr(intern!(py, "sender"), &m.sender)?;
            err.setattr(intern!(py, "seq"), m.seq)?;
            err.setattr(intern!(py, "id"), &m.id)?;
        }
        None => {
            for name in [intern!(py, "sender"), intern!(py, "seq"), intern!(py, "id")] {
                err.setattr(name, py.None())?;
            }
        }
    }
    Ok(())
}

/// The EnvelopeError (or MessageTooLargeError) for a bad payload, naming its channel.
fn channel_error<'py>(
    py: Python<'py>,
    channel: &Bound<'py, PyString>,
    err: &CoreError,
    position: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let plain = errors::to_py_instance(py, err)?;
    let message = format!("message on channel {}: {err}", channel.repr()?);
    let named = plain.get_type().call1((message,))?;
    if let CoreError::MessageTooLarge { size, limit } = err {
        named.setattr(intern!(py, "size"), size)?;
        named.setattr(intern!(py, "limit"), limit)?;
    }
    annotate(py, &named, channel, position, None)?;
    Ok(named)
}

/// How payloads become `Message`s for one subscription or consumer. See the module docs.
#[pyclass(module = "lockstep._core", name = "MessageDecoder")]
pub struct MessageDecoder {
    message_type: Py<PyAny>,
    decode_lines: Py<PyAny>,
    decode_msgpack_array: Option<Py<PyAny>>,
    decode_item: Py<PyAny>,
    typed: bool,
    channels: HashMap<Vec<u8>, Py<PyString>>,
    tracker: Option<SeqTracker>,
    memo: Memo,
    max_size: usize,
}

impl MessageDecoder {
    /// The channel name a wire name (pub/sub channel or stream key) stands for.
    pub(super) fn channel<'py>(&self, py: Python<'py>, wire: &[u8]) -> Bound<'py, PyString> {
        match self.channels.get(wire) {
            Some(name) => name.bind(py).clone(),
            None => PyString::new(py, &String::from_utf8_lossy(wire)),
        }
    }
}

#[pymethods]
impl MessageDecoder {
    #[new]
    #[pyo3(
        signature = (message_type, decode_lines, decode_item, *, decode_msgpack_array = None, typed = false, track_seqs = true, max_size = None),
        text_signature = "(message_type, decode_lines, decode_item, *, decode_msgpack_array=None, typed=False, track_seqs=True, max_size=1048576)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        message_type: Py<PyAny>,
        decode_lines: Py<PyAny>,
        decode_item: Py<PyAny>,
        decode_msgpack_array: Option<Py<PyAny>>,
        typed: bool,
        track_seqs: bool,
        max_size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
        Ok(MessageDecoder {
            message_type,
            decode_lines,
            decode_msgpack_array,
            decode_item,
            typed,
            channels: HashMap::new(),
            tracker: track_seqs.then(|| SeqTracker::new(TRACKED_SENDERS)),
            memo: Memo::default(),
            max_size,
        })
    }

    /// Deliver messages read from `wire` (a pub/sub channel or stream key) as `channel`.
    fn add_channel(&mut self, wire: &Bound<'_, PyAny>, channel: Bound<'_, PyString>) -> PyResult<()> {
        self.channels.insert(wire_bytes(wire)?, channel.unbind());
        Ok(())
    }

    /// Forget every sender's last sequence number.
    fn reset_tracking(&mut self) {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.clear();
        }
    }

    /// Decode payloads read from a log: `channels` is one name for all, or one per payload
    /// (a wire name registered with `add_channel` is delivered as its channel).
    /// Returns `(items, jumps)`: items are Messages or EnvelopeErrors, jumps are
    /// `(index, sender, first_missed, last_missed)`.
    #[pyo3(signature = (channels, payloads, positions = None))]
    fn decode<'py>(
        &mut self,
        py: Python<'py>,
        channels: &Bound<'py, PyAny>,
        payloads: &Bound<'py, PyAny>,
        positions: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let payloads = args::bytes_items(payloads, "payloads")?;
        let one: Option<Bound<'py, PyString>> = match channels.cast::<PyString>() {
            Ok(s) => Some(self.channel(py, s.to_str()?.as_bytes())),
            Err(_) => None,
        };
        let names: Vec<Bound<'py, PyString>> = match &one {
            Some(_) => Vec::new(),
            None => channels
                .try_iter()?
                .map(|c| c.and_then(|c| c.cast_into::<PyString>().map_err(PyErr::from)))
                .collect::<PyResult<_>>()?,
        };
        if one.is_none() && names.len() != payloads.len() {
            return Err(PyTypeError::new_err("channels must be one str or one per payload"));
        }
        let positions: Vec<Bound<'py, PyAny>> = match positions {
            Some(p) if !p.is_none() => p.try_iter()?.collect::<PyResult<_>>()?,
            _ => Vec::new(),
        };
        if !positions.is_empty() && positions.len() != payloads.len() {
            return Err(PyTypeError::new_err("positions must be None or one per payload"));
        }
        let mut batch = Batch::new(py, payloads.iter().map(|p| p.as_bytes().len()).sum());
        for (index, payload) in payloads.iter().enumerate() {
            let channel = match &one {
                Some(c) => c.clone(),
                None => match names.get(index) {
                    Some(wire) if !self.channels.is_empty() => self.channel(py, wire.to_str()?.as_bytes()),
                    Some(name) => name.clone(),
                    None => PyString::new(py, ""),
                },
            };
            let position = positions.get(index).cloned().unwrap_or_else(|| py.None().into_bound(py));
            batch.push(self, channel, payload.as_bytes(), position)?;
        }
        batch.finish(self)
    }
}

fn wire_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!("a channel's wire name must be bytes or str, not {}", obj.get_type().name()?)))
}
