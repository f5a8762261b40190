//! The working-order registry: the `trade_id -> WorkingOrder` dict, the
//! expiry index beside it (with the working-entry set), the generation
//! counter that detects a change nested in a key's `__eq__`/`__hash__`, the
//! journal, and the observer told of every change. `put` and `pop` are the
//! only ways in and out: each appends its record to the journal (if one is
//! attached) before the change, with no Python between the two, then tells
//! the observer.

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
use crate::counters::{Cells, Counter};
use crate::errors::journal_error;
use crate::index::Index;
use crate::journal::{JournalFault, Mark, Writer};
use crate::journal_format::{self as fmt, Kind};
use crate::journal_restore::{Place, Restored};
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
    /// The router's counters, recorded with each change.
    cells: Arc<Cells>,
    journal: Mutex<Option<Box<Writer>>>,
    /// Whether `journal` is set, readable without the lock.
    journaled: AtomicBool,
    /// Tests only: `fn() -> (wall, boot)` instead of the system clocks.
    times_fn: Mutex<Option<Py<PyAny>>>,
    /// Whether `times_fn` is set, readable without the lock.
    timed: AtomicBool,
}

/// An append ahead of a change: what to take back if the change fails.
struct Appended {
    mark: Mark,
    /// Bytes the live size changed by.
    live: isize,
    /// Whether the log has grown past the compaction threshold.
    due: bool,
}

fn fault(py: Python<'_>, f: JournalFault) -> PyErr {
    journal_error(py, &f.0)
}

impl Registry {
    pub fn new(py: Python<'_>, cells: Arc<Cells>) -> Self {
        Self {
            working: PyDict::new(py).unbind(),
            slots: Arc::default(),
            generation: AtomicU64::new(0),
            observer: Mutex::new(None),
            observed: AtomicBool::new(false),
            cells,
            journal: Mutex::new(None),
            journaled: AtomicBool::new(false),
            times_fn: Mutex::new(None),
            timed: AtomicBool::new(false),
        }
    }

    /// (wall, boot) now: the system clocks, or the tests' `times_fn` (called
    /// before any append; the writer keeps the reading for its snapshots).
    fn read_times(&self, py: Python<'_>) -> PyResult<(f64, f64)> {
        if let Some(t) = self.call_times_fn(py)? {
            return Ok(t);
        }
        Ok(match lock(&self.journal).as_ref() {
            Some(w) => w.times(),
            None => crate::journal::now(None),
        })
    }

    /// Tests: the reading of `times_fn` (Python, so called with no lock
    /// held), kept by the writer; None without one.
    fn call_times_fn(&self, py: Python<'_>) -> PyResult<Option<(f64, f64)>> {
        if !self.timed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let f = lock(&self.times_fn).as_ref().map(|f| f.clone_ref(py));
        let Some(f) = f else { return Ok(None) };
        let t: (f64, f64) = f.bind(py).call0()?.extract()?;
        if let Some(w) = lock(&self.journal).as_mut() {
            w.fix_times(t);
        }
        Ok(Some(t))
    }

    // ── journal ──────────────────────────────────────────────────────────

    pub fn journaled(&self) -> bool {
        self.journaled.load(Ordering::Acquire)
    }

