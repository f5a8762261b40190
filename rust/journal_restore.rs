//! Between the journal and the router: the sync mode and config an attach
//! writes, and the orders a restore registers again.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::journal::SyncMode;
use crate::plan::ExecutionPlan;
use crate::working::WorkingOrder;

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

/// One order of a journal read back (a `journal_format.Order` tuple), its
/// times moved by `now - clock_at - elapsed` seconds, elapsed by the boot
/// clock when `same_boot`, else by the wall clock (never negative). Returns
/// the trade id, the order, its deadline and whether it is an entry.
pub fn order<'py>(
    item: &Bound<'py, PyAny>,
    now: f64,
    wall_now: f64,
    boot_now: f64,
    same_boot: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, WorkingOrder>, f64, bool)> {
    let py = item.py();
    let bad =
        |what: &str| crate::errors::journal_error(py, &format!("journal has a bad order: {what}"));
    let t = item.cast::<PyTuple>().map_err(|_| bad("not a tuple"))?;
    if t.len() != 13 {
        return Err(bad("not 13 fields"));
    }
    let f = |i: usize| t.get_item(i);
    let (trade_id, asset) = (f(0)?, f(1)?);
    let side = f(2)?.cast_into::<PyString>().map_err(|_| bad("side"))?;
    let action = f(3)?.cast_into::<PyString>().map_err(|_| bad("action"))?;
    let plan = f(4)?.cast_into::<PyDict>().map_err(|_| bad("plan"))?;
    fn field<'py>(
        plan: &Bound<'py, PyDict>,
        k: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        plan.get_item(k)?.ok_or_else(|| {
            crate::errors::journal_error(plan.py(), &format!("journal has a bad order: {k}"))
        })
    }
    let get = |k: &Bound<'py, PyString>| field(&plan, k);
    let text = |k: &Bound<'py, PyString>| -> PyResult<Bound<'py, PyString>> {
        field(&plan, k)?
            .cast_into::<PyString>()
            .map_err(|_| bad(&k.to_string()))
    };
    let p = ExecutionPlan::from_journal(
        text(intern!(py, "order_type"))?,
        get(intern!(py, "limit_price"))?.extract()?,
        get(intern!(py, "post_only"))?.extract()?,
        get(intern!(py, "ttl_s"))?.extract()?,
        get(intern!(py, "is_maker"))?.extract()?,
        text(intern!(py, "action"))?,
        text(intern!(py, "reason"))?,
        get(intern!(py, "suppress"))?.extract()?,
        get(intern!(py, "metadata"))?
            .cast_into::<PyDict>()
            .map_err(|_| bad("metadata"))?,
    );
    let (submitted, deadline): (f64, f64) = (f(5)?.extract()?, f(6)?.extract()?);
    let (retries_left, retry_n): (i64, i64) = (f(7)?.extract()?, f(9)?.extract()?);
    let (clock_at, wall_at, boot_at): (f64, f64, f64) =
        (f(10)?.extract()?, f(11)?.extract()?, f(12)?.extract()?);
    let elapsed = if same_boot {
        boot_now - boot_at
    } else {
        wall_now - wall_at
    };
    let shift = now - clock_at - elapsed.max(0.0);
    let (submitted_at, deadline) = (submitted + shift, deadline + shift);
    if !(deadline.is_finite() && submitted_at.is_finite()) {
        return Err(bad("a time that is not finite"));
    }
    let enter = action.to_str().is_ok_and(|a| a == "ENTER");
    let wo = Bound::new(
        py,
        WorkingOrder {
            trade_id: trade_id.clone().unbind(),
            asset: asset.unbind(),
            side: side.unbind(),
            action: action.unbind(),
            plan: Py::new(py, p)?,
            submitted_at,
            deadline,
            retries_left,
            base_trade_id: f(8)?.unbind(),
            retry_n,
            link: None,
            journal: None,
        },
    )?;
    Ok((trade_id, wo, deadline, enter))
}
