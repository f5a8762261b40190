//! Hooks: the stages, the copy-on-write hook table, dispatch, the context a
//! hook receives and the `HookHandle` that unregisters one. Dispatch takes a
//! snapshot of a stage's list under the lock, drops the lock, then calls.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::{intern, PyTraverseError};

use crate::counters::{Cells, Counter};
use crate::depth::Depth;
use crate::plan::{Action, ExecutionPlan};
use crate::router::ExecutionRouter;
use crate::sync::lock;

/// The stage names, in order; `_core.HOOK_STAGES`.
pub const STAGES: [&str; Stage::OnCancel as usize + 1] = [
    "pre_plan",
    "pre_submit",
    "on_working",
    "on_fill",
    "on_miss",
    "on_escalate",
    "on_cancel",
];

// One bit per stage in `Hooks::mask`.
const _: () = assert!(STAGES.len() <= 8);

/// A stage, by its position in [`STAGES`] (the last one sets the length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    PrePlan = 0,
    PreSubmit,
    OnWorking,
    OnFill,
    OnMiss,
    OnEscalate,
    OnCancel,
}

impl Stage {
    const ALL: [Stage; STAGES.len()] = [
        Stage::PrePlan,
        Stage::PreSubmit,
        Stage::OnWorking,
        Stage::OnFill,
        Stage::OnMiss,
        Stage::OnEscalate,
        Stage::OnCancel,
    ];

    pub fn name(self) -> &'static str {
        STAGES.get(self as usize).copied().unwrap_or("?")
    }

    pub fn parse(name: &str) -> Option<Stage> {
        let i = STAGES.iter().position(|s| *s == name)?;
        Stage::ALL.get(i).copied()
    }
}

/// An immutable list of hooks; replaced, never mutated.
type HookList = Arc<[Py<PyAny>]>;

#[derive(Default)]
struct HookTable {
    lists: [Option<HookList>; STAGES.len()],
}

impl HookTable {
    /// One bit per stage that has hooks.
    fn mask(&self) -> u8 {
        self.lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    fn get(&self, stage: Stage) -> Option<HookList> {
        self.lists.get(stage as usize).cloned().flatten()
    }

    /// Replace the stage's list; returns the old one (drop it unlocked).
    fn replace(&mut self, stage: Stage, list: Vec<Py<PyAny>>) -> Option<HookList> {
        let new = if list.is_empty() {
            None
        } else {
            Some(HookList::from(list))
        };
        self.lists
            .get_mut(stage as usize)
            .and_then(|slot| std::mem::replace(slot, new))
    }
}

/// A router's hooks: the table, and a lock-free mask of the stages that
/// have any (a stage without hooks costs one atomic load).
#[derive(Default)]
pub struct Hooks {
    table: Mutex<HookTable>,
    mask: AtomicU8,
}

/// Where dispatch reports a failing hook: the router's logger.
pub type Warn<'a, 'py> = &'a dyn Fn(&str, Vec<Bound<'py, PyAny>>) -> PyResult<()>;

impl Hooks {
    /// Append `hook` at `stage`.
    pub fn register(&self, py: Python<'_>, stage: Stage, hook: &Bound<'_, PyAny>) {
        let old = {
            let mut table = lock(&self.table);
            let mut list: Vec<Py<PyAny>> = table
                .get(stage)
                .map(|l| l.iter().map(|h| h.clone_ref(py)).collect())
                .unwrap_or_default();
            list.push(hook.clone().unbind());
            let old = table.replace(stage, list);
            self.mask.store(table.mask(), Ordering::Relaxed);
            old
        };
        drop(old);
    }

    /// Remove the first hook equal to `hook`; `==` runs outside the lock.
    pub fn unregister(
        &self,
        py: Python<'_>,
        stage: Stage,
        hook: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Some(snapshot) = lock(&self.table).get(stage) else {
            return Ok(());
        };
        let mut found = None;
        for h in snapshot.iter() {
            let b = h.bind(py);
            let equal = match b.eq(hook) {
                Ok(equal) => equal,
                // As `list.remove`: a ValueError ends the search, unfound.
                Err(err) if err.is_instance_of::<PyValueError>(py) => return Ok(()),
                Err(err) => return Err(err),
            };
            if b.is(hook) || equal {
                found = Some(h.as_ptr());
                break;
            }
        }
        let Some(target) = found else {
            return Ok(());
        };
        let old = {
            let mut table = lock(&self.table);
            match table.get(stage) {
                Some(current) if current.iter().any(|h| h.as_ptr() == target) => {
                    let mut skipped = false;
                    let rest: Vec<Py<PyAny>> = current
                        .iter()
                        .filter(|h| {
                            let skip = !skipped && h.as_ptr() == target;
                            skipped |= skip;
                            !skip
                        })
                        .map(|h| h.clone_ref(py))
                        .collect();
                    let old = table.replace(stage, rest);
                    self.mask.store(table.mask(), Ordering::Relaxed);
                    Some((old, current))
                }
                _ => None,
            }
        };
        drop(old);
        drop(snapshot);
        Ok(())
    }

