//! `Fail`: why an argument could not be used, and how it surfaces.

use pyo3::exceptions::{PyArithmeticError, PyException, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::convert::type_name;

/// Why an argument could not be used.
pub enum Fail {
    /// A value the router cannot use: planning falls back to MARKET, other
    /// methods raise TypeError/ValueError naming `name`.
    Invalid {
        name: &'static str,
        type_name: String,
        value_error: bool,
    },
    /// A `BaseException` that is not an `Exception` (e.g. KeyboardInterrupt),
    /// or a `MemoryError`: it propagates unchanged.
    Fatal(PyErr),
}

impl Fail {
    pub fn invalid(name: &'static str, value: &Bound<'_, PyAny>, cause: &PyErr) -> Self {
        let py = value.py();
        // A MemoryError is the interpreter's, not the argument's.
        if is_fatal(py, cause) {
            return Fail::Fatal(cause.clone_ref(py));
        }
        Fail::Invalid {
            name,
            type_name: type_name(value),
            value_error: cause.is_instance_of::<PyValueError>(py)
                || cause.is_instance_of::<PyArithmeticError>(py),
        }
    }

    /// The exception a non-planning method raises.
    pub fn into_err(self, method: &str) -> PyErr {
        match self {
            Fail::Fatal(err) => err,
            Fail::Invalid {
                name,
                type_name,
                value_error,
            } => {
                let msg = format!("{method}() got an invalid {name}: {type_name}");
                if value_error {
                    PyValueError::new_err(msg)
                } else {
                    PyTypeError::new_err(msg)
                }
            }
        }
    }
}

impl From<PyErr> for Fail {
    fn from(err: PyErr) -> Self {
        Fail::Fatal(err)
    }
}

pub type Conv<T> = Result<T, Fail>;

/// A `BaseException` that is not an `Exception`, or a `MemoryError`: the
/// interpreter's, never turned into another error.
pub fn is_fatal(py: Python<'_>, err: &PyErr) -> bool {
    !err.is_instance_of::<PyException>(py) || err.is_instance_of::<PyMemoryError>(py)
}

static JOURNAL_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `exec_router.errors.JournalError(msg)` (a RuntimeError if that cannot be imported).
pub fn journal_error(py: Python<'_>, msg: &str) -> PyErr {
    match JOURNAL_ERROR.import(py, "exec_router.errors", "JournalError") {
        Ok(cls) => PyErr::from_type(cls.clone(), msg.to_owned()),
        Err(err) => err,
    }
}
