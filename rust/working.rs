//! `WorkingOrder`: a maker quote resting on the venue. A mutable native type
//! that behaves as a dataclass; assigning `deadline` or `action` re-indexes
//! the order in the registry that holds it.

use std::sync::{Arc, Weak};

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};
use pyo3::PyTraverseError;

use crate::convert::{int64, number, string, type_name};
use crate::dataclass::{self, dataclass_methods, Dataclass, Default};
use crate::index::Index;
use crate::plan::{Action, ExecutionPlan};
use crate::registry::Slots;
use crate::sync::lock;

const OWNER: &str = "WorkingOrder";
const FIELDS: [&str; 10] = [
    "trade_id",
    "asset",
    "side",
    "action",
    "plan",
    "submitted_at",
    "deadline",
    "retries_left",
    "base_trade_id",
    "retry_n",
];

/// Where a registered order sits in its router's index.
#[derive(Clone)]
pub struct Link {
    pub slots: Weak<Slots>,
    pub pos: u64,
}

#[pyclass(module = "exec_router._core", name = "WorkingOrder", weakref)]
pub struct WorkingOrder {
    pub trade_id: Py<PyAny>,
    pub asset: Py<PyAny>,
    pub side: Py<PyString>,
    pub action: Py<PyString>,
    pub plan: Py<ExecutionPlan>,
    pub submitted_at: f64,
    pub deadline: f64,
    pub retries_left: i64,
    pub base_trade_id: Py<PyAny>,
    pub retry_n: i64,
    pub link: Option<Link>,
    /// The journal's PUT body of this order, while a journal is attached
    /// (shared: a compaction collects the bodies by reference).
    pub journal: Option<Arc<[u8]>>,
}

impl WorkingOrder {
    pub fn is(&self, py: Python<'_>, action: Action) -> bool {
        Action::is_named(self.action.bind(py), action)
    }

    fn values<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyAny>> {
        vec![
            self.trade_id.bind(py).clone(),
            self.asset.bind(py).clone(),
            self.side.bind(py).clone().into_any(),
            self.action.bind(py).clone().into_any(),
            self.plan.bind(py).clone().into_any(),
            PyFloat::new(py, self.submitted_at).into_any(),
            PyFloat::new(py, self.deadline).into_any(),
            self.retries_left
                .into_pyobject(py)
                .map(Bound::into_any)
                .unwrap_or_else(|_| py.None().into_bound(py)),
            self.base_trade_id.bind(py).clone(),
            self.retry_n
                .into_pyobject(py)
                .map(Bound::into_any)
                .unwrap_or_else(|_| py.None().into_bound(py)),
        ]
    }

    /// Apply `f` to the index slot of a registered order, if it still is.
    fn reindex(link: Option<Link>, f: impl FnOnce(&mut Index<Py<WorkingOrder>>, u64)) {
        if let Some(link) = link {
            if let Some(slots) = link.slots.upgrade() {
                f(&mut lock(&slots), link.pos);
            }
        }
    }
}

/// Swap a field's value and drop the old one only after the borrow ends: a
/// drop may run arbitrary Python (`__del__`).
macro_rules! swap_field {
    ($slf:expr, $field:ident, $value:expr) => {{
        let old = std::mem::replace(&mut $slf.try_borrow_mut()?.$field, $value);
        drop(old);
    }};
}

