//! `ExecutionPlan`: how one intent reaches the venue. A frozen native type
//! that behaves as a frozen dataclass.

use std::sync::Mutex;

use pyo3::exceptions::PyAttributeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString, PyTuple, PyType};
use pyo3::{intern, PyTraverseError};

use crate::convert::{boolean, number, string, type_name};
use crate::dataclass::{self, Default};
use crate::sync::lock;

const OWNER: &str = "ExecutionPlan";
pub const FIELDS: [&str; 9] = [
    "order_type",
    "limit_price",
    "post_only",
    "ttl_s",
    "is_maker",
    "action",
    "reason",
    "suppress",
    "metadata",
];

#[pyclass(module = "exec_router._core", name = "ExecutionPlan", frozen, weakref)]
pub struct ExecutionPlan {
    order_type: Py<PyString>,
    pub limit_price: f64,
    pub post_only: bool,
    pub ttl_s: f64,
    pub is_maker: bool,
    action: Py<PyString>,
    reason: Py<PyString>,
    pub suppress: bool,
    /// Created on first access when the plan was built without one.
    metadata: Mutex<Option<Py<PyDict>>>,
}

/// The fields of a plan, for building one from Rust.
pub struct Spec<'py> {
    pub limit: Option<(f64, bool, f64)>,
    pub action: &'static str,
    pub reason: Bound<'py, PyString>,
    pub suppress: bool,
    pub metadata: Option<Bound<'py, PyDict>>,
}

impl<'py> Spec<'py> {
    /// A MARKET plan.
    pub fn market(action: &'static str, reason: Bound<'py, PyString>) -> Self {
        Self {
            limit: None,
            action,
            reason,
            suppress: false,
            metadata: None,
        }
    }

    /// A maker LIMIT plan: `(price, post_only, ttl_s)`.
    pub fn limit(
        action: &'static str,
        reason: Bound<'py, PyString>,
        price: f64,
        post_only: bool,
        ttl_s: f64,
    ) -> Self {
        Self {
            limit: Some((price, post_only, ttl_s)),
            ..Self::market(action, reason)
        }
    }

    pub fn with_metadata(mut self, metadata: Bound<'py, PyDict>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    pub fn suppressed(mut self) -> Self {
        self.suppress = true;
        self
    }

    pub fn build(self, py: Python<'py>) -> PyResult<Bound<'py, ExecutionPlan>> {
        let (order_type, (limit_price, post_only, ttl_s)) = match self.limit {
            Some(l) => (intern!(py, "LIMIT"), l),
            None => (intern!(py, "MARKET"), (0.0, false, 0.0)),
        };
        let action = if self.action == "EXIT" {
            intern!(py, "EXIT")
        } else {
            intern!(py, "ENTER")
        };
        let plan = ExecutionPlan {
            order_type: order_type.clone().unbind(),
            limit_price,
            post_only,
            ttl_s,
            is_maker: self.limit.is_some(),
            action: action.clone().unbind(),
            reason: self.reason.unbind(),
            suppress: self.suppress,
            metadata: Mutex::new(self.metadata.map(Bound::unbind)),
        };
        Bound::new(py, plan)
    }
}

impl ExecutionPlan {
    /// MARKET, or LIMIT at a positive price.
    pub fn is_sane(&self, py: Python<'_>) -> bool {
        match self.order_type.bind(py).to_str() {
            Ok("MARKET") => true,
            Ok("LIMIT") => self.limit_price > 0.0,
            _ => false,
        }
    }

    pub fn action_is(&self, py: Python<'_>, expected: &str) -> bool {
        self.action.bind(py).to_str().is_ok_and(|a| a == expected)
    }

    pub fn action_str<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.action.bind(py).clone()
    }

