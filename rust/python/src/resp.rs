//! RESP packing and the incremental reply parser, exposed as `RespParser` and `RespError`.

use lockstep_core::resp::{self, Arg, Reply, DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::args::{self, DETACH_ABOVE};
use crate::errors;

/// One argument as RESP wants it; borrows `obj` (bytes and str are not copied).
fn to_arg<'a>(obj: &'a Bound<'_, PyAny>, position: usize) -> PyResult<Arg<'a>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Arg::Bytes(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Arg::Bytes(s.to_str()?.as_bytes()));
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Arg::Int(i));
        }
        return obj.extract::<u64>().map(Arg::UInt);
    }
    Err(PyTypeError::new_err(format!(
        "command argument {position} must be bytes, str or int, not {}",
        obj.get_type().name()?
    )))
}

fn items_of<'py>(command: &Bound<'py, PyAny>, index: usize) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if command.is_instance_of::<PyBytes>() || command.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "command {index} must be a sequence of arguments, not a single {}",
            command.get_type().name()?
        )));
    }
    command.try_iter()?.collect()
}

/// Pack one command (`*args`) into RESP.
#[pyfunction]
#[pyo3(signature = (*args))]
fn pack_command<'py>(py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyBytes>> {
    let items: Vec<Bound<'py, PyAny>> = args.iter().collect();
    let converted = items.iter().enumerate().map(|(i, o)| to_arg(o, i)).collect::<PyResult<Vec<_>>>()?;
    let mut out = Vec::new();
    resp::pack_command(&mut out, &converted).map_err(errors::to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// Pack several commands into one buffer (one write for a whole pipeline).
#[pyfunction]
fn pack_commands<'py>(py: Python<'py>, commands: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let objects: Vec<Vec<Bound<'py, PyAny>>> =
        commands.try_iter()?.enumerate().map(|(i, c)| items_of(&c?, i)).collect::<PyResult<_>>()?;
    let converted: Vec<Vec<Arg<'_>>> = objects
        .iter()
        .map(|cmd| cmd.iter().enumerate().map(|(i, o)| to_arg(o, i)).collect::<PyResult<Vec<_>>>())
        .collect::<PyResult<_>>()?;
    let slices: Vec<&[Arg<'_>]> = converted.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    resp::pack_commands(&mut out, &slices).map_err(errors::to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// `PUBLISH channel payload` for each payload, in one buffer.
#[pyfunction]
fn pack_publish<'py>(
    py: Python<'py>,
    channel: &Bound<'py, PyAny>,
    payloads: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let channel = match to_arg(channel, 0) {
        Ok(Arg::Bytes(b)) => b,
        _ => {
            return Err(PyTypeError::new_err(format!(
                "channel must be bytes or str, not {}",
                channel.get_type().name()?
            )))
        }
    };
    let items = args::bytes_items(payloads, "payloads")?;
    let slices: Vec<&[u8]> = items.iter().map(|b| b.as_bytes()).collect();
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let run = || {
        let mut out = Vec::new();
        resp::pack_publish(&mut out, channel, &slices);
        out
    };
    let out = if total >= DETACH_ABOVE { py.detach(run) } else { run() };
    Ok(PyBytes::new(py, &out))
}

/// One command per item: `*prefix, item`, the prefix packed once (XADD, XACK, PUBLISH...).
#[pyfunction]
fn pack_each<'py>(
    py: Python<'py>,
    prefix: &Bound<'py, PyAny>,
    items: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let objects = items_of(prefix, 0)?;
    let converted = objects.iter().enumerate().map(|(i, o)| to_arg(o, i)).collect::<PyResult<Vec<_>>>()?;
    let items = args::bytes_or_str_items(items, "items")?;
    let slices: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    resp::pack_each(&mut out, &converted, &slices).map_err(errors::to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// An error reply from the server (`-ERR ...`), delivered as a value.
#[pyclass(module = "lockstep._core", name = "RespError", frozen, eq, hash)]
#[derive(PartialEq, Eq, Hash)]
pub struct RespError {
    #[pyo3(get)]
    pub(crate) message: String,
}

#[pymethods]
impl RespError {
    #[new]
    fn new(message: String) -> Self {
        RespError { message }
    }

    /// The first word of the message, e.g. "ERR", "WRONGTYPE", "NOSCRIPT".
    #[getter]
    fn code(&self) -> &str {
        self.message.split(' ').next().unwrap_or_default()
    }

    fn __str__(&self) -> &str {
        &self.message
    }

    fn __repr__(&self) -> String {
        format!("RespError({:?})", self.message)
    }
}

fn lossy<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    PyString::new(py, &String::from_utf8_lossy(bytes))
}

pub(crate) fn reply_to_py<'py>(py: Python<'py>, reply: &Reply<'_>, as_key: bool) -> PyResult<Bound<'py, PyAny>> {
    let seq = |items: &[Reply<'_>]| -> PyResult<Vec<Bound<'py, PyAny>>> {
        items.iter().map(|r| reply_to_py(py, r, as_key)).collect()
    };
    Ok(match reply {
        Reply::Simple(s) => lossy(py, s).into_any(),
        Reply::Error(s) => Bound::new(py, RespError { message: String::from_utf8_lossy(s).into_owned() })?.into_any(),
        Reply::Integer(i) => i.into_bound_py_any(py)?,
        Reply::Bulk(b) => PyBytes::new(py, b).into_any(),
        Reply::Nil => py.None().into_bound(py),
        Reply::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        Reply::Double(f) => PyFloat::new(py, *f).into_any(),
        // Map keys must be hashable: nested aggregates inside a key become tuples.
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) if as_key => {
            PyTuple::new(py, seq(items)?)?.into_any()
        }
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => PyList::new(py, seq(items)?)?.into_any(),
        Reply::Map(pairs) if as_key => {
            let tuples = pairs
                .iter()
                .map(|(k, v)| PyTuple::new(py, [reply_to_py(py, k, true)?, reply_to_py(py, v, true)?]))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, tuples)?.into_any()
        }
        Reply::Map(pairs) => {
            let dict = PyDict::new(py);
            for (k, v) in pairs {
                dict.set_item(reply_to_py(py, k, true)?, reply_to_py(py, v, false)?)?;
            }
            dict.into_any()
        }
    })
}

