//! Python-semantics conversions of argument values, with the argument named
//! on failure. Each mirrors one expression of the legacy router.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

pub use crate::errors::{Conv, Fail};

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "object".to_owned())
}

pub fn guard<'py, T>(
    name: &'static str,
    value: &Bound<'py, PyAny>,
    result: PyResult<T>,
) -> Conv<T> {
    result.map_err(|err| Fail::invalid(name, value, &err))
}

/// `value > 0.0`.
pub fn is_positive(name: &'static str, value: &Bound<'_, PyAny>) -> Conv<bool> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Ok(f.value() > 0.0);
    }
    if value.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(i > 0);
        }
    }
    guard(name, value, value.gt(0.0))
}

/// `float(value)`: numbers and numeric strings.
pub fn to_float(name: &'static str, value: &Bound<'_, PyAny>) -> Conv<f64> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Ok(f.value());
    }
    let py = value.py();
    let converted = py.get_type::<PyFloat>().call1((value,));
    let converted = guard(name, value, converted)?;
    guard(name, value, converted.extract::<f64>())
}

/// A finite real number (int or float, bools included) as a float; anything
/// else is a TypeError (not a number) or a ValueError (not finite) naming the
/// argument.
pub fn real(method: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        if f.value().is_finite() {
            return Ok(f.value());
        }
    }
    if value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>() {
        let v = value.extract::<f64>().map_err(|_| {
            PyValueError::new_err(format!(
                "{method}() got an invalid {name}: int out of range"
            ))
        })?;
        if v.is_finite() {
            return Ok(v);
        }
        let shown = PyFloat::new(value.py(), v)
            .str()
            .map_or_else(|_| v.to_string(), |s| s.to_string());
        return Err(PyValueError::new_err(format!(
            "{method}() got an invalid {name}: {shown} is not finite"
        )));
    }
    Err(PyTypeError::new_err(format!(
        "{method}() got an invalid {name}: {}",
        type_name(value)
    )))
}

/// `value or ""` is falsy.
pub fn is_blank(name: &'static str, value: &Bound<'_, PyAny>) -> Conv<bool> {
    if let Ok(s) = value.cast_exact::<PyString>() {
        return Ok(s.is_empty().unwrap_or(false));
    }
    if value.is_none() {
        return Ok(true);
    }
    guard(name, value, value.is_truthy()).map(|t| !t)
}

/// `str(value).upper()`.
pub fn upper<'py>(name: &'static str, value: &Bound<'py, PyAny>) -> Conv<Bound<'py, PyString>> {
    let py = value.py();
    // A literal side is interned: found by identity.
    for side in [pyo3::intern!(py, "LONG"), pyo3::intern!(py, "SHORT")] {
        if value.is(side) {
            return Ok(side.clone());
        }
    }
    if let Ok(s) = value.cast_exact::<PyString>() {
        if let Ok(text) = s.to_str() {
            if text.is_ascii() {
                if !text.bytes().any(|b| b.is_ascii_lowercase()) {
                    return Ok(s.clone());
                }
                return Ok(PyString::new(value.py(), &text.to_ascii_uppercase()));
            }
        }
    }
    let text = guard(name, value, value.str())?;
    let up = guard(
        name,
        value,
        text.call_method0(pyo3::intern!(value.py(), "upper")),
    )?;
    guard(name, value, up.cast_into::<PyString>().map_err(PyErr::from))
}

/// `str(value).upper() == expected` for an upper-case ASCII `expected`.
pub fn upper_is(name: &'static str, value: &Bound<'_, PyAny>, expected: &str) -> Conv<bool> {
    if let Ok(s) = value.cast_exact::<PyString>() {
        if let Ok(text) = s.to_str() {
            if text.is_ascii() {
                return Ok(text.eq_ignore_ascii_case(expected));
            }
        }
    }
    let up = upper(name, value)?;
    Ok(up.to_str().is_ok_and(|t| t == expected))
}

/// `f"{value}"`.
pub fn text<'py>(name: &'static str, value: &Bound<'py, PyAny>) -> Conv<Bound<'py, PyString>> {
    if let Ok(s) = value.cast_exact::<PyString>() {
        return Ok(s.clone());
    }
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return guard(name, value, f.str());
    }
    let formatted = guard(name, value, builtin_format(value.py()))?.call1((value,));
    let formatted = guard(name, value, formatted)?;
    guard(
        name,
        value,
        formatted.cast_into::<PyString>().map_err(PyErr::from),
    )
}

static FORMAT: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// The builtin `format`.
fn builtin_format(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    FORMAT.import(py, "builtins", "format")
}

/// `f"{value}"` for a value already in the registry: never fails.
pub fn label<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    match text("trade_id", value) {
        Ok(s) => Ok(s),
        Err(Fail::Fatal(err)) => Err(err),
        Err(Fail::Invalid { type_name, .. }) => {
            Ok(PyString::new(value.py(), &format!("<{type_name}>")))
        }
    }
}

/// `hash(value)` succeeds.
pub fn hashable(name: &'static str, value: &Bound<'_, PyAny>) -> Conv<()> {
    if value.is_exact_instance_of::<PyString>() {
        return Ok(());
    }
    guard(name, value, value.hash()).map(|_| ())
}