    pub fn metadata_dict<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        if let Some(d) = lock(&self.metadata).as_ref() {
            return d.bind(py).clone();
        }
        // Allocate outside the lock: an allocation may run the GC.
        let fresh = PyDict::new(py);
        let mut slot = lock(&self.metadata);
        match slot.as_ref() {
            Some(d) => d.bind(py).clone(),
            None => {
                *slot = Some(fresh.clone().unbind());
                fresh
            }
        }
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Ok(vec![
            self.order_type.bind(py).clone().into_any(),
            PyFloat::new(py, self.limit_price).into_any(),
            PyBool::new(py, self.post_only).to_owned().into_any(),
            PyFloat::new(py, self.ttl_s).into_any(),
            PyBool::new(py, self.is_maker).to_owned().into_any(),
            self.action.bind(py).clone().into_any(),
            self.reason.bind(py).clone().into_any(),
            PyBool::new(py, self.suppress).to_owned().into_any(),
            self.metadata_dict(py).into_any(),
        ])
    }

    fn as_tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.values(py)?)
    }
}

#[pymethods]
impl ExecutionPlan {
    #[new]
    #[pyo3(
        signature = (*args, **kwargs),
        text_signature = "(order_type='MARKET', limit_price=0.0, post_only=False, ttl_s=0.0, \
                          is_maker=False, action='ENTER', reason='taker_default', suppress=False, \
                          metadata=<factory>)"
    )]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let py = args.py();
        let bound = dataclass::bind(OWNER, &FIELDS, 0, args, kwargs)?;
        let arg = |i: usize| bound.get(i).and_then(Option::as_ref);
        let text = |i: usize, default: &Bound<'_, PyString>| -> PyResult<Py<PyString>> {
            match arg(i) {
                Some(v) => Ok(string(OWNER, FIELDS.get(i).copied().unwrap_or("?"), v)?.unbind()),
                None => Ok(default.clone().unbind()),
            }
        };
        let flag = |i: usize| -> PyResult<bool> {
            arg(i).map_or(Ok(false), |v| {
                boolean(OWNER, FIELDS.get(i).copied().unwrap_or("?"), v)
            })
        };
        let num = |i: usize| -> PyResult<f64> {
            arg(i).map_or(Ok(0.0), |v| {
                number(OWNER, FIELDS.get(i).copied().unwrap_or("?"), v)
            })
        };
        let metadata = || -> PyResult<Option<Py<PyDict>>> {
            let Some(v) = arg(8) else { return Ok(None) };
            let dict = v.cast::<PyDict>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "ExecutionPlan.metadata must be dict, got {}",
                    type_name(v)
                ))
            })?;
            Ok(Some(dict.clone().unbind()))
        };
        // Checked in field order, so the first bad field is the one named.
        Ok(Self {
            order_type: text(0, intern!(py, "MARKET"))?,
            limit_price: num(1)?,
            post_only: flag(2)?,
            ttl_s: num(3)?,
            is_maker: flag(4)?,
            action: text(5, intern!(py, "ENTER"))?,
            reason: text(6, intern!(py, "taker_default"))?,
            suppress: flag(7)?,
            metadata: Mutex::new(metadata()?),
        })
    }

    #[getter]
    fn order_type(&self, py: Python<'_>) -> Py<PyString> {
        self.order_type.clone_ref(py)
    }
    #[getter]
    fn limit_price(&self) -> f64 {
        self.limit_price
    }
    #[getter]
    fn post_only(&self) -> bool {
        self.post_only
    }
    #[getter]
    fn ttl_s(&self) -> f64 {
        self.ttl_s
    }
    #[getter]
    fn is_maker(&self) -> bool {
        self.is_maker
    }
    #[getter]
    fn action(&self, py: Python<'_>) -> Py<PyString> {
        self.action.clone_ref(py)
    }
    #[getter]
    fn reason(&self, py: Python<'_>) -> Py<PyString> {
        self.reason.clone_ref(py)
    }
    #[getter]
    fn suppress(&self) -> bool {
        self.suppress
    }
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        self.metadata_dict(py)
    }

    /// A plan the venue can take: MARKET, or LIMIT at a positive price.
    fn sane(&self, py: Python<'_>) -> bool {
        self.is_sane(py)
    }

    fn __setattr__(&self, name: &Bound<'_, PyAny>, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(frozen_error(name))
    }

    fn __delattr__(&self, name: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(frozen_error(name))
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<ExecutionPlan>() else {
            return Ok(py.NotImplemented());
        };
        match op {
            CompareOp::Eq | CompareOp::Ne => {
                let same = slf.get().as_tuple(py)?.eq(other.get().as_tuple(py)?)?;
                Ok(PyBool::new(py, same == matches!(op, CompareOp::Eq))
                    .to_owned()
                    .into_any()
                    .unbind())
            }
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.as_tuple(py)?.hash()
    }

    fn __repr__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        dataclass::repr(py, OWNER, &FIELDS, &self.values(py)?)
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        Ok((slf.get_type(), slf.get().as_tuple(py)?))
    }

    #[pyo3(signature = (**kwargs))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace(slf.as_any(), &FIELDS, kwargs)
    }

    #[classattr]
    fn __match_args__(py: Python<'_>) -> PyResult<Py<PyTuple>> {
        Ok(PyTuple::new(py, FIELDS)?.unbind())
    }

    #[classattr]
    fn __dataclass_fields__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(cached_plan_shape(py)?.0.clone_ref(py))
    }

    #[classattr]
    fn __dataclass_params__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(cached_plan_shape(py)?.1.clone_ref(py))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.order_type)?;
        visit.call(&self.action)?;
        visit.call(&self.reason)?;
        if let Ok(metadata) = self.metadata.try_lock() {
            visit.call(&*metadata)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = lock(&self.metadata).take();
        drop(taken);
    }
}

