//! Between the journal and the router: the sync mode and config an attach
//! writes, and the orders a restore registers again: built as working
//! orders while the journal is read ([`Image`]), their times moved to the
//! new router's clock ([`prepare`]), then put in its registry at once.

use std::sync::Weak;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::errors::journal_error;
use crate::journal::SyncMode;
use crate::journal_read::{Put, Sink, Where};
use crate::plan::{Action, ExecutionPlan};
use crate::registry::Slots;
use crate::working::{Link, WorkingOrder};

/// The journal's sync mode from `Journal(sync=..., group_ms=...)`.
pub fn sync_mode(sync: &str, group_ms: Option<f64>) -> PyResult<SyncMode> {
    match (sync, group_ms) {
        ("process", None) => Ok(SyncMode::Process),
        ("power", None) => Ok(SyncMode::Power),
        ("power", Some(ms)) if ms.is_finite() && ms > 0.0 && ms < 3.6e6 => Ok(SyncMode::Group(
            std::time::Duration::from_secs_f64(ms / 1000.0),
        )),
        _ => Err(PyValueError::new_err(format!(
            "Journal() got an invalid sync/group_ms: {sync:?}, {group_ms:?}"
        ))),
    }
}

static CONFIG_FIELDS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A config as the journal writes it: its `ExecConfig` fields, encoded.
pub fn journal_config(config: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let py = config.py();
    let fields = CONFIG_FIELDS
        .import(py, "exec_router.journal_format", "config_fields")?
        .call1((config,))?;
    let mut out = Vec::new();
    crate::journal_format::value(&mut out, &fields, "config", 0)
        .map_err(|r| r.into_err("config"))?;
    Ok(out)
}

/// When an order was written: (router clock, wall clock, boot clock).
type Written = [f64; 3];

/// The clock readings of a read-back journal's orders, in the order their
/// PUTs were read. Until the orders are registered, each one's `link`
/// holds its place here, its index reference dangling (no index has it).
/// Rust data only, so no GC support is needed.
#[pyclass(module = "exec_router._core", name = "_RestoreTimes", frozen)]
pub struct RestoreTimes {
    written: Vec<Written>,
    /// Whether an order replaced one under an equal key: the dict then
    /// holds the first key, the registry must hold the order's own.
    rekeyed: bool,
}

impl RestoreTimes {
    pub fn rekeyed(&self) -> bool {
        self.rekeyed
    }
}

/// The sink of a restore: trade id -> `WorkingOrder` (times as written),
/// with dict semantics for the ids (a later put of an equal key replaces in
/// place; 1 == 1.0 == True).
pub struct Image<'py> {
    orders: Bound<'py, PyDict>,
    times: RestoreTimes,
}

impl<'py> Image<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Self {
            orders: PyDict::new(py),
            times: RestoreTimes {
                written: Vec::new(),
                rekeyed: false,
            },
        }
    }

    pub fn finish(
        self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, RestoreTimes>)> {
        Ok((self.orders, Bound::new(py, self.times)?))
    }
}

