//! The router's counters: atomic cells, and the live `Counters` mapping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};

/// The counter names, in the legacy order; `_core.COUNTER_KEYS`.
pub const KEYS: [&str; Counter::HookErrors as usize + 1] = [
    "plans_entry",
    "plans_exit",
    "maker_entries",
    "maker_exits",
    "taker_entries",
    "taker_exits",
    "suppressed_dup_enter",
    "suppressed_dup_exit",
    "spread_gate_taker",
    "entry_miss_skip",
    "entry_miss_retry",
    "entry_miss_market",
    "exit_escalations",
    "fills_working",
    "cancels",
    "hook_errors",
];

/// A counter, by its position in [`KEYS`] (the last one sets the length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    PlansEntry = 0,
    PlansExit,
    MakerEntries,
    MakerExits,
    TakerEntries,
    TakerExits,
    SuppressedDupEnter,
    SuppressedDupExit,
    SpreadGateTaker,
    EntryMissSkip,
    EntryMissRetry,
    EntryMissMarket,
    ExitEscalations,
    FillsWorking,
    Cancels,
    HookErrors,
}

/// Lock-free counter cells shared by a router and its `Counters` view.
#[derive(Debug)]
pub struct Cells([AtomicI64; KEYS.len()]);

impl Default for Cells {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicI64::new(0)))
    }
}

impl Cells {
    pub fn inc(&self, counter: Counter) {
        if let Some(cell) = self.0.get(counter as usize) {
            // Saturates: a counter never wraps to a negative value.
            let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(1))
            });
        }
    }

    pub fn get(&self, i: usize) -> i64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn set(&self, i: usize, value: i64) {
        if let Some(cell) = self.0.get(i) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// A plain dict of the current values.
    pub fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (i, key) in key_strings(py)?.iter().enumerate() {
            dict.set_item(key, self.get(i))?;
        }
        Ok(dict)
    }
}

static KEY_STRINGS: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();

/// [`KEYS`] as interned Python strings, made once.
fn key_strings(py: Python<'_>) -> PyResult<&Vec<Py<PyString>>> {
    KEY_STRINGS.get_or_try_init(py, || {
        Ok(KEYS
            .iter()
            .map(|k| PyString::intern(py, k).unbind())
            .collect())
    })
}

fn position(key: &Bound<'_, PyAny>) -> Option<usize> {
    let key = key.cast::<PyString>().ok()?.to_str().ok()?;
    KEYS.iter().position(|k| *k == key)
}

fn no_delete() -> PyErr {
    PyTypeError::new_err("counters cannot be deleted; assign 0 instead")
}

fn writable_position(key: &Bound<'_, PyAny>) -> PyResult<usize> {
    position(key).ok_or_else(|| match key.repr() {
        Ok(repr) => PyKeyError::new_err(format!(
            "unknown counter {repr}; counters are fixed: {KEYS:?}"
        )),
        Err(err) => err,
    })
}

fn counter_value(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "counter values must be int, got {}",
            value.get_type().name()?
        )));
    }
    value.extract::<i64>().map_err(|_| {
        PyValueError::new_err("counter values must fit in 64 bits (-2**63 .. 2**63 - 1)")
    })
}

/// The router's counters: a live mapping with a fixed set of int values.
#[pyclass(module = "exec_router._core", name = "Counters", frozen, mapping)]
pub struct Counters {
    pub cells: Arc<Cells>,
}

#[pymethods]
impl Counters {
    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<i64> {
        match position(key) {
            Some(i) => Ok(self.cells.get(i)),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let i = writable_position(key)?;
        let value = counter_value(value)?;
        self.cells.set(i, value);
        Ok(())
    }

    fn __delitem__(&self, _key: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(no_delete())
    }

    /// As `dict.update`; every pair is checked before any counter changes.
    #[pyo3(signature = (other = None, /, **kwargs))]
    fn update(
        &self,
        other: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let mut pairs = Vec::new();
        if let Some(other) = other {
            if other.hasattr("keys")? {
                for key in other.call_method0("keys")?.try_iter()? {
                    let key = key?;
                    let value = other.get_item(&key)?;
                    pairs.push((key, value));
                }
            } else {
                for item in other.try_iter()? {
                    pairs.push(item?.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()?);
                }
            }
        }
        if let Some(kwargs) = kwargs {
            pairs.extend(kwargs.iter());
        }
        let mut writes = Vec::with_capacity(pairs.len());
        for (key, value) in &pairs {
            writes.push((writable_position(key)?, counter_value(value)?));
        }
        for (i, value) in writes {
            self.cells.set(i, value);
        }
        Ok(())
    }

    /// The counter's value; the keys are fixed, so an unknown key raises `KeyError`.
    #[pyo3(signature = (key, default = None))]
    fn setdefault(
        &self,
        key: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        let _ = default;
        Ok(self.cells.get(writable_position(key)?))
    }

    #[pyo3(signature = (key, default = None))]
    fn pop(&self, key: &Bound<'_, PyAny>, default: Option<&Bound<'_, PyAny>>) -> PyResult<i64> {
        let _ = (key, default);
        Err(no_delete())
    }

    fn popitem(&self) -> PyResult<(String, i64)> {
        Err(no_delete())
    }

    fn clear(&self) -> PyResult<()> {
        Err(no_delete())
    }

    fn __len__(&self) -> usize {
        KEYS.len()
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> bool {
        position(key).is_some()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, KEYS)?.try_iter().map(Bound::into_any)
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.cells.to_dict(py)?.call_method0("keys")
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.cells.to_dict(py)?.call_method0("values")
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.cells.to_dict(py)?.call_method0("items")
    }

    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match position(key) {
            Some(i) => Ok(self.cells.get(i).into_pyobject(py)?.into_any().unbind()),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    /// A plain dict of the current values.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.cells.to_dict(py)
    }

    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let comparable = other.is_instance_of::<PyDict>() || other.is_instance_of::<Counters>();
        match op {
            CompareOp::Eq | CompareOp::Ne if comparable => {
                let same = self.cells.to_dict(py)?.eq(other)?;
                let answer = if matches!(op, CompareOp::Eq) {
                    same
                } else {
                    !same
                };
                Ok(PyBool::new(py, answer).to_owned().into_any().unbind())
            }
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Counters({})", self.cells.to_dict(py)?.repr()?))
    }
}
