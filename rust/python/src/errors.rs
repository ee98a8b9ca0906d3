//! The one map from core errors to the exception classes of `lockstep.errors`.
//! The classes are defined once, in Python; this file only looks them up.

use lockstep_core::CoreError;
use pyo3::prelude::*;
use pyo3::types::PyAnyMethods;

fn class_name(err: &CoreError) -> &'static str {
    match err {
        CoreError::InvalidName { .. } => "InvalidNameError",
    }
}

/// Build the Python exception for a core error.
pub fn to_py(err: CoreError) -> PyErr {
    Python::attach(|py| {
        let msg = err.to_string();
        match py.import("lockstep.errors").and_then(|m| m.getattr(class_name(&err))) {
            Ok(cls) => match cls.call1((msg.clone(),)) {
                Ok(inst) => PyErr::from_value(inst),
                Err(e) => e,
            },
            Err(_) => pyo3::exceptions::PyValueError::new_err(msg),
        }
    })
}