    /// Encode and append the PUT of `wo` (registered at clock reading `now`).
    /// All Python (type checks, the tests' clocks) runs here, before the
    /// append; the journal is locked once, to read the clocks, append,
    /// account the live size and see whether a compaction is due.
    fn journal_put(
        &self,
        method: &str,
        key: &Bound<'_, PyAny>,
        wo: &Bound<'_, WorkingOrder>,
        now: f64,
    ) -> PyResult<Option<Appended>> {
        let py = wo.py();
        let fixed = self.call_times_fn(py)?;
        fmt::with_scratch(|buf, bodies| {
            // One borrow of the (new) order for the encoding and its body.
            let mut w = wo
                .try_borrow_mut()
                .map_err(|_| fmt::being_changed().into_err(method))?;
            // The key is checked too (the order's body holds it when it is
            // the order's trade id): a key the journal can write hashes and
            // compares without Python code.
            if !w.trade_id.is(key) {
                fmt::value(buf, key, "trade_id", 0).map_err(|r| r.into_err(method))?;
                buf.truncate(fmt::ROOM);
            }
            fmt::order_body_head(buf, py, &w, now).map_err(|r| r.into_err(method))?;
            let counts = fmt::counts(&self.cells);
            let added = fmt::frame_len(buf.len() + 16 - fmt::ROOM);
            let done = {
                let mut slot = lock(&self.journal);
                let Some(j) = slot.as_mut() else {
                    return Ok(None);
                };
                let (wall, boot) = fixed.unwrap_or_else(|| j.record_times());
                buf.extend_from_slice(&wall.to_le_bytes());
                buf.extend_from_slice(&boot.to_le_bytes());
                j.append_sealed(Kind::Put, &counts, buf).map(|mark| {
                    j.live += added;
                    Appended {
                        mark,
                        live: added as isize,
                        due: j.wants_compaction() || j.compaction_ready(),
                    }
                })
            };
            // The error is made with the journal unlocked (it imports Python).
            let done = match done {
                Ok(done) => done,
                Err(f) => {
                    drop(w);
                    return Err(fault(py, f));
                }
            };
            let old = w
                .journal
                .replace(bodies.boxed(buf.get(fmt::ROOM..).unwrap_or(&[])));
            drop(w);
            if let Some(old) = old {
                bodies.recycle(old);
            }
            Ok(Some(done))
        })
    }

    /// Take back an append whose change failed.
    fn undo(&self, appended: Option<Appended>) {
        if let (Some(a), Some(w)) = (appended, lock(&self.journal).as_mut()) {
            w.undo(a.mark);
            w.live = w.live.saturating_add_signed(-a.live);
        }
    }

    /// After a journaled change: account the live size, switch to a finished
    /// compaction, start one if due. No change runs inside another's window
    /// (journaled keys compare without Python), so none is half made here.
    fn after_change(&self, py: Python<'_>, added: usize, removed: usize) {
        let due = match lock(&self.journal).as_mut() {
            Some(w) => {
                w.live = (w.live + added).saturating_sub(removed);
                if !w.forked() {
                    w.settle(false);
                    if w.wants_compaction() && w.compacting() {
                        // The log outgrew the next threshold before the
                        // compaction finished: wait for it (as the pure
                        // backend would compact again here).
                        w.settle(true);
                    }
                    w.wants_compaction()
                } else {
                    false
                }
            }
            None => false,
        };
        if due {
            let bodies = self.bodies(py);
            let counts = fmt::counts(&self.cells);
            if let Some(w) = lock(&self.journal).as_mut() {
                if let Err(f) = w.compact(&counts, bodies) {
                    w.compaction_failed(f);
                }
            }
        }
    }

