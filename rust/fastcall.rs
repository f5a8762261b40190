//! Keyword arguments read straight from a vectorcall, for the hottest
//! methods (`maker_price`, `register_working`). A call site's keyword names
//! are interned, so each is matched by identity against interned parameter
//! names first, by value only on a miss: a few instructions instead of
//! PyO3's string comparison per keyword. The methods are installed as plain
//! `METH_FASTCALL | METH_KEYWORDS` descriptors on the class, as orjson and
//! CPython's own builtins take their arguments.

use std::ffi::{c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyString, PyTuple, PyType};

use crate::router::ExecutionRouter;

/// The keyword-only parameters of one method.
pub struct Params {
    pub method: &'static str,
    pub names: &'static [&'static str],
    /// The first `required` names have no default.
    pub required: usize,
    interned: PyOnceLock<Vec<Py<PyString>>>,
}

impl Params {
    pub const fn new(
        method: &'static str,
        names: &'static [&'static str],
        required: usize,
    ) -> Self {
        Self {
            method,
            names,
            required,
            interned: PyOnceLock::new(),
        }
    }

    fn interned(&self, py: Python<'_>) -> &Vec<Py<PyString>> {
        self.interned.get_or_init(py, || {
            self.names
                .iter()
                .map(|n| PyString::intern(py, n).unbind())
                .collect()
        })
    }

    /// The argument for each name (`None` where a default applies).
    ///
    /// # Safety
    /// `args`, `nargs` and `kwnames` are what CPython passes a
    /// `METH_FASTCALL | METH_KEYWORDS` function.
    pub unsafe fn parse<'py, const N: usize>(
        &self,
        py: Python<'py>,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
        let method = self.method;
        if nargs != 0 {
            return Err(PyTypeError::new_err(format!(
                "{method}() takes 0 positional arguments but {nargs} were given"
            )));
        }
        let mut out: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
        if !kwnames.is_null() {
            // SAFETY: CPython passes a tuple of str (or NULL) as kwnames.
            let kwnames = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
            let kwnames = kwnames.cast_into::<PyTuple>()?;
            let interned = self.interned(py);
            for (i, name) in kwnames.iter().enumerate() {
                let slot = interned
                    .iter()
                    .position(|p| p.as_ptr() == name.as_ptr())
                    .or_else(|| {
                        let name = name.cast::<PyString>().ok()?.to_str().ok()?;
                        self.names.iter().position(|n| *n == name)
                    });
                let Some(slot) = slot else {
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got an unexpected keyword argument {}",
                        name.repr()?
                    )));
                };
                // SAFETY: the keyword values follow the nargs positional ones.
                let value =
                    unsafe { Bound::from_borrowed_ptr(py, *args.offset(nargs + i as isize)) };
                match out.get_mut(slot) {
                    Some(cell @ None) => *cell = Some(value),
                    _ => {
                        return Err(PyTypeError::new_err(format!(
                            "{method}() got multiple values for argument {}",
                            name.repr()?
                        )))
                    }
                }
            }
        }
        let missing: Vec<String> = self
            .names
            .iter()
            .zip(&out)
            .take(self.required)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| format!("'{n}'"))
            .collect();
        if !missing.is_empty() {
            return Err(PyTypeError::new_err(format!(
                "{method}() missing {} required keyword-only argument{}: {}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            )));
        }
        Ok(out)
    }
}

/// Run a method body with the interpreter attached; an error is raised in
/// Python, a panic becomes a RuntimeError rather than unwinding into C.
pub fn entry(body: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a METH_FASTCALL function with the thread attached.
    // PyO3 is not told (that costs a PyGILState_Ensure per call), so a `Py`
    // dropped in `body` is released at PyO3's next call: the hot paths bind
    // what they clone and drop none.
    let py = unsafe { Python::assume_attached() };
    let err = match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(out)) => return out,
        Ok(Err(err)) => err,
        Err(_) => PyRuntimeError::new_err("exec_router: internal error (a Rust panic)"),
    };
    err.restore(py);
    ptr::null_mut()
}

/// A fastcall method: its C function and its docstring (with the signature).
pub struct Method {
    pub name: &'static CStr,
    pub doc: &'static CStr,
    pub function: ffi::PyCFunctionFastWithKeywords,
}

/// Install `methods` on `cls` as method descriptors.
pub fn install(cls: &Bound<'_, PyType>, methods: &[Method]) -> PyResult<()> {
    let py = cls.py();
    for m in methods {
        // The definition must outlive the class: it lives for the process.
        let def = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: m.name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: m.function,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: m.doc.as_ptr(),
        }));
        let tp = cls.as_type_ptr();
        // SAFETY: `tp` is a live heap type and `def` is 'static.
        let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(tp, def))? };
        // SAFETY: a heap type's tp_dict is a dict; writing it directly is how
        // CPython adds methods to an immutable type, then PyType_Modified.
        let status: c_int = unsafe {
            let dict = (*tp).tp_dict;
            let name = PyString::new(py, m.name.to_str().unwrap_or("?"));
            let status = ffi::PyDict_SetItem(dict, name.as_ptr(), descr.as_ptr());
            ffi::PyType_Modified(tp);
            status
        };
        if status != 0 {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(())
}

// ── the router's fastcall methods ─────────────────────────────────────────

