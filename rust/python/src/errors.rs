//! The one map from core errors to the exception classes of `lockstep.errors`.
//! The classes are defined once, in Python; this file only looks them up.

use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

fn class_name(err: &CoreError) -> &'static str {
    match err {
        CoreError::InvalidName { .. } => "InvalidNameError",
        CoreError::Envelope { .. } => "EnvelopeError",
        CoreError::MessageTooLarge { .. } => "MessageTooLargeError",
        CoreError::Protocol { .. } => "ProtocolError",
        CoreError::UnknownCodec { .. } => "ConfigError",
        CoreError::InvalidArgument { .. } => "InvalidInputError",
        CoreError::Config { .. } => "ConfigError",
        CoreError::FenceRegression { .. } => "DataLossDetected",
    }
}

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The exception instance for a core error, with the offending numbers as attributes
/// (`size`/`limit` on MessageTooLargeError, `offset` on ProtocolError, `resource`/`fence`/
/// `highest` on DataLossDetected from a fence regression).
pub fn to_py_instance<'py>(py: Python<'py>, err: &CoreError) -> PyResult<Bound<'py, PyAny>> {
    let module = ERRORS_MODULE.get_or_try_init(py, || py.import("lockstep.errors").map(Bound::unbind))?;
    let instance = module.bind(py).getattr(class_name(err))?.call1((err.to_string(),))?;
    match err {
        CoreError::MessageTooLarge { size, limit } => {
            instance.setattr("size", size)?;
            instance.setattr("limit", limit)?;
        }
        CoreError::Protocol { offset, .. } => instance.setattr("offset", offset)?,
        CoreError::FenceRegression { resource, fence, highest } => {
            instance.setattr("resource", resource)?;
            instance.setattr("fence", fence)?;
            instance.setattr("highest", highest)?;
        }
        _ => {}
    }
    Ok(instance)
}

/// Build the Python exception for a core error.
pub fn to_py(err: CoreError) -> PyErr {
    Python::attach(|py| match to_py_instance(py, &err) {
        Ok(instance) => PyErr::from_value(instance),
        // lockstep.errors failed to import: still raise, never lose the message.
        Err(_) => pyo3::exceptions::PyValueError::new_err(err.to_string()),
    })
}
