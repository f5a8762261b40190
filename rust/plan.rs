//! `ExecutionPlan`: how one intent reaches the venue. A frozen native type
//! that behaves as a frozen dataclass. Its fields and defaults are written
//! once, in [`FIELDS`] (`_core.PLAN_FIELDS`).

use std::sync::{Mutex, OnceLock};

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::convert::{boolean, number, string, type_name};
use crate::dataclass::{self, dataclass_methods, Dataclass};
use crate::sync::lock;

/// What a plan does to the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Enter,
    Exit,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Enter => "ENTER",
            Action::Exit => "EXIT",
        }
    }

    /// Whether `value` is `expected`'s name: by identity with the interned
    /// names first, by value otherwise.
    pub fn is_named(value: &Bound<'_, PyString>, expected: Action) -> bool {
        let py = value.py();
        for action in [Action::Enter, Action::Exit] {
            if value.is(action.py_name(py)) {
                return action == expected;
            }
        }
        value.to_str().is_ok_and(|a| a == expected.name())
    }

    /// The interned Python string.
    pub fn py_name(self, py: Python<'_>) -> &Bound<'_, PyString> {
        match self {
            Action::Enter => intern!(py, "ENTER"),
            Action::Exit => intern!(py, "EXIT"),
        }
    }
}

/// A maker LIMIT quote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quote {
    pub price: f64,
    pub post_only: bool,
    pub ttl_s: f64,
}

/// A field's default value.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Str(&'static str),
    Float(f64),
    Bool(bool),
    /// A fresh `dict()` per plan.
    DictFactory,
}

/// The plan's fields and defaults, in order.
pub const FIELDS: [(&str, Value); 9] = [
    ("order_type", Value::Str("MARKET")),
    ("limit_price", Value::Float(0.0)),
    ("post_only", Value::Bool(false)),
    ("ttl_s", Value::Float(0.0)),
    ("is_maker", Value::Bool(false)),
    ("action", Value::Str("ENTER")),
    ("reason", Value::Str("taker_default")),
    ("suppress", Value::Bool(false)),
    ("metadata", Value::DictFactory),
];

// Indexing in a const block is checked at compile time.
#[allow(clippy::indexing_slicing)]
const NAMES: [&str; FIELDS.len()] = {
    let mut names = [""; FIELDS.len()];
    let mut i = 0;
    while i < FIELDS.len() {
        names[i] = FIELDS[i].0;
        i += 1;
    }
    names
};

impl Value {
    /// The default as a Python value (the factory for `DictFactory`).
    fn to_py(self, py: Python<'_>) -> Bound<'_, PyAny> {
        match self {
            Value::Str(s) => PyString::intern(py, s).into_any(),
            Value::Float(f) => PyFloat::new(py, f).into_any(),
            Value::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
            Value::DictFactory => py.get_type::<PyDict>().into_any(),
        }
    }

    fn type_of(self, py: Python<'_>) -> Bound<'_, PyAny> {
        match self {
            Value::Str(_) => py.get_type::<PyString>().into_any(),
            Value::Float(_) => py.get_type::<PyFloat>().into_any(),
            Value::Bool(_) => py.get_type::<PyBool>().into_any(),
            Value::DictFactory => py.get_type::<PyDict>().into_any(),
        }
    }
}

/// `((name, default), ...)`: the plan fields with their defaults, the
/// factory (`dict`) standing for a default made per plan.
pub fn fields_with_defaults(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
    let pairs: Vec<Bound<'_, PyTuple>> = FIELDS
        .iter()
        .map(|(name, default)| {
            PyTuple::new(py, [PyString::new(py, name).into_any(), default.to_py(py)])
        })
        .collect::<PyResult<_>>()?;
    PyTuple::new(py, pairs)
}

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
    /// The journal's encoding of the fields before `metadata` (all immutable),
    /// made on the first registration with a journal attached.
    journaled: OnceLock<Box<[u8]>>,
}

/// The fields of a plan, for building one from Rust.
pub struct Spec<'py> {
    pub quote: Option<Quote>,
    pub action: Action,
    pub reason: Bound<'py, PyString>,
    pub suppress: bool,
    pub metadata: Option<Bound<'py, PyDict>>,
}

impl<'py> Spec<'py> {
    /// A MARKET plan.
    pub fn market(action: Action, reason: Bound<'py, PyString>) -> Self {
        Self {
            quote: None,
            action,
            reason,
            suppress: false,
            metadata: None,
        }
    }

