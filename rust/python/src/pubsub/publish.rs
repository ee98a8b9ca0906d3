//! The publish hot path: a batch's data (one JSON array, as msgspec encodes a list) to
//! envelopes and RESP commands in one call, with no Python object per message.

use lockstep_core::envelope::{BatchMeta, DEFAULT_MAX_SIZE};
use lockstep_core::pubsub;
use lockstep_core::resp;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::args;
use crate::errors;

/// The publish hot path: the items of ``array`` (a JSON array, as msgspec encodes a list) as
/// envelopes with seqs from ``seq_start``, each written as one command ``*prefix, envelope``
/// (``PUBLISH channel``, ``XADD key * m``) into one buffer. Returns ``(buffer, count)``.
/// All or nothing: an item too large (MessageTooLargeError) or malformed fails the call.
#[pyfunction]
#[pyo3(
    signature = (prefix, array, sender, seq_start, ts, id_prefix, max_size = None),
    text_signature = "(prefix, array, sender, seq_start, ts, id_prefix, max_size=1048576)"
)]
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_envelopes<'py>(
    py: Python<'py>,
    prefix: &Bound<'py, PyAny>,
    array: &[u8],
    sender: &str,
    seq_start: u64,
    ts: f64,
    id_prefix: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let prefix_items: Vec<Vec<u8>> = args::bytes_or_str_items(prefix, "prefix")?;
    let prefix_args: Vec<resp::Arg<'_>> = prefix_items.iter().map(|p| resp::Arg::Bytes(p)).collect();
    let head = resp::each_head(&prefix_args).map_err(errors::to_py)?;
    let meta = BatchMeta { sender, seq_start, ts, id_prefix, max_size };
    let run = || pubsub::encode_json_array(array, &meta, &head);
    let batch = if array.len() >= args::DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)?;
    Ok((PyBytes::new(py, &batch.buf), batch.len()))
}

/// The envelopes of every item of ``array`` (a JSON array), for stores that keep them one by
/// one (memory, file). As ``encode_batch`` otherwise.
#[pyfunction]
#[pyo3(
    signature = (array, sender, seq_start, ts, id_prefix, max_size = None),
    text_signature = "(array, sender, seq_start, ts, id_prefix, max_size=1048576)"
)]
pub(super) fn encode_array<'py>(
    py: Python<'py>,
    array: &[u8],
    sender: &str,
    seq_start: u64,
    ts: f64,
    id_prefix: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let meta = BatchMeta { sender, seq_start, ts, id_prefix, max_size };
    let run = || pubsub::encode_json_array(array, &meta, b"");
    let batch = if array.len() >= args::DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)?;
    PyList::new(py, batch.iter().map(|env| PyBytes::new(py, env)))
}

/// The length in bytes of the longest item of ``array`` (a JSON array), 0 when it is empty:
/// whether any item could come near the size limit, without enveloping any. A malformed
/// array is an EnvelopeError.
#[pyfunction]
pub(super) fn largest_item(py: Python<'_>, array: &[u8]) -> PyResult<usize> {
    let run = || pubsub::split_json_array(array).map(|items| items.iter().map(|i| i.len()).max().unwrap_or(0));
    if array.len() >= args::DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)
}