impl<'py> Sink<'py> for Image<'py> {
    fn clear(&mut self) {
        self.orders.clear();
        self.times.written.clear();
        self.times.rekeyed = false;
    }

    fn put(&mut self, o: Put<'py>, at: &Where<'_>) -> PyResult<()> {
        let py = self.orders.py();
        let plan = ExecutionPlan::from_journal(
            o.order_type,
            o.limit_price,
            o.post_only,
            o.ttl_s,
            o.is_maker,
            o.plan_action,
            o.reason,
            o.suppress,
            o.metadata,
        );
        let place = Link {
            slots: Weak::new(),
            pos: self.times.written.len() as u64,
        };
        let wo = Bound::new(
            py,
            WorkingOrder {
                trade_id: o.trade_id.clone().unbind(),
                asset: o.asset.unbind(),
                side: o.side.unbind(),
                action: o.action.unbind(),
                plan: Py::new(py, plan)?,
                submitted_at: o.submitted_at,
                deadline: o.deadline,
                retries_left: o.retries_left,
                base_trade_id: o.base_trade_id.unbind(),
                retry_n: o.retry_n,
                link: Some(place),
                journal: None,
            },
        )?;
        // SAFETY: live objects; the result is borrowed from the dict (or
        // NULL with an exception set). A journal's keys hash and compare
        // without Python code.
        let found = unsafe {
            ffi::PyDict_SetDefault(self.orders.as_ptr(), o.trade_id.as_ptr(), wo.as_ptr())
        };
        if found.is_null() {
            drop(PyErr::fetch(py));
            return Err(journal_error(py, &format!("{at}: an unhashable trade id")));
        }
        if found != wo.as_ptr() {
            self.times.rekeyed = true;
            self.orders.set_item(&o.trade_id, &wo)?;
        }
        self.times.written.push([o.clock_at, o.wall_at, o.boot_at]);
        Ok(())
    }

    fn pop(&mut self, key: Bound<'py, PyAny>, at: &Where<'_>) -> PyResult<()> {
        crate::journal_read::pop_from(&self.orders, key, at)
    }
}

/// A restored order, ready for the registry: the order, its deadline,
/// whether an entry, and its trade id when asked for.
pub struct Restored<'py> {
    pub wo: Py<WorkingOrder>,
    pub deadline: f64,
    pub enter: bool,
    pub trade_id: Option<Bound<'py, PyAny>>,
}

/// Where a bulk restore puts its orders: the registry's index and the
/// first position it hands out.
pub type Place = (Weak<Slots>, u64);

/// `orders` (from `_journal_read(..., working=True)`) with their times moved
/// by `now - clock_at - elapsed` seconds, elapsed by the boot clock when
/// `same_boot`, else by the wall clock (never negative); in order. With
/// `place`, each order is linked to its position there (the index is
/// filled next, with no Python between); otherwise it is left unlinked.
#[allow(clippy::too_many_arguments)]
pub fn prepare<'py>(
    orders: &Bound<'py, PyDict>,
    times: &RestoreTimes,
    now: f64,
    wall_now: f64,
    boot_now: f64,
    same_boot: bool,
    place: Option<&Place>,
    with_ids: bool,
) -> PyResult<Vec<Restored<'py>>> {
    let py = orders.py();
    let bad =
        |what: &str| crate::errors::journal_error(py, &format!("journal has a bad order: {what}"));
    let mut out = Vec::with_capacity(orders.len());
    for (i, (_, value)) in orders.iter().enumerate() {
        let wo = value
            .cast_into::<WorkingOrder>()
            .map_err(|_| bad("not a WorkingOrder"))?;
        let mut w = wo.try_borrow_mut()?;
        let written = w
            .link
            .as_ref()
            .filter(|l| l.slots.strong_count() == 0)
            .and_then(|l| usize::try_from(l.pos).ok())
            .and_then(|at| times.written.get(at));
        let Some(&[clock_at, wall_at, boot_at]) = written else {
            return Err(bad("not read from this journal"));
        };
        let elapsed = if same_boot {
            boot_now - boot_at
        } else {
            wall_now - wall_at
        };
        let shift = now - clock_at - elapsed.max(0.0);
        let (submitted_at, deadline) = (w.submitted_at + shift, w.deadline + shift);
        if !(deadline.is_finite() && submitted_at.is_finite()) {
            return Err(bad("a time that is not finite"));
        }
        w.submitted_at = submitted_at;
        w.deadline = deadline;
        w.link = place.map(|(slots, first)| Link {
            slots: slots.clone(),
            pos: first + i as u64,
        });
        let enter = Action::is_named(w.action.bind(py), Action::Enter);
        let trade_id = with_ids.then(|| w.trade_id.clone_ref(py).into_bound(py));
        drop(w);
        out.push(Restored {
            wo: wo.unbind(),
            deadline,
            enter,
            trade_id,
        });
    }
    Ok(out)
}
