//! Clock readings. A reading must be a finite number: a NaN or infinite
//! time would give a deadline that never expires (an exit never escalates).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt};

use crate::convert::type_name;
use crate::errors::is_fatal;

/// `clock()` as a finite float, or a ValueError naming the clock and `method`
/// (chained to what the clock raised). An interrupt or a MemoryError propagates.
pub fn read(clock: &Bound<'_, PyAny>, method: &str) -> PyResult<f64> {
    let py = clock.py();
    let reading = match clock.call0() {
        Ok(reading) => reading,
        Err(err) if is_fatal(py, &err) => return Err(err),
        Err(err) => {
            let kind = err
                .get_type(py)
                .name()
                .map_or_else(|_| "an error".to_owned(), |n| n.to_string());
            let refused = PyValueError::new_err(format!(
                "{method}() got no time from the clock: it raised {kind}"
            ));
            refused.set_cause(py, Some(err));
            return Err(refused);
        }
    };
    if let Ok(f) = reading.cast_exact::<PyFloat>() {
        if f.value().is_finite() {
            return Ok(f.value());
        }
    }
    let invalid = |what: String| {
        PyValueError::new_err(format!("{method}() got an invalid clock reading: {what}"))
    };
    if reading.is_instance_of::<PyFloat>() || reading.is_instance_of::<PyInt>() {
        let value: f64 = reading
            .extract()
            .map_err(|_| invalid("an int out of float range".to_owned()))?;
        if value.is_finite() {
            return Ok(value);
        }
        return Err(invalid(float_text(py, value)));
    }
    Err(invalid(format!(
        "{}, expected a finite number",
        type_name(&reading)
    )))
}

/// A clock must be callable.
pub fn check(clock: &Bound<'_, PyAny>) -> PyResult<()> {
    if clock.is_callable() {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "ExecutionRouter() got an invalid clock: {}",
            type_name(clock)
        )))
    }
}

/// `str(value)` of a float, as Python prints it (`nan`, `inf`, `1e+300`).
pub fn float_text(py: Python<'_>, value: f64) -> String {
    PyFloat::new(py, value)
        .str()
        .map_or_else(|_| value.to_string(), |s| s.to_string())
}
