//! Rust core of `exec_router`: planning, maker pricing, tick lookups, the
//! working-order registry with its expiry index, and the counters. The
//! Python package re-exports it from `exec_router/__init__.py`.

// `!(x > 0.0)` is deliberate throughout: it is true for NaN, as in Python.
#![allow(clippy::neg_cmp_op_on_partial_ord)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

mod capture;
mod clock;
mod convert;
mod counters;
mod csv_columns;
mod dataclass;
mod depth;
mod errors;
mod fastcall;
mod hooks;
pub mod index;
mod journal;
mod journal_format;
mod journal_read;
mod journal_restore;
mod plan;
mod policy;
pub mod pricing;
mod reasons;
mod registry;
mod router;
mod sync;
mod working;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// CRC-32C (Castagnoli) of `data`: the journal's frame checksum.
#[pyfunction]
fn _crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Tests only: fail the journal's system calls that `points` selects (1:
/// fallocate, 2: opening a compaction's file, 4: msync/fsync) with `errno`;
/// `errno` 0 clears it.
#[pyfunction]
fn _journal_faults(points: u32, errno: i32) {
    journal::faults::set(points, errno);
}

#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<plan::ExecutionPlan>()?;
    m.add_class::<working::WorkingOrder>()?;
    m.add_class::<router::ExecutionRouter>()?;
    fastcall::install_router_methods(&m.py().get_type::<router::ExecutionRouter>())?;
    m.add_class::<hooks::HookHandle>()?;
    m.add_class::<counters::Counters>()?;
    m.add_class::<journal_restore::RestoreTimes>()?;
    m.add_function(wrap_pyfunction!(capture::parse_capture, m)?)?;
    m.add_function(wrap_pyfunction!(_crc32c, m)?)?;
    m.add_function(wrap_pyfunction!(journal_read::_journal_read, m)?)?;
    m.add_function(wrap_pyfunction!(_journal_faults, m)?)?;
    m.add_function(wrap_pyfunction!(csv_columns::csv_columns, m)?)?;
    // A MutableMapping for isinstance checks and the ABC's users (`dict(c)`, `json.dumps`).
    m.py()
        .import("collections.abc")?
        .getattr("MutableMapping")?
        .call_method1("register", (m.getattr("Counters")?,))?;
    // The facts both backends share; tests check them against constants.py
    // and reference.py.
    let py = m.py();
    m.add("MAX_DEPTH", depth::MAX_DEPTH)?;
    m.add("COUNTER_KEYS", PyTuple::new(py, counters::KEYS)?)?;
    m.add("HOOK_STAGES", PyTuple::new(py, hooks::STAGES)?)?;
    m.add("PLAN_FIELDS", plan::fields_with_defaults(py)?)?;
    Ok(())
}
