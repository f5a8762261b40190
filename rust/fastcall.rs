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
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyString, PyType};

use crate::router::ExecutionRouter;

/// The parameters of one method: the first `positional` may also be
/// passed by position, the rest by keyword only.
pub struct Params {
    pub method: &'static str,
    pub names: &'static [&'static str],
    /// The first `required` names have no default.
    pub required: usize,
    pub positional: usize,
    interned: PyOnceLock<Vec<Py<PyString>>>,
}

/// The arguments of a call, borrowed from CPython's vector (null where a
/// default applies): no reference counting on the hot path.
pub type Args<const N: usize> = [*mut ffi::PyObject; N];

impl Params {
    pub const fn new(
        method: &'static str,
        names: &'static [&'static str],
        required: usize,
        positional: usize,
    ) -> Self {
        Self {
            method,
            names,
            required,
            positional,
            interned: PyOnceLock::new(),
        }
    }

    fn interned(&self, py: Python<'_>) -> &[Py<PyString>] {
        self.interned.get_or_init(py, || {
            self.names
                .iter()
                .map(|n| PyString::intern(py, n).unbind())
                .collect()
        })
    }

    /// The slot of keyword `name`: by identity with the interned parameter
    /// names first, by value only on a miss.
    fn slot(
        &self,
        py: Python<'_>,
        interned: &[Py<PyString>],
        name: *mut ffi::PyObject,
    ) -> Option<usize> {
        interned
            .iter()
            .position(|p| p.as_ptr() == name)
            .or_else(|| {
                // SAFETY: `name` is a live item of the kwnames tuple.
                let name = unsafe { Borrowed::from_ptr(py, name) };
                let name = name.cast::<PyString>().ok()?;
                let name = name.to_str().ok()?;
                self.names.iter().position(|n| *n == name)
            })
    }

    /// The argument for each name (null where a default applies).
    ///
    /// # Safety
    /// `args`, `nargs` and `kwnames` are what CPython passes a
    /// `METH_FASTCALL | METH_KEYWORDS` function; the result borrows `args`.
    pub unsafe fn parse<const N: usize>(
        &self,
        py: Python<'_>,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> PyResult<Args<N>> {
        let method = self.method;
        let mut out: Args<N> = [ptr::null_mut(); N];
        let given = usize::try_from(nargs).unwrap_or(usize::MAX);
        if given > self.positional {
            return Err(PyTypeError::new_err(format!(
                "{method}() takes {} positional arguments but {nargs} were given",
                self.positional
            )));
        }
        for (i, cell) in out.iter_mut().take(given).enumerate() {
            // SAFETY: CPython passes `nargs` positional arguments first.
            *cell = unsafe { *args.add(i) };
        }
        if !kwnames.is_null() {
            let interned = self.interned(py);
            // SAFETY: CPython passes a tuple of str (or NULL) as kwnames.
            let count = unsafe { ffi::PyTuple_GET_SIZE(kwnames) };
            for i in 0..count {
                // SAFETY: `i` is within the tuple.
                let name = unsafe { ffi::PyTuple_GET_ITEM(kwnames, i) };
                // A call site mostly names the parameters in their order.
                let guess = given.wrapping_add(i.unsigned_abs());
                let slot = match interned.get(guess) {
                    Some(p) if p.as_ptr() == name => Some(guess),
                    _ => self.slot(py, interned, name),
                };
                let Some(slot) = slot else {
                    // SAFETY: a live item of the kwnames tuple.
                    let name = unsafe { Borrowed::from_ptr(py, name) };
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got an unexpected keyword argument {}",
                        name.repr()?
                    )));
                };
                match out.get_mut(slot) {
                    Some(cell) if cell.is_null() => {
                        // SAFETY: the keyword values follow the positional ones.
                        *cell = unsafe { *args.offset(nargs + i) };
                    }
                    _ => {
                        // SAFETY: a live item of the kwnames tuple.
                        let name = unsafe { Borrowed::from_ptr(py, name) };
                        return Err(PyTypeError::new_err(format!(
                            "{method}() got multiple values for argument {}",
                            name.repr()?
                        )));
                    }
                }
            }
        }
        // A missing required argument is reported by the caller (`missing`),
        // which checks each one anyway.
        Ok(out)
    }

    /// The TypeError for the required arguments `out` lacks.
    #[cold]
    pub fn missing(&self, out: &[*mut ffi::PyObject]) -> PyErr {
        let missing: Vec<String> = self
            .names
            .iter()
            .zip(out)
            .take(self.required)
            .filter(|(_, v)| v.is_null())
            .map(|(n, _)| format!("'{n}'"))
            .collect();
        let kind = if self.positional == 0 {
            " keyword-only"
        } else {
            " positional"
        };
        PyTypeError::new_err(format!(
            "{}() missing {} required{kind} argument{}: {}",
            self.method,
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        ))
    }
}

/// An argument borrowed from the call's vector; `None` where it was not given.
///
/// # Safety
/// `p` is null or an argument CPython passed the running call.
pub unsafe fn arg<'a, 'py>(
    py: Python<'py>,
    p: *mut ffi::PyObject,
) -> Option<Borrowed<'a, 'py, PyAny>> {
    // SAFETY: as the caller promises.
    unsafe { Borrowed::from_ptr_or_opt(py, p) }
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
    0,
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
    0,
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
    0,
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
    0,
);

static NOTE_FILL: Params = Params::new("note_fill", &["trade_id"], 1, 1);

static NOTE_CANCEL: Params = Params::new("note_cancel", &["trade_id"], 1, 1);

