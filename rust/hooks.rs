//! Hook stages and the copy-on-write hook table. Dispatch takes a snapshot
//! of a stage's list under the lock, drops the lock, then calls the hooks.

use std::sync::Arc;

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

pub const STAGES: [&str; 7] = [
    "pre_plan",
    "pre_submit",
    "on_working",
    "on_fill",
    "on_miss",
    "on_escalate",
    "on_cancel",
];

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
    const ALL: [Stage; 7] = [
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
pub type HookList = Arc<[Py<PyAny>]>;

#[derive(Default)]
pub struct HookTable {
    lists: [Option<HookList>; 7],
}

impl HookTable {
    /// One bit per stage that has hooks.
    pub fn mask(&self) -> u8 {
        self.lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// The stage's hooks, or `None` when it has none.
    pub fn get(&self, stage: Stage) -> Option<HookList> {
        self.lists.get(stage as usize).cloned().flatten()
    }

    /// Replace the stage's list; returns the old one (drop it unlocked).
    pub fn replace(&mut self, stage: Stage, list: Vec<Py<PyAny>>) -> Option<HookList> {
        let new = if list.is_empty() {
            None
        } else {
            Some(HookList::from(list))
        };
        self.lists
            .get_mut(stage as usize)
            .and_then(|slot| std::mem::replace(slot, new))
    }

    /// The stage's hooks with `hook` appended.
    pub fn appended(&self, py: Python<'_>, stage: Stage, hook: Py<PyAny>) -> Vec<Py<PyAny>> {
        let mut list: Vec<Py<PyAny>> = self
            .get(stage)
            .map(|l| l.iter().map(|h| h.clone_ref(py)).collect())
            .unwrap_or_default();
        list.push(hook);
        list
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for list in self.lists.iter().flatten() {
            for hook in list.iter() {
                visit.call(hook)?;
            }
        }
        Ok(())
    }

    pub fn take_all(&mut self) -> Vec<HookList> {
        self.lists.iter_mut().filter_map(Option::take).collect()
    }
}
