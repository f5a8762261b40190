//! How deeply calls into the router nest in one thread. Python's recursion
//! limit does not protect the native stack, so every call that can run user
//! code counts itself here; past [`MAX_DEPTH`] it is refused.

use std::cell::Cell;

use pyo3::exceptions::PyRecursionError;
use pyo3::PyErr;

/// The deepest nesting of router calls in one thread (same on both backends).
pub const MAX_DEPTH: u32 = 64;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One level of nesting, given back when dropped. It keeps the address of
/// its thread's counter (one thread-local lookup per call, not two), which
/// also makes it neither `Send` nor `Sync`.
pub struct Depth {
    outer: u32,
    cell: *const Cell<u32>,
}

impl Depth {
    /// Enter a call; past [`MAX_DEPTH`], a `RecursionError` naming `method`.
    #[inline]
    pub fn enter(method: &str) -> Result<Depth, PyErr> {
        match Self::enter_any() {
            (depth, true) => Ok(depth),
            (depth, false) => {
                drop(depth);
                Err(too_deep(method))
            }
        }
    }

    /// Enter a call whatever the depth (a planning call answers MARKET past
    /// the limit); the flag says whether it is within [`MAX_DEPTH`].
    #[inline]
    pub fn enter_any() -> (Depth, bool) {
        let (outer, cell) = DEPTH.with(|d| {
            let outer = d.get();
            d.set(outer.saturating_add(1));
            (outer, d as *const Cell<u32>)
        });
        (Depth { outer, cell }, outer < MAX_DEPTH)
    }

    /// The depth this call was entered at (0 for the outermost).
    pub fn outer(&self) -> u32 {
        self.outer
    }
}

impl Drop for Depth {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard never leaves the thread whose counter `cell`
        // is, and is dropped within the call that made it: the counter
        // (a `const` thread-local without a destructor) is alive.
        unsafe { (*self.cell).set(self.outer) };
    }
}

pub fn too_deep(method: &str) -> PyErr {
    PyRecursionError::new_err(format!(
        "{method}() nested deeper than {MAX_DEPTH} router calls"
    ))
}
