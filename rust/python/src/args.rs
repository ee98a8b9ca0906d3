//! Argument conversion shared by the glue functions: codec names, unsigned integers,
//! and sequences of `bytes` borrowed without copying.

use lockstep_core::envelope::Codec;
use lockstep_core::CoreError;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::errors;

/// Batches at least this large (total bytes) are processed with the GIL released.
pub const DETACH_ABOVE: usize = 256 * 1024;

pub fn codec(name: &str) -> PyResult<Codec> {
    Codec::from_name(name).map_err(errors::to_py)
}

/// A non-negative integer that fits in 64 bits; an out-of-range int is `on_range(value)`.
pub fn u64_arg(obj: &Bound<'_, PyAny>, on_range: impl FnOnce(String) -> CoreError) -> PyResult<u64> {
    match obj.extract::<u64>() {
        Ok(v) => Ok(v),
        Err(_) if obj.is_instance_of::<PyInt>() => Err(errors::to_py(on_range(obj.to_string()))),
        Err(e) => Err(e),
    }
}

pub fn max_size_arg(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let v = u64_arg(obj, |got| CoreError::InvalidArgument {
        reason: format!("max_size must be 0 or more bytes, got {got}"),
    })?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

/// Every item of `seq` as `bytes` (kept alive by the returned vector); the error names
/// the first item that is not bytes.
pub fn bytes_items<'py>(seq: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    if seq.is_instance_of::<PyBytes>() || seq.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a sequence of bytes, not a single {}",
            seq.get_type().name()?
        )));
    }
    let mut out = Vec::with_capacity(seq.len().unwrap_or(0));
    for (i, item) in seq.try_iter()?.enumerate() {
        let item = item?;
        match item.cast_into::<PyBytes>() {
            Ok(b) => out.push(b),
            Err(e) => {
                let got = e.into_inner().get_type().name()?;
                return Err(PyTypeError::new_err(format!("{what}[{i}] must be bytes, not {got}")));
            }
        }
    }
    Ok(out)
}

/// Every item of `seq` as bytes: `bytes` copied, `str` as UTF-8 (ids and payloads alike).
pub fn bytes_or_str_items(seq: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Vec<u8>>> {
    if seq.is_instance_of::<PyBytes>() || seq.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a sequence of bytes or str, not a single {}",
            seq.get_type().name()?
        )));
    }
    let mut out = Vec::with_capacity(seq.len().unwrap_or(0));
    for (i, item) in seq.try_iter()?.enumerate() {
        let item = item?;
        if let Ok(b) = item.cast::<PyBytes>() {
            out.push(b.as_bytes().to_vec());
        } else if let Ok(s) = item.cast::<PyString>() {
            out.push(s.to_str()?.as_bytes().to_vec());
        } else {
            return Err(PyTypeError::new_err(format!(
                "{what}[{i}] must be bytes or str, not {}",
                item.get_type().name()?
            )));
        }
    }
    Ok(out)
}