/// `prefix + middle + suffix` as a Python str (handles any text in `middle`).
pub fn concat<'py>(
    prefix: &str,
    middle: &Bound<'py, PyString>,
    suffix: &str,
) -> PyResult<Bound<'py, PyString>> {
    let py = middle.py();
    if let Ok(m) = middle.to_str() {
        return Ok(PyString::new(py, &format!("{prefix}{m}{suffix}")));
    }
    let joined = PyString::new(py, prefix).add(middle)?.add(suffix)?;
    Ok(joined.cast_into::<PyString>()?)
}

/// A str argument or field, or a TypeError naming it.
pub fn string<'py>(
    owner: &str,
    name: &str,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyString>> {
    value.cast::<PyString>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "{owner}.{name} must be str, got {}",
            type_name(value)
        ))
    })
}

/// A bool field, or a TypeError naming it.
pub fn boolean(owner: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
        PyTypeError::new_err(format!(
            "{owner}.{name} must be bool, got {}",
            type_name(value)
        ))
    })
}

/// A number field (int or float, not bool) as a float.
pub fn number(owner: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Ok(f.value());
    }
    let numeric = !value.is_instance_of::<PyBool>()
        && (value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>());
    if !numeric {
        return Err(PyTypeError::new_err(format!(
            "{owner}.{name} must be a number, got {}",
            type_name(value)
        )));
    }
    value
        .extract::<f64>()
        .map_err(|_| PyValueError::new_err(format!("{owner}.{name} is out of range for a float")))
}

/// An int field (not bool) that fits in 64 bits.
pub fn int64(owner: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{owner}.{name} must be an int, got {}",
            type_name(value)
        )));
    }
    value
        .extract::<i64>()
        .map_err(|_| PyValueError::new_err(format!("{owner}.{name} must fit in 64 bits")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_py<F: for<'py> FnOnce(Python<'py>)>(f: F) {
        Python::initialize();
        Python::attach(f);
    }

    fn eval<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyAny> {
        let code = std::ffi::CString::new(code).unwrap_or_default();
        py.eval(&code, None, None)
            .unwrap_or_else(|_| py.None().into_bound(py))
    }

    fn invalid_name<T>(result: Conv<T>) -> Option<&'static str> {
        match result {
            Err(Fail::Invalid { name, .. }) => Some(name),
            _ => None,
        }
    }

    #[test]
    fn to_float_follows_python_float() {
        with_py(|py| {
            assert!(matches!(to_float("x", &eval(py, "65000")), Ok(v) if v == 65000.0));
            assert!(matches!(to_float("x", &eval(py, "' 3 '")), Ok(v) if v == 3.0));
            assert!(matches!(to_float("x", &eval(py, "b'2.5'")), Ok(v) if v == 2.5));
            assert_eq!(
                invalid_name(to_float("spread", &eval(py, "None"))),
                Some("spread")
            );
            assert_eq!(
                invalid_name(to_float("spread", &eval(py, "'abc'"))),
                Some("spread")
            );
            assert_eq!(
                invalid_name(to_float("spread", &eval(py, "10**400"))),
                Some("spread")
            );
        });
    }

    #[test]
    fn is_positive_compares_like_python() {
        with_py(|py| {
            assert!(matches!(is_positive("r", &eval(py, "1e-300")), Ok(true)));
            assert!(matches!(
                is_positive("r", &eval(py, "float('nan')")),
                Ok(false)
            ));
            assert!(matches!(is_positive("r", &eval(py, "10**400")), Ok(true)));
            assert!(matches!(is_positive("r", &eval(py, "-0.0")), Ok(false)));
            assert_eq!(
                invalid_name(is_positive("r", &eval(py, "'100'"))),
                Some("r")
            );
        });
    }

    #[test]
    fn upper_is_matches_python_upper() {
        with_py(|py| {
            assert!(matches!(
                upper_is("s", &eval(py, "'long'"), "LONG"),
                Ok(true)
            ));
            // Python upper-cases the long s to an ASCII S.
            assert!(matches!(
                upper_is("s", &eval(py, "'\\u017fell'"), "SELL"),
                Ok(true)
            ));
            assert!(matches!(
                upper_is("s", &eval(py, "'\\ud800'"), "SELL"),
                Ok(false)
            ));
            assert!(matches!(upper_is("s", &eval(py, "None"), "NONE"), Ok(true)));
        });
    }

    #[test]
    fn text_is_python_format() {
        with_py(|py| {
            let shown = |code: &str| match text("v", &eval(py, code)) {
                Ok(s) => s.to_string(),
                Err(_) => "<error>".to_owned(),
            };
            assert_eq!(shown("1e-05"), "1e-05");
            assert_eq!(shown("3"), "3");
            assert_eq!(shown("5.0"), "5.0");
            assert_eq!(shown("float('nan')"), "nan");
            assert_eq!(shown("None"), "None");
            assert_eq!(shown("int"), "<class 'int'>");
        });
    }

    #[test]
    fn blank_and_hashable() {
        with_py(|py| {
            assert!(matches!(is_blank("a", &eval(py, "''")), Ok(true)));
            assert!(matches!(is_blank("a", &eval(py, "0")), Ok(true)));
            assert!(matches!(is_blank("a", &eval(py, "'X'")), Ok(false)));
            assert!(hashable("t", &eval(py, "('a', 1)")).is_ok());
            assert_eq!(invalid_name(hashable("t", &eval(py, "['a']"))), Some("t"));
        });
    }
}