    /// Call each hook of `stage` with its own copy of the context. A sane
    /// plan returned at `pre_submit` replaces the plan; an `Exception` is
    /// counted and logged; any other `BaseException` propagates.
    pub fn dispatch<'py>(
        &self,
        py: Python<'py>,
        stage: Stage,
        payload: Bound<'py, PyAny>,
        ctx: &Ctx<'_, 'py>,
        cells: &Cells,
        warn: Warn<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.mask.load(Ordering::Relaxed) & (1 << stage as u8) == 0 {
            return Ok(payload);
        }
        let Some(hooks) = lock(&self.table).get(stage) else {
            return Ok(payload);
        };
        let base = ctx.dict(py)?;
        let mut out = payload;
        for hook in hooks.iter() {
            let hook = hook.bind(py);
            match hook.call1((&out, base.copy()?)) {
                Ok(ret) => {
                    if stage == Stage::PreSubmit {
                        if let Ok(plan) = ret.cast::<ExecutionPlan>() {
                            if plan.get().is_sane(py) {
                                out = ret;
                            } else {
                                warn(
                                    "exec_router: hook %r returned insane plan — ignored",
                                    vec![hook.clone()],
                                )?;
                            }
                        }
                    }
                }
                Err(err) => {
                    if !err.is_instance_of::<PyException>(py) {
                        return Err(err);
                    }
                    cells.inc(Counter::HookErrors);
                    warn(
                        "exec_router: hook %r failed at %s: %s",
                        vec![
                            hook.clone(),
                            PyString::new(py, stage.name()).into_any(),
                            err.value(py).clone().into_any(),
                        ],
                    )?;
                }
            }
        }
        Ok(out)
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(table) = self.table.try_lock() {
            for list in table.lists.iter().flatten() {
                for hook in list.iter() {
                    visit.call(hook)?;
                }
            }
        }
        Ok(())
    }

    /// Drop every hook (the lists are dropped after the lock is released).
    pub fn clear(&self) {
        let lists: Vec<HookList> = {
            let mut table = lock(&self.table);
            self.mask.store(0, Ordering::Relaxed);
            table.lists.iter_mut().filter_map(Option::take).collect()
        };
        drop(lists);
    }
}

/// A hook's context, built only when a stage has hooks.
pub enum CtxSpec<'a, 'py> {
    Plan {
        trade_id: &'a Bound<'py, PyAny>,
        asset: &'a Bound<'py, PyAny>,
        side: &'a Bound<'py, PyAny>,
        reference_price: &'a Bound<'py, PyAny>,
        spread_bps: Option<&'a Bound<'py, PyAny>>,
        /// The exit reason and its urgency; `None` for an entry.
        exit: Option<(&'a Bound<'py, PyAny>, bool)>,
    },
    One(&'static str, Bound<'py, PyAny>),
}

pub struct Ctx<'a, 'py> {
    spec: CtxSpec<'a, 'py>,
    dict: OnceCell<Bound<'py, PyDict>>,
}

impl<'a, 'py> Ctx<'a, 'py> {
    pub fn new(spec: CtxSpec<'a, 'py>) -> Self {
        Self {
            spec,
            dict: OnceCell::new(),
        }
    }

    pub fn one(key: &'static str, value: Bound<'py, PyAny>) -> Self {
        Self::new(CtxSpec::One(key, value))
    }

    fn dict(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyDict>> {
        if let Some(d) = self.dict.get() {
            return Ok(d);
        }
        let d = PyDict::new(py);
        match &self.spec {
            CtxSpec::Plan {
                trade_id,
                asset,
                side,
                reference_price,
                spread_bps,
                exit,
            } => {
                d.set_item(intern!(py, "trade_id"), trade_id)?;
                d.set_item(intern!(py, "asset"), asset)?;
                d.set_item(intern!(py, "side"), side)?;
                d.set_item(intern!(py, "reference_price"), reference_price)?;
                d.set_item(intern!(py, "spread_bps"), spread_bps)?;
                match exit {
                    None => d.set_item(intern!(py, "action"), Action::Enter.py_name(py))?,
                    Some((reason, urgent)) => {
                        d.set_item(intern!(py, "action"), Action::Exit.py_name(py))?;
                        d.set_item(intern!(py, "reason"), reason)?;
                        d.set_item(intern!(py, "urgent"), urgent)?;
                    }
                }
            }
            CtxSpec::One(key, value) => d.set_item(*key, value)?,
        }
        Ok(self.dict.get_or_init(|| d))
    }
}

/// The callable `register_hook` returns: calling it unregisters the hook.
#[pyclass(module = "exec_router._core", name = "HookHandle", frozen)]
pub struct HookHandle {
    target: Mutex<Option<(Py<ExecutionRouter>, Py<PyAny>)>>,
    stage: Stage,
}

impl HookHandle {
    pub fn new(router: Py<ExecutionRouter>, hook: Py<PyAny>, stage: Stage) -> Self {
        Self {
            target: Mutex::new(Some((router, hook))),
            stage,
        }
    }
}

#[pymethods]
impl HookHandle {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let _depth = Depth::enter("unregister")?;
        let target = lock(&self.target)
            .as_ref()
            .map(|(r, h)| (r.clone_ref(py), h.clone_ref(py)));
        if let Some((router, hook)) = target {
            router
                .get()
                .hooks()
                .unregister(py, self.stage, hook.bind(py))?;
        }
        Ok(())
    }

    #[getter]
    fn stage(&self) -> &'static str {
        self.stage.name()
    }

    fn __repr__(&self) -> String {
        format!("<unregister hook at {}>", self.stage.name())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(target) = self.target.try_lock() {
            if let Some((router, hook)) = target.as_ref() {
                visit.call(router)?;
                visit.call(hook)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = lock(&self.target).take();
        drop(taken);
    }
}
