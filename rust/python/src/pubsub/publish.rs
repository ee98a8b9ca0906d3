//! The publish hot path: a batch's data (JSON lines, as msgspec's `encode_lines` writes a
//! list) to envelopes and RESP commands in one call, with no Python object per message.

use lockstep_core::envelope::{BatchMeta, DEFAULT_MAX_SIZE};
use lockstep_core::pubsub;
use lockstep_core::resp;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::args;
use crate::errors;

/// The publish hot path: the ``count`` items of ``lines`` (JSON lines, as msgspec's
/// ``Encoder.encode_lines`` writes a list; see ``json_lines`` for items that hold newlines)
/// as envelopes with seqs from ``seq_start``, each written as one command ``*prefix,
/// envelope`` (``PUBLISH channel``, ``XADD key * m``) into one buffer. Returns ``(buffer,
/// count)``. All or nothing: an item too large (MessageTooLargeError), or lines that are not
/// ``count`` non-empty UTF-8 lines (EnvelopeError), fail the call.
#[pyfunction]
#[pyo3(
    signature = (prefix, lines, count, sender, seq_start, ts, id_prefix, max_size = None),
    text_signature = "(prefix, lines, count, sender, seq_start, ts, id_prefix, max_size=1048576)"
)]
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_envelopes<'py>(
    py: Python<'py>,
    prefix: &Bound<'py, PyAny>,
    lines: &[u8],
    count: usize,
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
    let run = || pubsub::encode_json_lines(lines, count, &meta, &head);
    let batch = if lines.len() >= args::DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)?;
    Ok((PyBytes::new(py, &batch.buf), batch.len()))
}

/// The envelopes of the ``count`` items of ``lines``, for stores that keep them one by one
/// (memory, file). As ``pack_envelopes`` otherwise.
#[pyfunction]
#[pyo3(
    signature = (lines, count, sender, seq_start, ts, id_prefix, max_size = None),
    text_signature = "(lines, count, sender, seq_start, ts, id_prefix, max_size=1048576)"
)]
#[allow(clippy::too_many_arguments)]
pub(super) fn encode_lines<'py>(
    py: Python<'py>,
    lines: &[u8],
    count: usize,
    sender: &str,
    seq_start: u64,
    ts: f64,
    id_prefix: &str,
    max_size: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let max_size = max_size.map(args::max_size_arg).transpose()?.unwrap_or(DEFAULT_MAX_SIZE);
    let meta = BatchMeta { sender, seq_start, ts, id_prefix, max_size };
    let run = || pubsub::encode_json_lines(lines, count, &meta, b"");
    let batch = if lines.len() >= args::DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)?;
    PyList::new(py, batch.iter().map(|env| PyBytes::new(py, env)))
}

/// ``array`` (a JSON array) as JSON lines, for items that hold newlines of their own (a
/// ``msgspec.Raw`` of pretty-printed JSON): each such newline, whitespace between tokens,
/// becomes a space. EnvelopeError for an array that does not split into items shaped like
/// one value each, or a raw newline inside a string.
#[pyfunction]
pub(super) fn json_lines<'py>(py: Python<'py>, array: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let run = || pubsub::lines_of_array(array);
    let lines = if array.len() >= args::DETACH_ABOVE { py.detach(run) } else { run() }.map_err(errors::to_py)?;
    Ok(PyBytes::new(py, &lines))
}

/// How many newlines ``lines`` holds (``bytes.count`` looks at one byte at a time; this
/// counts eight at a time): a publish checks its encoded items with it.
#[pyfunction]
pub(super) fn count_lines(lines: &[u8]) -> usize {
    pubsub::count_newlines(lines)
}

/// The length in bytes of the longest line of ``lines`` (JSON lines), 0 when there is none:
/// whether any item could come near the size limit, without enveloping any.
#[pyfunction]
pub(super) fn longest_line(lines: &[u8]) -> usize {
    pubsub::longest_line(lines)
}