    /// A maker LIMIT plan.
    pub fn limit(action: Action, reason: Bound<'py, PyString>, quote: Quote) -> Self {
        Self {
            quote: Some(quote),
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
        let (order_type, quote) = match self.quote {
            Some(q) => (intern!(py, "LIMIT"), q),
            None => (
                intern!(py, "MARKET"),
                Quote {
                    price: 0.0,
                    post_only: false,
                    ttl_s: 0.0,
                },
            ),
        };
        let plan = ExecutionPlan {
            order_type: order_type.clone().unbind(),
            limit_price: quote.price,
            post_only: quote.post_only,
            ttl_s: quote.ttl_s,
            is_maker: self.quote.is_some(),
            action: self.action.py_name(py).clone().unbind(),
            reason: self.reason.unbind(),
            suppress: self.suppress,
            metadata: Mutex::new(self.metadata.map(Bound::unbind)),
            journaled: OnceLock::new(),
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

    pub fn action_is(&self, py: Python<'_>, expected: Action) -> bool {
        Action::is_named(self.action.bind(py), expected)
    }

    /// Whether `s` is this plan's action (the same object).
    pub fn action_is_object(&self, s: &Py<PyString>) -> bool {
        self.action.is(s)
    }

    pub fn action_str<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.action.bind(py).clone()
    }

    /// A plan read back from the journal (its fields already checked there);
    /// no metadata stands for an empty dict, made on first access.
    #[allow(clippy::too_many_arguments)]
    pub fn from_journal(
        order_type: Bound<'_, PyString>,
        limit_price: f64,
        post_only: bool,
        ttl_s: f64,
        is_maker: bool,
        action: Bound<'_, PyString>,
        reason: Bound<'_, PyString>,
        suppress: bool,
        metadata: Option<Bound<'_, PyDict>>,
    ) -> Self {
        Self {
            order_type: order_type.unbind(),
            limit_price,
            post_only,
            ttl_s,
            is_maker,
            action: action.unbind(),
            reason: reason.unbind(),
            suppress,
            metadata: Mutex::new(metadata.map(Bound::unbind)),
            journaled: OnceLock::new(),
        }
    }

    pub fn order_type_str<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.order_type.bind(py).clone()
    }

    pub fn reason_str<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.reason.bind(py).clone()
    }

    /// The journal's encoding of the fields before `metadata`, once made.
    pub fn journaled(&self) -> &OnceLock<Box<[u8]>> {
        &self.journaled
    }

    /// The metadata dict, if the plan has one yet (none reads as `{}`).
    pub fn metadata_if_any<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyDict>> {
        lock(&self.metadata).as_ref().map(|d| d.bind(py).clone())
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

    fn field_values<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyAny>> {
        vec![
            self.order_type.bind(py).clone().into_any(),
            PyFloat::new(py, self.limit_price).into_any(),
            PyBool::new(py, self.post_only).to_owned().into_any(),
            PyFloat::new(py, self.ttl_s).into_any(),
            PyBool::new(py, self.is_maker).to_owned().into_any(),
            self.action.bind(py).clone().into_any(),
            self.reason.bind(py).clone().into_any(),
            PyBool::new(py, self.suppress).to_owned().into_any(),
            self.metadata_dict(py).into_any(),
        ]
    }
}

static SHAPE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

impl Dataclass for ExecutionPlan {
    const OWNER: &'static str = "ExecutionPlan";
    const FIELDS: &'static [&'static str] = &NAMES;
    const FROZEN: bool = true;

    fn values<'py>(slf: &Bound<'py, Self>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Ok(slf.get().field_values(slf.py()))
    }

    fn field_specs(
        py: Python<'_>,
    ) -> PyResult<Vec<(&'static str, Bound<'_, PyAny>, dataclass::Default)>> {
        Ok(FIELDS
            .iter()
            .map(|(name, default)| {
                let spec = match default {
                    Value::DictFactory => dataclass::Default::Factory(default.to_py(py).unbind()),
                    _ => dataclass::Default::Value(default.to_py(py).unbind()),
                };
                (*name, default.type_of(py), spec)
            })
            .collect())
    }

    fn shape_cell() -> &'static PyOnceLock<(Py<PyAny>, Py<PyAny>)> {
        &SHAPE
    }
}

/// The default of text field `i`.
fn default_str(i: usize) -> &'static str {
    match FIELDS.get(i) {
        Some((_, Value::Str(s))) => s,
        _ => "",
    }
}

dataclass_methods! {
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
        let owner = <Self as Dataclass>::OWNER;
        let bound = dataclass::bind(owner, &NAMES, 0, args, kwargs)?;
        let arg = |i: usize| bound.get(i).and_then(Option::as_ref);
        let name = |i: usize| NAMES.get(i).copied().unwrap_or("?");
        let text = |i: usize| -> PyResult<Py<PyString>> {
            match arg(i) {
                Some(v) => Ok(string(owner, name(i), v)?.unbind()),
                None => Ok(PyString::intern(py, default_str(i)).unbind()),
            }
        };
        let flag = |i: usize| -> PyResult<bool> {
            arg(i).map_or(Ok(false), |v| boolean(owner, name(i), v))
        };
        let num = |i: usize| -> PyResult<f64> {
            arg(i).map_or(Ok(0.0), |v| number(owner, name(i), v))
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
            order_type: text(0)?,
            limit_price: num(1)?,
            post_only: flag(2)?,
            ttl_s: num(3)?,
            is_maker: flag(4)?,
            action: text(5)?,
            reason: text(6)?,
            suppress: flag(7)?,
            metadata: Mutex::new(metadata()?),
            journaled: OnceLock::new(),
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
        Err(dataclass::frozen_error(name))
    }

    fn __delattr__(&self, name: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(dataclass::frozen_error(name))
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyTuple::new(py, self.field_values(py))?.hash()
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
}
