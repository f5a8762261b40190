//! The working-order registry: the `trade_id -> WorkingOrder` dict, the
//! expiry index beside it (with the working-entry set), the generation
//! counter that detects a change nested in a key's `__eq__`/`__hash__`, and
//! the observer told of every change. `put` and `pop` are the only ways in
//! and out, and each tells the observer: one choke point per direction.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use pyo3::{intern, PyTraverseError};

use crate::convert::{guard, hashable, type_name, Conv, Fail};
use crate::index::Index;
use crate::sync::lock;
use crate::working::{Link, WorkingOrder};

/// `dict[key] = value`, returning the value it replaces: one lookup when
/// the key is new (`setdefault`), a second only to replace.
fn insert_or_replace<'py>(
    dict: &Bound<'py, PyDict>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, WorkingOrder>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = dict.py();
    // SAFETY: live objects; the result is borrowed from the dict (or NULL
    // with an exception set).
    let found = unsafe { ffi::PyDict_SetDefault(dict.as_ptr(), key.as_ptr(), value.as_ptr()) };
    if found.is_null() {
        return Err(PyErr::fetch(py));
    }
    if found == value.as_ptr() {
        return Ok(None);
    }
    // SAFETY: `found` is alive (the dict holds it); own it before replacing.
    let old = unsafe { Borrowed::from_ptr(py, found) }.to_owned();
    dict.set_item(key, value)?;
    Ok(Some(old))
}

/// The expiry index; a registered order links back to it weakly.
pub type Slots = Mutex<Index<Py<WorkingOrder>>>;

pub struct Registry {
    /// trade_id -> WorkingOrder, in first-registration order.
    working: Py<PyDict>,
    slots: Arc<Slots>,
    /// Bumped by every mutation.
    generation: AtomicU64,
    observer: Mutex<Option<Py<PyAny>>>,
    /// Whether `observer` is set, readable without the lock.
    observed: AtomicBool,
}

impl Registry {
    pub fn new(py: Python<'_>) -> Self {
        Self {
            working: PyDict::new(py).unbind(),
            slots: Arc::default(),
            generation: AtomicU64::new(0),
            observer: Mutex::new(None),
            observed: AtomicBool::new(false),
        }
    }