static PLAN_SHAPE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// The dataclass shape, built once for both class attributes.
fn cached_plan_shape(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    PLAN_SHAPE.get_or_try_init(py, || {
        let (fields, params) = plan_shape(py)?;
        Ok((fields.unbind(), params.unbind()))
    })
}

fn plan_shape(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    let str_t = py.get_type::<PyString>().into_any();
    let float_t = py.get_type::<PyFloat>().into_any();
    let bool_t = py.get_type::<PyBool>().into_any();
    let dict_t = py.get_type::<PyDict>().into_any();
    let value = |v: Bound<'_, PyAny>| Default::Value(v.unbind());
    dataclass::shape(
        py,
        OWNER,
        vec![
            (
                "order_type",
                str_t.clone(),
                value(PyString::new(py, "MARKET").into_any()),
            ),
            (
                "limit_price",
                float_t.clone(),
                value(PyFloat::new(py, 0.0).into_any()),
            ),
            (
                "post_only",
                bool_t.clone(),
                value(PyBool::new(py, false).to_owned().into_any()),
            ),
            ("ttl_s", float_t, value(PyFloat::new(py, 0.0).into_any())),
            (
                "is_maker",
                bool_t.clone(),
                value(PyBool::new(py, false).to_owned().into_any()),
            ),
            (
                "action",
                str_t.clone(),
                value(PyString::new(py, "ENTER").into_any()),
            ),
            (
                "reason",
                str_t,
                value(PyString::new(py, "taker_default").into_any()),
            ),
            (
                "suppress",
                bool_t,
                value(PyBool::new(py, false).to_owned().into_any()),
            ),
            (
                "metadata",
                dict_t.clone(),
                Default::Factory(dict_t.unbind()),
            ),
        ],
        true,
    )
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

/// `type(obj)(**{every field, with kwargs applied})`.
pub fn replace<'py>(
    obj: &Bound<'py, PyAny>,
    names: &[&str],
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let changes = match kwargs {
        Some(k) => k.copy()?,
        None => PyDict::new(py),
    };
    for name in names {
        if !changes.contains(name)? {
            changes.set_item(name, obj.getattr(name)?)?;
        }
    }
    obj.get_type().call((), Some(&changes))
}
