//! The subscriber hot path: RESP bytes from a socket (or payloads from a log) to `Message`
//! objects, a whole socket read per call; and the publisher's (`publish.rs`).
//!
//! `ReplyReader` parses replies incrementally; `drain_pushes` turns every complete pub/sub
//! frame into messages, `take_stream_read` / `take_claim` do the same for stream replies.
//! How payloads become messages is `MessageDecoder`'s (`decoder.rs`).

mod decoder;
mod publish;

use lockstep_core::pubsub::{self, PushFrame, StreamEntry};
use lockstep_core::resp::{self, Reply, DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH};
use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::errors;
use crate::resp::{reply_to_py, RespError};
use decoder::{Batch, MessageDecoder};

fn shape_error(err: CoreError, what: &str) -> PyErr {
    match err {
        CoreError::Protocol { reason, .. } => {
            errors::to_py(CoreError::Protocol { offset: 0, reason: format!("{what}: {reason}") })
        }
        other => errors::to_py(other),
    }
}

fn id_text<'py>(py: Python<'py>, id: &[u8]) -> Bound<'py, PyString> {
    PyString::new(py, &String::from_utf8_lossy(id))
}

/// Push every live entry of `entries` (of stream `wire`) into `batch`; deleted ones
/// (nil fields) go to `deleted`.
fn push_entries<'py>(
    py: Python<'py>,
    dec: &mut MessageDecoder,
    batch: &mut Batch<'py>,
    wire: &[u8],
    entries: &[StreamEntry<'_>],
    deleted: &Bound<'py, PyList>,
) -> PyResult<()> {
    let channel = dec.channel(py, wire);
    for entry in entries {
        match &entry.fields {
            None => deleted.append(id_text(py, entry.id))?,
            Some(fields) => {
                let payload = pubsub::entry_payload(fields);
                batch.push(dec, channel.clone(), &payload, id_text(py, entry.id).into_any())?;
            }
        }
    }
    Ok(())
}

/// Incremental RESP reader for lockstep's own connections (see the module docs).
#[pyclass(module = "lockstep._core", name = "ReplyReader")]
pub struct ReplyReader {
    parser: resp::RespParser,
}

