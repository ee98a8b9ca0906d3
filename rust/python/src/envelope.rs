//! Envelope encode/decode, one and in batches. Decoded tuples are
//! `(sender, seq, ts, id, data, kind)`; foreign payloads have `None` for the first four.

use lockstep_core::envelope::{self, Decoded, Meta, DEFAULT_MAX_SIZE};
use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};
use std::borrow::Cow;

use crate::args::{self, DETACH_ABOVE};
use crate::errors;

// The `text_signature`s below spell out DEFAULT_MAX_SIZE (1048576) because the attribute
// needs a literal; `max_size=None` at runtime means the same default.
// tests/unit/test_core_envelope.py checks the two agree.

fn seq_arg(obj: &Bound<'_, PyAny>, what: &'static str) -> PyResult<u64> {
    args::u64_arg(obj, |got| CoreError::Envelope { reason: format!("{what} must be 0 to 2**64-1, got {got}") })
}

/// Encode one envelope around `data` (already encoded JSON or msgpack).
#[pyfunction]
#[pyo3(
    signature = (data, sender, seq, ts, id, codec = "json", max_size = None),
    text_signature = "(data, sender, seq, ts, id, codec='json', max_size=1048576)"
)]
#[allow(clippy::too_many_arguments)]
fn encode_envelope<'py>(
    py: Python<'py>,
    data: &[u8],
    sender: &str,
    seq: &Bound<'py, PyAny>,
    ts: f64,
    id: &str,
    codec: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = args::codec(codec)?;
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let meta = Meta { sender: Cow::Borrowed(sender), seq: seq_arg(seq, "seq")?, ts, id: Cow::Borrowed(id) };
    let out = envelope::encode(codec, data, &meta, max_size).map_err(errors::to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// Encode `datas[i]` with seq `seq_start + i` and id `f"{id_prefix}{seq}"`.
#[pyfunction]
#[pyo3(
    signature = (datas, sender, seq_start, ts, id_prefix, codec = "json", max_size = None),
    text_signature = "(datas, sender, seq_start, ts, id_prefix, codec='json', max_size=1048576)"
)]
#[allow(clippy::too_many_arguments)]
fn encode_batch<'py>(
    py: Python<'py>,
    datas: &Bound<'py, PyAny>,
    sender: &str,
    seq_start: &Bound<'py, PyAny>,
    ts: f64,
    id_prefix: &str,
    codec: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let codec = args::codec(codec)?;
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let seq_start = seq_arg(seq_start, "seq_start")?;
    let items = args::bytes_items(datas, "datas")?;
    let slices: Vec<&[u8]> = items.iter().map(|b| b.as_bytes()).collect();
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let batch = envelope::BatchMeta { sender, seq_start, ts, id_prefix, max_size };
    let run = || envelope::encode_batch(codec, &slices, &batch, envelope::Layout::BARE);
    let batch = if total >= DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)?;
    PyList::new(py, batch.iter().map(|env| PyBytes::new(py, env)))
}

/// The sender's Python string, reused while consecutive messages come from one sender (the
/// common case in a batch): one string object per run instead of one per message.
pub(crate) struct SenderCache<'py> {
    py: Python<'py>,
    last: Option<(String, Bound<'py, PyString>)>,
}

impl<'py> SenderCache<'py> {
    pub(crate) fn new(py: Python<'py>) -> Self {
        SenderCache { py, last: None }
    }

    pub(crate) fn get(&mut self, name: &str) -> Bound<'py, PyString> {
        if let Some((last, obj)) = &self.last {
            if last == name {
                return obj.clone();
            }
        }
        let obj = PyString::new(self.py, name);
        self.last = Some((name.to_owned(), obj.clone()));
        obj
    }
}

/// Turns decoded payloads into tuples, reusing the sender string across a batch.
struct TupleBuilder<'py> {
    py: Python<'py>,
    senders: SenderCache<'py>,
}

impl<'py> TupleBuilder<'py> {
    fn new(py: Python<'py>) -> Self {
        TupleBuilder { py, senders: SenderCache::new(py) }
    }

    fn tuple(&mut self, d: &Decoded<'_>) -> PyResult<Bound<'py, PyTuple>> {
        let py = self.py;
        let kind = match d.kind {
            envelope::Kind::Envelope => intern!(py, "envelope"),
            envelope::Kind::Json => intern!(py, "json"),
            envelope::Kind::Text => intern!(py, "text"),
            envelope::Kind::Bytes => intern!(py, "bytes"),
        };
        let data = PyBytes::new(py, d.data);
        let items: [Bound<'py, PyAny>; 6] = match &d.meta {
            Some(m) => [
                self.senders.get(&m.sender).into_any(),
                m.seq.into_bound_py_any(py)?,
                m.ts.into_bound_py_any(py)?,
                PyString::new(py, &m.id).into_any(),
                data.into_any(),
                kind.clone().into_any(),
            ],
            None => [
                py.None().into_bound(py),
                py.None().into_bound(py),
                py.None().into_bound(py),
                py.None().into_bound(py),
                data.into_any(),
                kind.clone().into_any(),
            ],
        };
        PyTuple::new(py, items)
    }
}

/// Decode one payload: an envelope, or a foreign message delivered whole.
#[pyfunction]
#[pyo3(signature = (payload, codec = "json", max_size = None), text_signature = "(payload, codec='json', max_size=1048576)")]
fn decode_envelope<'py>(
    py: Python<'py>,
    payload: &[u8],
    codec: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let codec = args::codec(codec)?;
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let decoded = envelope::decode(codec, payload, max_size).map_err(errors::to_py)?;
    TupleBuilder::new(py).tuple(&decoded)
}

/// Decode each payload on its own; a malformed one becomes an EnvelopeError instance
/// in its place (not raised), so one bad payload never costs the others.
#[pyfunction]
#[pyo3(signature = (payloads, codec = "json", max_size = None), text_signature = "(payloads, codec='json', max_size=1048576)")]
fn decode_batch<'py>(
    py: Python<'py>,
    payloads: &Bound<'py, PyAny>,
    codec: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let codec = args::codec(codec)?;
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let items = args::bytes_items(payloads, "payloads")?;
    let slices: Vec<&[u8]> = items.iter().map(|b| b.as_bytes()).collect();
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let run = || envelope::decode_batch(codec, &slices, max_size);
    let results = if total >= DETACH_ABOVE { py.detach(run) } else { run() };
    let mut builder = TupleBuilder::new(py);
    let out = PyList::empty(py);
    for result in &results {
        match result {
            Ok(decoded) => out.append(builder.tuple(decoded)?)?,
            Err(err) => out.append(errors::to_py_instance(py, err)?)?,
        }
    }
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEFAULT_MAX_SIZE", DEFAULT_MAX_SIZE)?;
    m.add_function(wrap_pyfunction!(encode_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(encode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decode_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    Ok(())
}