/// Incremental RESP reply parser. `feed` bytes as they arrive; `drain` returns every
/// complete reply. Malformed input raises ProtocolError and the parser stays failed.
#[pyclass(module = "lockstep._core", name = "RespParser")]
pub struct RespParser {
    inner: resp::RespParser,
}

#[pymethods]
impl RespParser {
    #[new]
    #[pyo3(
        signature = (max_bulk = DEFAULT_MAX_BULK, max_depth = DEFAULT_MAX_DEPTH),
        text_signature = "(max_bulk=536870912, max_depth=32)"
    )]
    fn new(max_bulk: usize, max_depth: usize) -> PyResult<Self> {
        Ok(RespParser { inner: resp::RespParser::new(max_bulk, max_depth).map_err(errors::to_py)? })
    }

    fn feed(&mut self, data: &[u8]) -> PyResult<()> {
        self.inner.feed(data).map_err(errors::to_py)
    }

    /// Every complete reply, in order. When the stream goes bad after some good replies,
    /// those are returned first and the ProtocolError is raised by the next call.
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        loop {
            match self.inner.next_reply() {
                Ok(Some(reply)) => out.append(reply_to_py(py, &reply, false)?)?,
                Ok(None) => return Ok(out),
                Err(_) if !out.is_empty() => return Ok(out),
                Err(err) => return Err(errors::to_py(err)),
            }
        }
    }

    /// Bytes fed but not yet returned as replies.
    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEFAULT_MAX_BULK", DEFAULT_MAX_BULK)?;
    m.add("DEFAULT_MAX_DEPTH", DEFAULT_MAX_DEPTH)?;
    m.add_function(wrap_pyfunction!(pack_command, m)?)?;
    m.add_function(wrap_pyfunction!(pack_commands, m)?)?;
    m.add_function(wrap_pyfunction!(pack_publish, m)?)?;
    m.add_function(wrap_pyfunction!(pack_each, m)?)?;
    m.add_class::<RespError>()?;
    m.add_class::<RespParser>()?;
    Ok(())
}
