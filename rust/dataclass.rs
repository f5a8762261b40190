//! Dataclass compatibility for native value types: argument binding like a
//! generated `__init__`, the `__dataclass_fields__` shape, and `repr`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// Bind `args`/`kwargs` to `names` as a dataclass `__init__` would: the
/// first `required` names have no default.
pub fn bind<'py>(
    owner: &str,
    names: &[&str],
    required: usize,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<Option<Bound<'py, PyAny>>>> {
    if args.len() > names.len() {
        return Err(PyTypeError::new_err(format!(
            "{owner}.__init__() takes {} positional arguments but {} were given",
            names.len() + 1,
            args.len() + 1
        )));
    }
    let mut bound: Vec<Option<Bound<'py, PyAny>>> = args.iter().map(Some).collect();
    bound.resize(names.len(), None);
    if let Some(kwargs) = kwargs {
        for (key, value) in kwargs.iter() {
            let key = key.cast_into::<PyString>()?;
            let name = key.to_str()?;
            let Some(i) = names.iter().position(|n| *n == name) else {
                return Err(PyTypeError::new_err(format!(
                    "{owner}.__init__() got an unexpected keyword argument '{name}'"
                )));
            };
            match bound.get_mut(i) {
                Some(slot @ None) => *slot = Some(value),
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "{owner}.__init__() got multiple values for argument '{name}'"
                    )))
                }
            }
        }
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&bound)
        .take(required)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(PyTypeError::new_err(format!(
            "{owner}.__init__() missing {} required argument(s): {}",
            missing.len(),
            missing.join(", ")
        )));
    }
    Ok(bound)
}

/// A default of a dataclass field.
pub enum Default {
    None,
    Value(Py<PyAny>),
    Factory(Py<PyAny>),
}

/// `(__dataclass_fields__, __dataclass_params__)` of a dataclass with these
/// fields, built by `dataclasses.make_dataclass` so the `Field` objects are
/// genuine.
pub fn shape<'py>(
    py: Python<'py>,
    name: &str,
    fields: Vec<(&str, Bound<'py, PyAny>, Default)>,
    frozen: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let dataclasses = py.import("dataclasses")?;
    let field = dataclasses.getattr("field")?;
    let specs = PyList::empty(py);
    for (fname, ftype, default) in fields {
        let kwargs = PyDict::new(py);
        match default {
            Default::None => {}
            Default::Value(v) => kwargs.set_item("default", v)?,
            Default::Factory(f) => kwargs.set_item("default_factory", f)?,
        }
        let f = field.call((), Some(&kwargs))?;
        specs.append((fname, ftype, f))?;
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("frozen", frozen)?;
    let template = dataclasses
        .getattr("make_dataclass")?
        .call((name, specs), Some(&kwargs))?;
    Ok((
        template.getattr("__dataclass_fields__")?,
        template.getattr("__dataclass_params__")?,
    ))
}

/// `Owner(name=repr(value), ...)`, as a dataclass prints itself.
pub fn repr<'py>(
    py: Python<'py>,
    owner: &str,
    names: &[&str],
    values: &[Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyString>> {
    let parts = PyList::empty(py);
    parts.append(format!("{owner}("))?;
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        parts.append(format!("{sep}{name}="))?;
        parts.append(value.repr()?)?;
    }
    parts.append(")")?;
    Ok(PyString::new(py, "")
        .call_method1("join", (parts,))?
        .cast_into()?)
}