    /// The journal bodies of the registered orders, in order (shared, not copied).
    fn bodies(&self, py: Python<'_>) -> Vec<Arc<[u8]>> {
        let dict = self.working.bind(py);
        let mut out = Vec::with_capacity(dict.len());
        let (mut pos, mut key, mut value) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        // Borrowed references, no refcount traffic (a key's object is never
        // touched): nothing here calls Python or changes the dict.
        // SAFETY: a dict iterated under the GIL, its items borrowed only while it holds them.
        while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
            // SAFETY: `value` is a live object the dict holds.
            let v = unsafe { Borrowed::from_ptr(py, value) };
            if let Ok(wo) = v.cast::<WorkingOrder>() {
                if let Ok(w) = wo.try_borrow() {
                    if let Some(b) = &w.journal {
                        out.push(b.clone());
                    }
                }
            }
        }
        out
    }

    /// Wait for a pending compaction (with `wait`) and switch to its file;
    /// whether one was pending.
    pub fn settle(&self, wait: bool) -> bool {
        lock(&self.journal).as_mut().is_some_and(|w| w.settle(wait))
    }

    /// Attach a journal: encode every registered order (at clock reading
    /// `now`), write the snapshot file, then journal every change.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &self,
        py: Python<'_>,
        fd: i32,
        path: std::path::PathBuf,
        mode: crate::journal::SyncMode,
        file_id: [u8; 16],
        times_fn: Option<Bound<'_, PyAny>>,
        config: Vec<u8>,
        now: f64,
        floor: usize,
    ) -> PyResult<()> {
        let close = || {
            // SAFETY: the descriptor was handed over to us.
            unsafe { libc::close(fd) };
        };
        if self.journaled() {
            close();
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "Journal.attach(): the router already has a journal attached",
            ));
        }
        let old = {
            let mut slot = lock(&self.times_fn);
            self.timed.store(times_fn.is_some(), Ordering::Release);
            std::mem::replace(&mut *slot, times_fn.map(Bound::unbind))
        };
        drop(old);
        let (wall, boot) = match self.read_times(py) {
            Ok(t) => t,
            Err(e) => {
                close();
                return Err(e);
            }
        };
        let fixed_times = lock(&self.times_fn).as_ref().map(|_| (wall, boot));
        let mut bodies = Vec::new();
        let mut orders = Vec::new();
        let encoded = (|| -> PyResult<()> {
            for (key, v) in self.working.bind(py).iter() {
                let wo = v.cast_into::<WorkingOrder>()?;
                fmt::pop_body(&key).map_err(|r| r.into_err("attach"))?;
                bodies
                    .push(fmt::order_body(&wo, now, wall, boot).map_err(|r| r.into_err("attach"))?);
                orders.push(wo);
            }
            Ok(())
        })();
        if let Err(e) = encoded {
            close();
            return Err(e);
        }
        let counts = fmt::counts(&self.cells);
        let bodies: Vec<Arc<[u8]>> = bodies.into_iter().map(Arc::from).collect();
        let writer = crate::journal::Writer::create(
            fd,
            path,
            mode,
            file_id,
            fixed_times,
            config,
            &counts,
            bodies.clone(),
            floor,
        )
        .map_err(|f| fault(py, f))?;
        for (wo, body) in orders.iter().zip(bodies) {
            if let Ok(mut w) = wo.try_borrow_mut() {
                w.journal = Some(body);
            }
        }
        let old = {
            let mut slot = lock(&self.journal);
            self.journaled.store(true, Ordering::Release);
            slot.replace(Box::new(writer))
        };
        drop(old);
        Ok(())
    }

    /// Rewrite the journal from the orders' current fields (in-place edits).
    pub fn resnapshot(&self, py: Python<'_>, config: Option<Vec<u8>>, now: f64) -> PyResult<()> {
        if !self.journaled() {
            return Err(journal_error(py, "no journal attached"));
        }
        let times = self.read_times(py)?;
        let mut bodies = Vec::new();
        let mut orders = Vec::new();
        for v in self.working.bind(py).values().iter() {
            let wo = v.cast_into::<WorkingOrder>()?;
            bodies
                .push(fmt::order_body(&wo, now, times.0, times.1).map_err(|r| r.into_err("sync"))?);
            orders.push(wo);
        }
        let counts = fmt::counts(&self.cells);
        let bodies: Vec<Arc<[u8]>> = bodies.into_iter().map(Arc::from).collect();
        // The error is made with the journal unlocked (it imports Python).
        let done = match lock(&self.journal).as_mut() {
            Some(w) => {
                if let Some(c) = config {
                    w.set_config(c);
                }
                w.rewrite(&counts, bodies.clone())
            }
            None => Ok(()),
        };
        done.map_err(|f| fault(py, f))?;
        for (wo, body) in orders.iter().zip(bodies) {
            if let Ok(mut w) = wo.try_borrow_mut() {
                w.journal = Some(body);
            }
        }
        Ok(())
    }

    /// Append a CONFIG record ahead of a config change.
    pub fn journal_config(&self, py: Python<'_>, config: Vec<u8>) -> PyResult<()> {
        let counts = fmt::counts(&self.cells);
        // The error is made with the journal unlocked (it imports Python).
        let done = match lock(&self.journal).as_mut() {
            Some(w) => w
                .append(Kind::Config, &counts, &config)
                .map(|_| w.set_config(config)),
            None => Ok(()),
        };
        done.map_err(|f| fault(py, f))
    }

    /// Detach the journal: sync it (power and group modes) and close the file.
    pub fn detach(&self) -> bool {
        let times_fn = {
            let mut slot = lock(&self.times_fn);
            self.timed.store(false, Ordering::Release);
            slot.take()
        };
        drop(times_fn);
        let old = {
            let mut slot = lock(&self.journal);
            self.journaled.store(false, Ordering::Release);
            slot.take()
        };
        let had = old.is_some();
        drop(old);
        had
    }

    /// Run `f` on the attached writer.
    pub fn with_journal<T>(&self, f: impl FnOnce(&mut Writer) -> T) -> Option<T> {
        lock(&self.journal).as_mut().map(|w| f(w))
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
    /// tell the observer. With a journal, the PUT record is appended first.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        method: &str,
        key: &Bound<'_, PyAny>,
        wo: &Bound<'_, WorkingOrder>,
        deadline: f64,
        enter: bool,
        now: f64,
    ) -> PyResult<()> {
        let py = key.py();
        let appended = if self.journaled() {
            self.journal_put(method, key, wo, now)?
        } else {
            None
        };
        let due = appended.as_ref().map(|a| a.due);
        let g = self.bump();
        let dict = self.working.bind(py);
        let old = match guard("trade_id", key, insert_or_replace(dict, key, wo)) {
            Ok(old) => old,
            Err(f) => {
                self.undo(appended);
                return Err(f.into_err(method));
            }
        };
        // A key's __eq__/__hash__ may have changed the registry meanwhile.
        let conflict = self.changed_since(g);
        let old = old.and_then(|o| o.cast_into::<WorkingOrder>().ok());
        let mut old_len = 0;
        let mut old_pos = match &old {
            Some(o) => {
                let mut o = o.try_borrow_mut()?;
                old_len = o.journal.take().map_or(0, |b| {
                    let n = fmt::frame_len(b.len());
                    fmt::recycle(b);
                    n
                });
                o.link.take().map(|l| l.pos)
            }
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
        // The live size grew by the new body with the append; a replaced
        // body, or a compaction now due, needs the journal again.
        if due.is_some_and(|due| due || old_len > 0) {
            self.after_change(py, 0, old_len);
        }
        self.notify(py, intern!(py, "put"), key, wo)
    }

    /// Where a restore may put its orders at once: the index and its next
    /// position, when the registry is empty, unjournaled and unobserved.
    pub fn bulk_place(&self, py: Python<'_>) -> Option<Place> {
        if self.journaled()
            || self.observed.load(Ordering::Acquire)
            || !self.working.bind(py).is_empty()
        {
            return None;
        }
        let slots = lock(&self.slots);
        slots
            .is_empty()
            .then(|| (Arc::downgrade(&self.slots), slots.next_pos()))
    }

    /// Register restored orders at once, linked by `prepare` to positions
    /// from `first` (`bulk_place`): the dict merged from `source`, the
    /// journal's own (else filled from the orders' ids), the index in one pass.
    pub fn restore_bulk(
        &self,
        py: Python<'_>,
        source: Option<&Bound<'_, PyDict>>,
        orders: Vec<Restored<'_>>,
        first: u64,
    ) -> PyResult<usize> {
        let n = orders.len();
        let dict = self.working.bind(py);
        self.bump();
        let filled = match source {
            // SAFETY: two live dicts; -1 with an exception set on failure.
            Some(src) if src.len() == n => {
                if unsafe { ffi::PyDict_Update(dict.as_ptr(), src.as_ptr()) } < 0 {
                    Err(PyErr::fetch(py))
                } else {
                    Ok(())
                }
            }
            _ => orders.iter().try_for_each(|o| match &o.trade_id {
                Some(key) => dict.set_item(key, o.wo.bind(py)),
                None => Err(journal_error(py, "journal has a bad order: no trade id")),
            }),
        }
        .and_then(|()| {
            if dict.len() == n {
                Ok(())
            } else {
                Err(journal_error(
                    py,
                    "journal has a bad order: a duplicate trade id",
                ))
            }
        });
        if let Err(err) = filled {
            dict.clear();
            return Err(err);
        }
        let (positions, displaced) =
            lock(&self.slots).extend(orders.into_iter().map(|o| (o.wo, o.deadline, o.enter)));
        // Released here, unlocked.
        drop(displaced);
        if positions.first().is_some_and(|p| *p != first) {
            // Not where `prepare` linked them (never: nothing ran between).
            for (wo, pos) in dict.values().iter().zip(positions) {
                if let Ok(wo) = wo.cast_into::<WorkingOrder>() {
                    wo.try_borrow_mut()?.link = Some(Link {
                        slots: Arc::downgrade(&self.slots),
                        pos,
                    });
                }
            }
        }
        Ok(n)
    }

    /// Register restored orders one by one (`put`), in order.
    pub fn restore_each(
        &self,
        py: Python<'_>,
        orders: Vec<Restored<'_>>,
        now: f64,
    ) -> PyResult<usize> {
        let n = orders.len();
        for o in orders {
            let wo = o.wo.into_bound(py);
            let Some(key) = o.trade_id else {
                return Err(journal_error(py, "journal has a bad order: no trade id"));
            };
            self.put("restore", &key, &wo, o.deadline, o.enter, now)?;
        }
        Ok(n)
    }

    /// Remove the order under `trade_id` and bump `counter` (recorded with
    /// the change), then tell the observer.
    pub fn pop<'py>(
        &self,
        method: &str,
        key: &Bound<'py, PyAny>,
        counter: Option<Counter>,
    ) -> PyResult<Option<Bound<'py, WorkingOrder>>> {
        let py = key.py();
        hashable("trade_id", key).map_err(|f| f.into_err(method))?;
        if self.journaled() {
            return self.journaled_pop(method, key, counter);
        }
        let removed = || {
            if let Some(c) = counter {
                self.cells.inc(c);
            }
        };
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

    /// `pop` with a journal: the POP record goes first. An id the journal
    /// cannot write was never registered under it: nothing to remove.
    fn journaled_pop<'py>(
        &self,
        method: &str,
        key: &Bound<'py, PyAny>,
        counter: Option<Counter>,
    ) -> PyResult<Option<Bound<'py, WorkingOrder>>> {
        let py = key.py();
        let dict = self.working.bind(py);
        let popped = fmt::with_scratch(|buf, bodies| {
            if fmt::value(buf, key, "trade_id", 0).is_err() {
                return Ok(None);
            }
            let found =
                guard("trade_id", key, dict.get_item(key)).map_err(|f| f.into_err(method))?;
            let Some(found) = found else {
                return Ok(None);
            };
            let wo = found.cast_into::<WorkingOrder>()?;
            // One borrow of the order, from its body's size to its unlinking.
            let w = wo.try_borrow_mut().ok();
            let removed = w
                .as_ref()
                .and_then(|w| w.journal.as_ref())
                .map_or(0, |b| fmt::frame_len(b.len()));
            let mut counts = fmt::counts(&self.cells);
            if let Some(slot) = counter.and_then(|c| counts.get_mut(c as usize)) {
                *slot = slot.saturating_add(1);
            }
            let done = lock(&self.journal).as_mut().map(|j| {
                j.append_sealed(Kind::Pop, &counts, buf).map(|mark| {
                    j.live = j.live.saturating_sub(removed);
                    Appended {
                        mark,
                        live: -(removed as isize),
                        due: j.wants_compaction() || j.compaction_ready(),
                    }
                })
            });
            // The error is made with the journal unlocked (it imports Python).
            let appended = done.transpose().map_err(|f| fault(py, f))?;
            let due = appended.as_ref().is_some_and(|a| a.due);
            self.bump();
            if let Err(err) = dict.del_item(key) {
                drop(w);
                self.undo(appended);
                return Err(Fail::invalid("trade_id", key, &err).into_err(method));
            }
            let link = w.and_then(|mut w| {
                if let Some(b) = w.journal.take() {
                    bodies.recycle(b);
                }
                w.link.take()
            });
            PyResult::Ok(Some((wo, link, due)))
        })?;
        let Some((wo, link, due)) = popped else {
            return Ok(None);
        };
        if let Some(link) = link {
            let dropped = lock(&self.slots).remove(link.pos);
            drop(dropped.map(|d| d.into_bound(py)));
        }
        if let Some(c) = counter {
            self.cells.inc(c);
        }
        if due {
            self.after_change(py, 0, 0);
        }
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
        if let Ok(f) = self.times_fn.try_lock() {
            if let Some(f) = f.as_ref() {
                visit.call(f)?;
            }
        }
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

    /// Empty the registry and drop the observer and the journal (drops happen unlocked).
    pub fn clear(&self, py: Python<'_>) {
        self.detach();
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