/// The router class, kept by `install_router_methods` (a final type: an
/// instance's type is this one exactly).
static ROUTER_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(ptr::null_mut());

/// The router instance a fastcall method was called on.
fn receiver<'a, 'py>(
    py: Python<'py>,
    slf: *mut pyo3::ffi::PyObject,
) -> PyResult<Borrowed<'a, 'py, ExecutionRouter>> {
    // SAFETY: CPython passes the (borrowed) instance the descriptor was bound to.
    let slf = unsafe { Borrowed::from_ptr(py, slf) };
    // SAFETY: `slf` is a live object.
    let tp = unsafe { ffi::Py_TYPE(slf.as_ptr()) };
    if !tp.is_null() && tp == ROUTER_TYPE.load(Ordering::Relaxed) {
        // SAFETY: its type is the router class itself.
        return Ok(unsafe { slf.cast_unchecked::<ExecutionRouter>() });
    }
    Ok(slf.cast_exact::<ExecutionRouter>()?)
}

fn none_to_absent<'a, 'py>(
    value: Option<Borrowed<'a, 'py, PyAny>>,
) -> Option<Borrowed<'a, 'py, PyAny>> {
    value.filter(|v| !v.is_none())
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
        // SAFETY: each is null or an argument of this call.
        let (Some(asset), Some(side), Some(reference)) =
            (unsafe { (arg(py, asset), arg(py, side), arg(py, reference)) })
        else {
            return Err(MAKER_PRICE.missing(&[asset, side, reference]));
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
        // SAFETY: each is null or an argument of this call.
        let (Some(trade_id), Some(asset), Some(side), Some(plan)) = (unsafe {
            (
                arg(py, trade_id),
                arg(py, asset),
                arg(py, side),
                arg(py, plan),
            )
        }) else {
            return Err(REGISTER_WORKING.missing(&[trade_id, asset, side, plan]));
        };
        // SAFETY: each is null or an argument of this call.
        let (base, retry_n) = unsafe { (arg(py, base), arg(py, retry_n)) };
        let (base, retry_n) = (none_to_absent(base), none_to_absent(retry_n));
        let wo = router.get().register(
            py,
            &trade_id,
            &asset,
            &side,
            &plan,
            base.as_deref(),
            retry_n.as_deref(),
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
        // SAFETY: each is null or an argument of this call.
        let (Some(trade_id), Some(asset), Some(side), Some(reference)) = (unsafe {
            (
                arg(py, trade_id),
                arg(py, asset),
                arg(py, side),
                arg(py, reference),
            )
        }) else {
            return Err(PLAN_ENTRY.missing(&[trade_id, asset, side, reference]));
        };
        // SAFETY: null or an argument of this call.
        let spread = none_to_absent(unsafe { arg(py, spread) });
        let plan =
            router
                .get()
                .plan_entry(py, &trade_id, &asset, &side, &reference, spread.as_deref())?;
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
        // SAFETY: each is null or an argument of this call.
        let (Some(trade_id), Some(asset), Some(side), Some(reference), Some(reason)) = (unsafe {
            (
                arg(py, trade_id),
                arg(py, asset),
                arg(py, side),
                arg(py, reference),
                arg(py, reason),
            )
        }) else {
            return Err(PLAN_EXIT.missing(&[trade_id, asset, side, reference, reason]));
        };
        // SAFETY: null or an argument of this call.
        let spread = none_to_absent(unsafe { arg(py, spread) });
        let plan = router.get().plan_exit(
            py,
            &trade_id,
            &asset,
            &side,
            &reference,
            &reason,
            spread.as_deref(),
        )?;
        Ok(plan.into_ptr())
    })
}

/// `note_fill` and `note_cancel`: one argument, by position or keyword.
fn note(
    params: &'static Params,
    fill: bool,
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    entry(|py| {
        let router = receiver(py, slf)?;
        // SAFETY: the arguments CPython passed this function.
        let [trade_id] = unsafe { params.parse::<1>(py, args, nargs, kwnames)? };
        // SAFETY: null or an argument of this call.
        let Some(trade_id) = (unsafe { arg(py, trade_id) }) else {
            return Err(params.missing(&[trade_id]));
        };
        router.get().note(py, fill, &trade_id)?;
        Ok(py.None().into_ptr())
    })
}

unsafe extern "C" fn note_fill(
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    note(&NOTE_FILL, true, slf, args, nargs, kwnames)
}

unsafe extern "C" fn note_cancel(
    slf: *mut pyo3::ffi::PyObject,
    args: *const *mut pyo3::ffi::PyObject,
    nargs: pyo3::ffi::Py_ssize_t,
    kwnames: *mut pyo3::ffi::PyObject,
) -> *mut pyo3::ffi::PyObject {
    note(&NOTE_CANCEL, false, slf, args, nargs, kwnames)
}

/// Install the fastcall methods on the class.
pub fn install_router_methods(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    // The class lives as long as the module (it is never freed).
    ROUTER_TYPE.store(cls.as_type_ptr(), Ordering::Relaxed);
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
            Method {
                name: c"note_fill",
                doc: c"note_fill($self, /, trade_id)\n--\n\n\
The working order under trade_id was filled: remove it, count it, tell on_fill hooks.",
                function: note_fill,
            },
            Method {
                name: c"note_cancel",
                doc: c"note_cancel($self, /, trade_id)\n--\n\n\
The working order under trade_id was cancelled: remove it, count it, tell on_cancel hooks.",
                function: note_cancel,
            },
        ],
    )
}