static MAKER_PRICE: Params = Params::new(
    "maker_price",
    &["asset", "order_side", "reference_price"],
    3,
);

static REGISTER_WORKING: Params = Params::new(
    "register_working",
    &[
        "trade_id",
        "asset",
        "position_side",
        "plan",
        "base_trade_id",
        "retry_n",
    ],
    4,
);

static PLAN_ENTRY: Params = Params::new(
    "plan_entry",
    &[
        "trade_id",
        "asset",
        "position_side",
        "reference_price",
        "spread_bps",
    ],
    4,
);

static PLAN_EXIT: Params = Params::new(
    "plan_exit",
    &[
        "trade_id",
        "asset",
        "position_side",
        "reference_price",
        "reason",
        "spread_bps",
    ],
    5,
);

/// The router instance a fastcall method was called on.
fn receiver<'py>(
    py: Python<'py>,
    slf: *mut pyo3::ffi::PyObject,
) -> PyResult<Bound<'py, ExecutionRouter>> {
    // SAFETY: CPython passes the (borrowed) instance the descriptor was bound to.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    Ok(slf.cast_into::<ExecutionRouter>()?)
}

unsafe extern "C" fn maker_price(
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    entry(|py| {
        let router = receiver(py, slf)?;
        // SAFETY: the arguments CPython passed this function.
        let [asset, side, reference] = unsafe { MAKER_PRICE.parse::<3>(py, args, nargs, kwnames)? };
        let (Some(asset), Some(side), Some(reference)) = (asset, side, reference) else {
            return Err(PyTypeError::new_err("maker_price() missing an argument"));
        };
        let price = router.get().maker_price_of(&asset, &side, &reference)?;
        Ok(PyFloat::new(py, price).into_ptr())
    })
}

unsafe extern "C" fn register_working(
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    entry(|py| {
        let router = receiver(py, slf)?;
        // SAFETY: the arguments CPython passed this function.
        let [trade_id, asset, side, plan, base, retry_n] =
            unsafe { REGISTER_WORKING.parse::<6>(py, args, nargs, kwnames)? };
        let (Some(trade_id), Some(asset), Some(side), Some(plan)) = (trade_id, asset, side, plan)
        else {
            return Err(PyTypeError::new_err(
                "register_working() missing an argument",
            ));
        };
        let wo = router.get().register(
            py,
            &trade_id,
            &asset,
            &side,
            &plan,
            base.as_ref().filter(|b| !b.is_none()),
            retry_n.as_ref().filter(|r| !r.is_none()),
        )?;
        Ok(wo.into_ptr())
    })
}

unsafe extern "C" fn plan_entry(
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    entry(|py| {
        let router = receiver(py, slf)?;
        // SAFETY: the arguments CPython passed this function.
        let [trade_id, asset, side, reference, spread] =
            unsafe { PLAN_ENTRY.parse::<5>(py, args, nargs, kwnames)? };
        let (Some(trade_id), Some(asset), Some(side), Some(reference)) =
            (trade_id, asset, side, reference)
        else {
            return Err(PyTypeError::new_err("plan_entry() missing an argument"));
        };
        let spread = spread.as_ref().filter(|s| !s.is_none());
        let plan = router
            .get()
            .plan_entry(py, &trade_id, &asset, &side, &reference, spread)?;
        Ok(plan.into_ptr())
    })
}

unsafe extern "C" fn plan_exit(
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    entry(|py| {
        let router = receiver(py, slf)?;
        // SAFETY: the arguments CPython passed this function.
        let [trade_id, asset, side, reference, reason, spread] =
            unsafe { PLAN_EXIT.parse::<6>(py, args, nargs, kwnames)? };
        let (Some(trade_id), Some(asset), Some(side), Some(reference), Some(reason)) =
            (trade_id, asset, side, reference, reason)
        else {
            return Err(PyTypeError::new_err("plan_exit() missing an argument"));
        };
        let spread = spread.as_ref().filter(|s| !s.is_none());
        let plan = router
            .get()
            .plan_exit(py, &trade_id, &asset, &side, &reference, &reason, spread)?;
        Ok(plan.into_ptr())
    })
}

/// Install the fastcall methods on the class.
pub fn install_router_methods(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    install(
        cls,
        &[
            Method {
                name: c"plan_entry",
                doc: c"plan_entry($self, /, *, trade_id, asset, position_side, reference_price, \
spread_bps=None)\n--\n\nPlan an ENTER. Never raises on a bad value: falls back to MARKET.",
                function: plan_entry,
            },
            Method {
                name: c"plan_exit",
                doc: c"plan_exit($self, /, *, trade_id, asset, position_side, reference_price, \
reason, spread_bps=None)\n--\n\nPlan an EXIT. Exits are never skipped, except when a maker \
exit for the same trade is resting and the new reason is not urgent.",
                function: plan_exit,
            },
            Method {
                name: c"maker_price",
                doc: c"maker_price($self, /, *, asset, order_side, reference_price)\n--\n\n\
Post-only quote price on our side of the touch; 0.0 when no quote is possible.",
                function: maker_price,
            },
            Method {
                name: c"register_working",
                doc: c"register_working($self, /, *, trade_id, asset, position_side, plan, \
base_trade_id=None, retry_n=None)\n--\n\nRecord a maker quote the runtime has submitted.",
                function: register_working,
            },
        ],
    )
}
