//! Dataclass emulation for the native value types: argument binding like a
//! generated `__init__`, the `__dataclass_fields__` shape, and the dunder
//! block (`==`, `repr`, pickling, `copy.replace`, `match`), written once in
//! [`dataclass_methods!`] for every type that implements [`Dataclass`].

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple, PyType};

/// A native type that behaves as a dataclass.
pub trait Dataclass: pyo3::PyClass {
    const OWNER: &'static str;
    const FIELDS: &'static [&'static str];

    /// The field values, in field order.
    fn values<'py>(slf: &Bound<'py, Self>) -> PyResult<Vec<Bound<'py, PyAny>>>;

    /// `(name, type, default)` of each field, for `__dataclass_fields__`.
    fn field_specs(py: Python<'_>) -> PyResult<Vec<(&'static str, Bound<'_, PyAny>, Default)>>;

    const FROZEN: bool;

    /// Where the shape is cached (one per type).
    fn shape_cell() -> &'static PyOnceLock<(Py<PyAny>, Py<PyAny>)>;
}

/// A default of a dataclass field.
pub enum Default {
    None,
    Value(Py<PyAny>),
    Factory(Py<PyAny>),
}

/// The `#[pymethods]` block of a [`Dataclass`] type: its own items, then the
/// shared dunders.
macro_rules! dataclass_methods {
    (impl $ty:ident { $($items:tt)* }) => {
        #[pyo3::pymethods]
        impl $ty {
            $($items)*

            fn __richcmp__(
                slf: &pyo3::Bound<'_, Self>,
                other: &pyo3::Bound<'_, pyo3::PyAny>,
                op: pyo3::pyclass::CompareOp,
            ) -> pyo3::PyResult<pyo3::Py<pyo3::PyAny>> {
                $crate::dataclass::richcmp(slf, other, op)
            }

            fn __repr__<'py>(
                slf: &pyo3::Bound<'py, Self>,
            ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::types::PyString>> {
                $crate::dataclass::repr(slf)
            }

            fn __reduce__<'py>(
                slf: &pyo3::Bound<'py, Self>,
            ) -> pyo3::PyResult<(
                pyo3::Bound<'py, pyo3::types::PyType>,
                pyo3::Bound<'py, pyo3::types::PyTuple>,
            )> {
                $crate::dataclass::reduce(slf)
            }

            #[pyo3(signature = (**kwargs))]
            fn __replace__<'py>(
                slf: &pyo3::Bound<'py, Self>,
                kwargs: Option<&pyo3::Bound<'py, pyo3::types::PyDict>>,
            ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                $crate::dataclass::replace(slf, kwargs)
            }

            #[classattr]
            fn __match_args__(
                py: pyo3::Python<'_>,
            ) -> pyo3::PyResult<pyo3::Py<pyo3::types::PyTuple>> {
                Ok(pyo3::types::PyTuple::new(py, <Self as $crate::dataclass::Dataclass>::FIELDS)?
                    .unbind())
            }

            #[classattr]
            fn __dataclass_fields__(py: pyo3::Python<'_>) -> pyo3::PyResult<pyo3::Py<pyo3::PyAny>> {
                Ok($crate::dataclass::shape::<Self>(py)?.0.clone_ref(py))
            }

            #[classattr]
            fn __dataclass_params__(py: pyo3::Python<'_>) -> pyo3::PyResult<pyo3::Py<pyo3::PyAny>> {
                Ok($crate::dataclass::shape::<Self>(py)?.1.clone_ref(py))
            }
        }
    };
}
pub(crate) use dataclass_methods;

/// `==` / `!=` compare the field tuples of two instances of the same type.
pub fn richcmp<T: Dataclass>(
    slf: &Bound<'_, T>,
    other: &Bound<'_, PyAny>,
    op: CompareOp,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let Ok(other) = other.cast::<T>() else {
        return Ok(py.NotImplemented());
    };
    match op {
        CompareOp::Eq | CompareOp::Ne => {
            let mine = PyTuple::new(py, T::values(slf)?)?;
            let theirs = PyTuple::new(py, T::values(other)?)?;
            let same = mine.eq(theirs)?;
            Ok(PyBool::new(py, same == matches!(op, CompareOp::Eq))
                .to_owned()
                .into_any()
                .unbind())
        }
        _ => Ok(py.NotImplemented()),
    }
}

/// `Owner(name=repr(value), ...)`, as a dataclass prints itself.
pub fn repr<'py, T: Dataclass>(slf: &Bound<'py, T>) -> PyResult<Bound<'py, PyString>> {
    let py = slf.py();
    let values = T::values(slf)?;
    let parts = PyList::empty(py);
    parts.append(format!("{}(", T::OWNER))?;
    for (i, (name, value)) in T::FIELDS.iter().zip(&values).enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        parts.append(format!("{sep}{name}="))?;
        parts.append(value.repr()?)?;
    }
    parts.append(")")?;
    Ok(PyString::new(py, "")
        .call_method1("join", (parts,))?
        .cast_into()?)
}

/// `(type, field values)`: pickles as a call of the constructor.
pub fn reduce<'py, T: Dataclass>(
    slf: &Bound<'py, T>,
) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
    Ok((
        slf.as_any().get_type(),
        PyTuple::new(slf.py(), T::values(slf)?)?,
    ))
}

/// `type(obj)(**{every field, with kwargs applied})`.
pub fn replace<'py, T: Dataclass>(
    slf: &Bound<'py, T>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let changes = match kwargs {
        Some(k) => k.copy()?,
        None => PyDict::new(py),
    };
    for name in T::FIELDS {
        if !changes.contains(name)? {
            changes.set_item(name, slf.as_any().getattr(name)?)?;
        }
    }
    slf.as_any().get_type().call((), Some(&changes))
}

/// `(__dataclass_fields__, __dataclass_params__)`, built once per type by
/// `dataclasses.make_dataclass` so the `Field` objects are genuine.
pub fn shape<T: Dataclass>(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    T::shape_cell().get_or_try_init(py, || {
        let dataclasses = py.import("dataclasses")?;
        let field = dataclasses.getattr("field")?;
        let specs = PyList::empty(py);
        for (fname, ftype, default) in T::field_specs(py)? {
            let kwargs = PyDict::new(py);
            match default {
                Default::None => {}
                Default::Value(v) => kwargs.set_item("default", v)?,
                Default::Factory(f) => kwargs.set_item("default_factory", f)?,
            }
            specs.append((fname, ftype, field.call((), Some(&kwargs))?))?;
        }
        let kwargs = PyDict::new(py);
        kwargs.set_item("frozen", T::FROZEN)?;
        let template = dataclasses
            .getattr("make_dataclass")?
            .call((T::OWNER, specs), Some(&kwargs))?;
        Ok((
            template.getattr("__dataclass_fields__")?.unbind(),
            template.getattr("__dataclass_params__")?.unbind(),
        ))
    })
}

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

/// `dataclasses.FrozenInstanceError("cannot assign to field 'x'")`.
pub fn frozen_error(name: &Bound<'_, PyAny>) -> PyErr {
    let py = name.py();
    let message = format!(
        "cannot assign to field {}",
        name.repr().map(|r| r.to_string()).unwrap_or_default()
    );
    match py
        .import("dataclasses")
        .and_then(|m| m.getattr("FrozenInstanceError"))
        .and_then(|cls| cls.call1((message.clone(),)))
    {
        Ok(err) => PyErr::from_value(err),
        Err(_) => PyAttributeError::new_err(message),
    }
}
