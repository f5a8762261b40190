//! Plan reasons built from an exit reason: `taker_exit:<reason>` and
//! `escalate:<reason>`. For each known exit reason the string is built once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use crate::convert::{concat, text, Conv};

/// The exit reasons a runtime sends (legacy's list, and the common stop).
const KNOWN: [&str; 6] = [
    "TAKE_PROFIT",
    "STOP_LOSS",
    "CATASTROPHIC_LOSS",
    "MAX_HOLD",
    "MEAN_REVERSION",
    "TRAILING_STOP",
];

/// Per known reason: (the reason, `taker_exit:` + it, `escalate:` + it).
type Row = (Py<PyString>, Py<PyString>, Py<PyString>);
type Table = Vec<Row>;

static TABLE: PyOnceLock<Table> = PyOnceLock::new();

fn table(py: Python<'_>) -> &Table {
    TABLE.get_or_init(py, || {
        KNOWN
            .iter()
            .map(|r| {
                (
                    PyString::intern(py, r).unbind(),
                    PyString::intern(py, &format!("taker_exit:{r}")).unbind(),
                    PyString::intern(py, &format!("escalate:{r}")).unbind(),
                )
            })
            .collect()
    })
}

/// The row of a known reason: by identity (an interned literal) first.
fn known<'a>(reason: &Bound<'_, PyAny>, rows: &'a Table) -> Option<&'a Row> {
    if let Some(row) = rows.iter().find(|row| row.0.as_ptr() == reason.as_ptr()) {
        return Some(row);
    }
    let s = reason.cast_exact::<PyString>().ok()?.to_str().ok()?;
    rows.iter()
        .zip(KNOWN)
        .find(|(_, k)| *k == s)
        .map(|(row, _)| row)
}

/// `f"taker_exit:{reason}"`.
pub fn taker_exit<'py>(reason: &Bound<'py, PyAny>) -> Conv<Bound<'py, PyString>> {
    let py = reason.py();
    if let Some(row) = known(reason, table(py)) {
        return Ok(row.1.bind(py).clone());
    }
    Ok(concat("taker_exit:", &text("reason", reason)?, "")?)
}

/// `f"escalate:{reason}"`.
pub fn escalate<'py>(reason: &Bound<'py, PyAny>) -> Conv<Bound<'py, PyString>> {
    let py = reason.py();
    if let Some(row) = known(reason, table(py)) {
        return Ok(row.2.bind(py).clone());
    }
    Ok(concat("escalate:", &text("reason", reason)?, "")?)
}