dataclass_methods! {
impl WorkingOrder {
    #[new]
    #[pyo3(
        signature = (*args, **kwargs),
        text_signature = "(trade_id, asset, side, action, plan, submitted_at, deadline, \
                          retries_left, base_trade_id, retry_n=0)"
    )]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let py = args.py();
        let bound = dataclass::bind(OWNER, &FIELDS, 9, args, kwargs)?;
        let none = py.None().into_bound(py);
        let arg = |i: usize| bound.get(i).and_then(Option::as_ref).unwrap_or(&none);
        let plan = || {
            arg(4).cast::<ExecutionPlan>().cloned().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "WorkingOrder.plan must be ExecutionPlan, got {}",
                    type_name(arg(4))
                ))
            })
        };
        let retry_n = || match bound.get(9).and_then(Option::as_ref) {
            Some(v) => int64(OWNER, "retry_n", v),
            None => Ok(0),
        };
        // Checked in field order, so the first bad field is the one named.
        Ok(Self {
            trade_id: arg(0).clone().unbind(),
            asset: arg(1).clone().unbind(),
            side: string(OWNER, "side", arg(2))?.unbind(),
            action: string(OWNER, "action", arg(3))?.unbind(),
            plan: plan()?.unbind(),
            submitted_at: number(OWNER, "submitted_at", arg(5))?,
            deadline: deadline(arg(6))?,
            retries_left: int64(OWNER, "retries_left", arg(7))?,
            base_trade_id: arg(8).clone().unbind(),
            retry_n: retry_n()?,
            link: None,
            journal: None,
        })
    }

    #[getter]
    fn trade_id(&self, py: Python<'_>) -> Py<PyAny> {
        self.trade_id.clone_ref(py)
    }
    #[setter]
    fn set_trade_id(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        swap_field!(slf, trade_id, value.unbind());
        Ok(())
    }
    #[getter]
    fn asset(&self, py: Python<'_>) -> Py<PyAny> {
        self.asset.clone_ref(py)
    }
    #[setter]
    fn set_asset(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        swap_field!(slf, asset, value.unbind());
        Ok(())
    }
    #[getter]
    fn side(&self, py: Python<'_>) -> Py<PyString> {
        self.side.clone_ref(py)
    }
    #[setter]
    fn set_side(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = string(OWNER, "side", value)?.unbind();
        swap_field!(slf, side, value);
        Ok(())
    }
    #[getter]
    fn action(&self, py: Python<'_>) -> Py<PyString> {
        self.action.clone_ref(py)
    }
    #[setter]
    fn set_action(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = string(OWNER, "action", value)?;
        let enter = value.to_str().is_ok_and(|a| a == "ENTER");
        let (old, link) = {
            let mut me = slf.try_borrow_mut()?;
            (
                std::mem::replace(&mut me.action, value.unbind()),
                me.link.clone(),
            )
        };
        Self::reindex(link, |ix, pos| ix.set_enter(pos, enter));
        drop(old);
        Ok(())
    }
    #[getter]
    fn plan(&self, py: Python<'_>) -> Py<ExecutionPlan> {
        self.plan.clone_ref(py)
    }
    #[setter]
    fn set_plan(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let plan = value.cast::<ExecutionPlan>().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "WorkingOrder.plan must be ExecutionPlan, got {}",
                type_name(value)
            ))
        })?;
        swap_field!(slf, plan, plan.clone().unbind());
        Ok(())
    }
    #[getter]
    fn submitted_at(&self) -> f64 {
        self.submitted_at
    }
    #[setter]
    fn set_submitted_at(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = number(OWNER, "submitted_at", value)?;
        slf.try_borrow_mut()?.submitted_at = v;
        Ok(())
    }
    #[getter]
    fn deadline(&self) -> f64 {
        self.deadline
    }
    #[setter]
    fn set_deadline(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let deadline = deadline(value)?;
        let link = {
            let mut me = slf.try_borrow_mut()?;
            me.deadline = deadline;
            me.link.clone()
        };
        Self::reindex(link, |ix, pos| ix.set_deadline(pos, deadline));
        Ok(())
    }
    #[getter]
    fn retries_left(&self) -> i64 {
        self.retries_left
    }
    #[setter]
    fn set_retries_left(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = int64(OWNER, "retries_left", value)?;
        slf.try_borrow_mut()?.retries_left = v;
        Ok(())
    }
    #[getter]
    fn base_trade_id(&self, py: Python<'_>) -> Py<PyAny> {
        self.base_trade_id.clone_ref(py)
    }
    #[setter]
    fn set_base_trade_id(slf: &Bound<'_, Self>, value: Bound<'_, PyAny>) -> PyResult<()> {
        swap_field!(slf, base_trade_id, value.unbind());
        Ok(())
    }
    #[getter]
    fn retry_n(&self) -> i64 {
        self.retry_n
    }
    #[setter]
    fn set_retry_n(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = int64(OWNER, "retry_n", value)?;
        slf.try_borrow_mut()?.retry_n = v;
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.trade_id)?;
        visit.call(&self.asset)?;
        visit.call(&self.side)?;
        visit.call(&self.action)?;
        visit.call(&self.plan)?;
        visit.call(&self.base_trade_id)?;
        Ok(())
    }

    fn __clear__(&mut self) {
        Python::attach(|py| {
            let old = (
                std::mem::replace(&mut self.trade_id, py.None()),
                std::mem::replace(&mut self.asset, py.None()),
                std::mem::replace(&mut self.base_trade_id, py.None()),
            );
            drop(old);
        });
    }
}
}

/// A deadline is a finite number: a NaN or infinite one would never expire.
fn deadline(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    let deadline = number(OWNER, "deadline", value)?;
    if deadline.is_finite() {
        return Ok(deadline);
    }
    let shown = PyFloat::new(value.py(), deadline)
        .str()
        .map_or_else(|_| deadline.to_string(), |s| s.to_string());
    Err(pyo3::exceptions::PyValueError::new_err(format!(
        "WorkingOrder.deadline must be finite, got {shown}"
    )))
}

static SHAPE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

impl Dataclass for WorkingOrder {
    const OWNER: &'static str = OWNER;
    const FIELDS: &'static [&'static str] = &FIELDS;
    const FROZEN: bool = false;

    fn values<'py>(slf: &Bound<'py, Self>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Ok(slf.try_borrow()?.values(slf.py()))
    }

    fn field_specs(py: Python<'_>) -> PyResult<Vec<(&'static str, Bound<'_, PyAny>, Default)>> {
        let any_t = py.import("typing")?.getattr("Any")?;
        let str_t = py.get_type::<PyString>().into_any();
        let float_t = py.get_type::<PyFloat>().into_any();
        let int_t = py.get_type::<pyo3::types::PyInt>().into_any();
        let plan_t = py.get_type::<ExecutionPlan>().into_any();
        let zero = 0_i64.into_pyobject(py)?.into_any().unbind();
        Ok(vec![
            ("trade_id", any_t.clone(), Default::None),
            ("asset", any_t.clone(), Default::None),
            ("side", str_t.clone(), Default::None),
            ("action", str_t, Default::None),
            ("plan", plan_t, Default::None),
            ("submitted_at", float_t.clone(), Default::None),
            ("deadline", float_t, Default::None),
            ("retries_left", int_t.clone(), Default::None),
            ("base_trade_id", any_t, Default::None),
            ("retry_n", int_t, Default::Value(zero)),
        ])
    }

    fn shape_cell() -> &'static PyOnceLock<(Py<PyAny>, Py<PyAny>)> {
        &SHAPE
    }
}