#[pymethods]
impl ReplyReader {
    #[new]
    #[pyo3(
        signature = (max_bulk = DEFAULT_MAX_BULK, max_depth = DEFAULT_MAX_DEPTH),
        text_signature = "(max_bulk=536870912, max_depth=32)"
    )]
    fn new(max_bulk: usize, max_depth: usize) -> PyResult<Self> {
        Ok(ReplyReader { parser: resp::RespParser::new(max_bulk, max_depth).map_err(errors::to_py)? })
    }

    fn feed(&mut self, data: &[u8]) -> PyResult<()> {
        self.parser.feed(data).map_err(errors::to_py)
    }

    /// Bytes fed but not yet taken as replies.
    #[getter]
    fn buffered(&self) -> usize {
        self.parser.buffered()
    }

    /// Consume up to `count` replies without building them: `(consumed, first error reply)`.
    fn skip<'py>(&mut self, py: Python<'py>, count: usize) -> PyResult<(usize, Bound<'py, PyAny>)> {
        let mut taken = self.parser.skip_plain(count);
        let mut error: Option<String> = None;
        while taken < count {
            match self.parser.next_reply().map_err(errors::to_py)? {
                Some(reply) => {
                    if let (Reply::Error(message), None) = (&reply, &error) {
                        error = Some(String::from_utf8_lossy(message).into_owned());
                    }
                    taken += 1 + self.parser.skip_plain(count - taken - 1);
                }
                None => break,
            }
        }
        let error = match error {
            Some(message) => Bound::new(py, RespError { message })?.into_any(),
            None => py.None().into_bound(py),
        };
        Ok((taken, error))
    }

    /// Up to `count` complete replies, as `RespParser.drain` returns them.
    fn take<'py>(&mut self, py: Python<'py>, count: usize) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        while out.len() < count {
            match self.parser.next_reply().map_err(errors::to_py)? {
                Some(reply) => out.append(reply_to_py(py, &reply, false)?)?,
                None => break,
            }
        }
        Ok(out)
    }

    /// Every complete frame of a subscribed connection: `(items, jumps, events)`. Items and
    /// jumps are as `MessageDecoder.decode` returns them; events are the other frames, in
    /// order: `("subscribe" | "unsubscribe" | ..., channel, count)`, `("pong", payload)`,
    /// `("error", message)`, `("unexpected", repr)`.
    fn drain_pushes<'py>(
        &mut self,
        py: Python<'py>,
        decoder: &mut MessageDecoder,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let mut batch = Batch::new(py, self.parser.buffered());
        let events = PyList::empty(py);
        loop {
            if let Some((channel, payload)) = self.parser.next_message_frame() {
                let name = batch.channel(decoder, channel);
                batch.push(decoder, name, payload, py.None().into_bound(py))?;
                continue;
            }
            let reply = match self.parser.next_reply() {
                Ok(Some(reply)) => reply,
                Ok(None) => break,
                // Deliver what parsed before the bad bytes; the next call raises.
                Err(_) if !batch.is_empty() || !events.is_empty() => break,
                Err(err) => return Err(errors::to_py(err)),
            };
            match pubsub::classify_push(&reply) {
                PushFrame::Message { channel, payload, .. } => {
                    let name = batch.channel(decoder, channel);
                    batch.push(decoder, name, payload, py.None().into_bound(py))?;
                }
                PushFrame::Subscription { kind, channel, count } => {
                    let kind = PyString::new(py, &String::from_utf8_lossy(kind));
                    let channel = match channel {
                        Some(c) => decoder.channel(py, c).into_any(),
                        None => py.None().into_bound(py),
                    };
                    events.append((kind, channel, count))?;
                }
                PushFrame::Pong(payload) => events.append(("pong", PyBytes::new(py, payload)))?,
                PushFrame::Error(message) => events.append(("error", String::from_utf8_lossy(message)))?,
                PushFrame::Unexpected => events.append(("unexpected", format!("{reply:?}")))?,
            }
        }
        let (items, jumps) = batch.finish(decoder)?;
        Ok((items, jumps, events))
    }

    /// The next reply, read as an `XREAD`/`XREADGROUP` reply: `(items, jumps, deleted_ids,
    /// last)`, `last` holding `(stream key, id of its last entry)` per stream that had any;
    /// a `RespError` if the server refused; None until the whole reply has arrived.
    fn take_stream_read<'py>(&mut self, py: Python<'py>, decoder: &mut MessageDecoder) -> PyResult<Bound<'py, PyAny>> {
        let Some(reply) = self.parser.next_reply().map_err(errors::to_py)? else {
            return Ok(py.None().into_bound(py));
        };
        if let Reply::Error(message) = &reply {
            return Bound::new(py, RespError { message: String::from_utf8_lossy(message).into_owned() })
                .map(Bound::into_any);
        }
        let streams = pubsub::stream_read(&reply).map_err(|e| shape_error(e, "stream read"))?;
        let mut batch = Batch::new(py, 0);
        let deleted = PyList::empty(py);
        let last = PyList::empty(py);
        for (wire, entries) in &streams {
            push_entries(py, decoder, &mut batch, wire, entries, &deleted)?;
            if let Some(entry) = entries.last() {
                last.append((PyBytes::new(py, wire), id_text(py, entry.id)))?;
            }
        }
        let (items, jumps) = batch.finish(decoder)?;
        PyTuple::new(py, [items.into_any(), jumps.into_any(), deleted.into_any(), last.into_any()]).map(Bound::into_any)
    }

    /// The next reply, read as lockstep's claim script answers: `[wire, entries, counts,
    /// deleted_ids, dead_ids]`. Returns `(items, counts, deleted_ids, dead_ids)`, a
    /// `RespError`, or None until it has arrived. `counts[i]` is the delivery count of item i.
    fn take_claim<'py>(&mut self, py: Python<'py>, decoder: &mut MessageDecoder) -> PyResult<Bound<'py, PyAny>> {
        let Some(reply) = self.parser.next_reply().map_err(errors::to_py)? else {
            return Ok(py.None().into_bound(py));
        };
        let parts = match &reply {
            Reply::Error(message) => {
                return Bound::new(py, RespError { message: String::from_utf8_lossy(message).into_owned() })
                    .map(Bound::into_any)
            }
            Reply::Array(parts) if parts.len() == 5 => parts,
            _ => return Err(shape_error(CoreError::Protocol { offset: 0, reason: format!("{reply:?}") }, "claim")),
        };
        let wire = match parts.first() {
            Some(Reply::Bulk(w)) => *w,
            _ => b"",
        };
        let entries =
            pubsub::stream_entries(parts.get(1).unwrap_or(&Reply::Nil)).map_err(|e| shape_error(e, "claim"))?;
        let mut batch = Batch::new(py, 0);
        let deleted = PyList::empty(py);
        push_entries(py, decoder, &mut batch, wire, &entries, &deleted)?;
        let counts = PyList::empty(py);
        if let Some(Reply::Array(values)) = parts.get(2) {
            for (entry, count) in entries.iter().zip(values) {
                if entry.fields.is_some() {
                    counts.append(if let Reply::Integer(n) = count { *n } else { 1 })?;
                }
            }
        }
        let ids_at = |index: usize| -> PyResult<Bound<'py, PyList>> {
            let ids = PyList::empty(py);
            if let Some(Reply::Array(values)) = parts.get(index) {
                for value in values {
                    if let Reply::Bulk(id) | Reply::Simple(id) = value {
                        ids.append(id_text(py, id))?;
                    }
                }
            }
            Ok(ids)
        };
        let deleted_ids = ids_at(3)?;
        for id in deleted.iter() {
            deleted_ids.append(id)?;
        }
        let dead_ids = ids_at(4)?;
        let (items, _) = batch.finish(decoder)?;
        PyTuple::new(py, [items.into_any(), counts.into_any(), deleted_ids.into_any(), dead_ids.into_any()])
            .map(Bound::into_any)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(publish::pack_envelopes, m)?)?;
    m.add_function(wrap_pyfunction!(publish::encode_lines, m)?)?;
    m.add_function(wrap_pyfunction!(publish::json_lines, m)?)?;
    m.add_function(wrap_pyfunction!(publish::longest_line, m)?)?;
    m.add_function(wrap_pyfunction!(publish::count_lines, m)?)?;
    m.add_class::<MessageDecoder>()?;
    m.add_class::<ReplyReader>()?;
    Ok(())
}