    /// Start a mutation; returns the generation it runs in.
    fn bump(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn changed_since(&self, g: u64) -> bool {
        self.generation.load(Ordering::Relaxed) != g
    }

    /// `working.get(trade_id)`.
    pub fn get<'py>(&self, key: &Bound<'py, PyAny>) -> Conv<Option<Bound<'py, PyAny>>> {
        hashable("trade_id", key)?;
        guard("trade_id", key, self.working.bind(key.py()).get_item(key))
    }

    /// Working orders in first-registration order.
    pub fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.working.bind(py).values()
    }

    /// The first-registered working entry, if any.
    pub fn first_entry(&self, py: Python<'_>) -> Option<Py<WorkingOrder>> {
        lock(&self.slots).first_entry().map(|wo| wo.clone_ref(py))
    }

    pub fn has_entry(&self) -> bool {
        lock(&self.slots).has_entry()
    }

    /// Orders due at `now`, in first-registration order.
    pub fn due(&self, py: Python<'_>, now: f64) -> Vec<Py<WorkingOrder>> {
        let slots = lock(&self.slots);
        slots
            .due(now)
            .into_iter()
            .map(|w| w.clone_ref(py))
            .collect()
    }

    /// `working[trade_id] = wo`, keeping the place of a replaced order; then
    /// tell the observer.
    pub fn put(
        &self,
        method: &str,
        key: &Bound<'_, PyAny>,
        wo: &Bound<'_, WorkingOrder>,
        deadline: f64,
        enter: bool,
    ) -> PyResult<()> {
        let py = key.py();
        let g = self.bump();
        let dict = self.working.bind(py);
        let old = guard("trade_id", key, insert_or_replace(dict, key, wo))
            .map_err(|f| f.into_err(method))?;
        // A key's __eq__/__hash__ may have changed the registry meanwhile.
        let conflict = self.changed_since(g);
        let old = old.and_then(|o| o.cast_into::<WorkingOrder>().ok());
        let mut old_pos = match &old {
            Some(o) => o.try_borrow_mut()?.link.take().map(|l| l.pos),
            None => None,
        };
        if conflict {
            let orphans = self.prune(py);
            old_pos = old_pos.or_else(|| orphans.into_iter().min());
        }
        let (pos, displaced) = {
            let mut slots = lock(&self.slots);
            let pos = old_pos.unwrap_or_else(|| slots.new_pos());
            (pos, slots.insert(pos, wo.clone().unbind(), deadline, enter))
        };
        wo.try_borrow_mut()?.link = Some(Link {
            slots: Arc::downgrade(&self.slots),
            pos,
        });
        // Released here, not queued: a fastcall method runs unknown to PyO3.
        drop(displaced.map(|d| d.into_bound(py)));
        self.notify(py, intern!(py, "put"), key, wo)
    }

    /// Remove the order under `trade_id`; `removed` runs before the observer
    /// is told (a counter it bumps is recorded with the change).
    pub fn pop<'py>(
        &self,
        method: &str,
        key: &Bound<'py, PyAny>,
        removed: impl FnOnce(),
    ) -> PyResult<Option<Bound<'py, WorkingOrder>>> {
        let py = key.py();
        hashable("trade_id", key).map_err(|f| f.into_err(method))?;
        let dict = self.working.bind(py);
        let g = self.bump();
        // `dict.pop(key, None)` as a lookup and a delete: no method call.
        let found = guard("trade_id", key, dict.get_item(key)).map_err(|f| f.into_err(method))?;
        let found = match found {
            Some(wo) => match dict.del_item(key) {
                Ok(()) => Some(wo),
                // A key's __eq__ removed it meanwhile: that call reported it.
                Err(err) if err.is_instance_of::<PyKeyError>(py) => None,
                Err(err) => return Err(Fail::invalid("trade_id", key, &err).into_err(method)),
            },
            None => None,
        };
        if self.changed_since(g) {
            self.prune(py);
        }
        let Some(found) = found else {
            return Ok(None);
        };
        let wo = found.cast_into::<WorkingOrder>()?;
        let link = wo.try_borrow_mut()?.link.take();
        if let Some(link) = link {
            let dropped = lock(&self.slots).remove(link.pos);
            drop(dropped.map(|d| d.into_bound(py)));
        }
        removed();
        self.notify(py, intern!(py, "pop"), key, &wo)?;
        Ok(Some(wo))
    }

    /// Drop index entries whose order is no longer a value of the dict
    /// (identity only, no user code); returns their positions.
    fn prune(&self, py: Python<'_>) -> Vec<u64> {
        let live: HashSet<usize> = self
            .working
            .bind(py)
            .iter()
            .map(|(_, v)| v.as_ptr() as usize)
            .collect();
        let removed = lock(&self.slots).remove_where(|w| !live.contains(&(w.as_ptr() as usize)));
        let positions = removed.iter().map(|(p, _)| *p).collect();
        for (_, w) in removed {
            let w = w.into_bound(py);
            if let Ok(mut m) = w.try_borrow_mut() {
                m.link = None;
            }
            drop(w);
        }
        positions
    }

    /// Tell the observer, if any, of a change; no lock is held.
    fn notify<'py>(
        &self,
        py: Python<'py>,
        op: &Bound<'py, PyString>,
        trade_id: &Bound<'py, PyAny>,
        wo: &Bound<'py, WorkingOrder>,
    ) -> PyResult<()> {
        if !self.observed.load(Ordering::Acquire) {
            return Ok(());
        }
        let observer = lock(&self.observer).as_ref().map(|o| o.clone_ref(py));
        match observer {
            Some(o) => o.bind(py).call1((op, trade_id, wo)).map(drop),
            None => Ok(()),
        }
    }

    /// Install `fn(op, trade_id, wo)` (None removes it); returns the one it replaces.
    pub fn observe(&self, observer: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let new = if observer.is_none() {
            None
        } else if observer.is_callable() {
            Some(observer.clone().unbind())
        } else {
            return Err(PyTypeError::new_err(format!(
                "_observe_registry() got an invalid fn: {}",
                type_name(observer)
            )));
        };
        let mut slot = lock(&self.observer);
        self.observed.store(new.is_some(), Ordering::Release);
        Ok(std::mem::replace(&mut slot, new))
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.working)?;
        if let Ok(observer) = self.observer.try_lock() {
            if let Some(o) = observer.as_ref() {
                visit.call(o)?;
            }
        }
        if let Ok(slots) = self.slots.try_lock() {
            for wo in slots.items() {
                visit.call(wo)?;
            }
        }
        Ok(())
    }

    /// Empty the registry and drop the observer (drops happen unlocked).
    pub fn clear(&self, py: Python<'_>) {
        let slots = std::mem::take(&mut *lock(&self.slots));
        drop(slots);
        self.working.bind(py).clear();
        let observer = {
            let mut slot = lock(&self.observer);
            self.observed.store(false, Ordering::Release);
            slot.take()
        };
        drop(observer);
    }
}
