//! `ExecutionRouter`: the Python face. Each method checks its arguments,
//! counts itself in the nesting depth, and calls the policy (`policy.rs`),
//! the registry (`registry.rs`) and the hooks (`hooks.rs`). No lock is held
//! across a call into Python (hook, clock, logger, a key's `__eq__`/`__hash__`,
//! or a drop that may run `__del__`).

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::clock;
use crate::convert::{
    concat, hashable, is_blank, label, real, text, type_name, upper, upper_is, Conv,
};
use crate::counters::{Cells, Counter, Counters};
use crate::depth::{Depth, MAX_DEPTH};
use crate::errors::{is_fatal, Fail};
use crate::hooks::{Ctx, CtxSpec, HookHandle, Hooks, Stage, STAGES};
use crate::journal::SyncMode;
use crate::journal_restore::{self, journal_config, sync_mode};
use crate::plan::{Action, ExecutionPlan, Quote, Spec};
use crate::policy::{self, Miss, Policy};
use crate::pricing::{self, py_max};
use crate::reasons;
use crate::registry::Registry;
use crate::sync::lock;
use crate::working::WorkingOrder;

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MONOTONIC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The settings, each swapped whole under the lock.
struct State {
    config: Py<PyAny>,
    policy: Arc<Policy>,
    logger: Py<PyAny>,
    clock: Py<PyAny>,
}

// Not `subclass` nor `dict`: CPython's `object.__new__` allocates a managed
// `__dict__` after allocating the instance, and a GC pass there would
// traverse the not yet initialised Rust fields.
#[pyclass(
    module = "exec_router._core",
    name = "ExecutionRouter",
    frozen,
    weakref
)]
pub struct ExecutionRouter {
    cells: Arc<Cells>,
    counters: Py<Counters>,
    registry: Registry,
    hooks: Hooks,
    state: Mutex<State>,
}

impl ExecutionRouter {
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    fn policy(&self) -> Arc<Policy> {
        lock(&self.state).policy.clone()
    }

    fn dispatch<'py>(
        &self,
        py: Python<'py>,
        stage: Stage,
        payload: Bound<'py, PyAny>,
        ctx: &Ctx<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let warn = |msg: &str, args: Vec<Bound<'py, PyAny>>| self.warn(py, msg, args);
        self.hooks
            .dispatch(py, stage, payload, ctx, &self.cells, &warn)
    }

    /// `logger.warning(msg, *args)`; a failing logger is ignored.
    fn warn<'py>(&self, py: Python<'py>, msg: &str, args: Vec<Bound<'py, PyAny>>) -> PyResult<()> {
        let logger = lock(&self.state).logger.clone_ref(py);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(PyString::new(py, msg).into_any());
        all.extend(args);
        match logger
            .bind(py)
            .call_method1(intern!(py, "warning"), PyTuple::new(py, all)?)
        {
            Ok(_) => Ok(()),
            Err(err) if !is_fatal(py, &err) => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn now(&self, py: Python<'_>, method: &str) -> PyResult<f64> {
        let clock = lock(&self.state).clock.clone_ref(py);
        clock::read(clock.bind(py), method)
    }

    /// The MARKET fallback for an argument planning cannot use.
    fn invalid_plan<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        action: Action,
        fail: Fail,
    ) -> PyResult<Bound<'py, ExecutionPlan>> {
        let (name, type_name) = match fail {
            Fail::Fatal(err) => return Err(err),
            Fail::Invalid {
                name, type_name, ..
            } => (name, type_name),
        };
        self.cells.inc(taker_counter(action));
        self.warn(
            py,
            "exec_router: %s got an invalid %s (%s) — falling back to MARKET",
            vec![
                PyString::new(py, method).into_any(),
                PyString::new(py, name).into_any(),
                PyString::new(py, &type_name).into_any(),
            ],
        )?;
        let reason = PyString::new(py, &format!("invalid_input:{name}"));
        Spec::market(action, reason).build(py)
    }

    /// The MARKET answer of a planning call nested past `MAX_DEPTH`; only
    /// the first refused level logs (a logger that plans again stops there).
    fn too_deep_plan<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        action: Action,
        outer: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.cells.inc(match action {
            Action::Enter => Counter::PlansEntry,
            Action::Exit => Counter::PlansExit,
        });
        self.cells.inc(taker_counter(action));
        if outer == MAX_DEPTH {
            self.warn(
                py,
                "exec_router: %s nested deeper than %d router calls — falling back to MARKET",
                vec![
                    PyString::new(py, method).into_any(),
                    MAX_DEPTH.into_pyobject(py)?.into_any(),
                ],
            )?;
        }
        let reason = intern!(py, "invalid_input:depth").clone();
        Ok(Spec::market(action, reason).build(py)?.into_any())
    }

    /// Count a plan about to be returned as maker or taker.
    fn count_plan(&self, plan: &ExecutionPlan, action: Action) {
        if plan.is_maker {
            self.cells.inc(match action {
                Action::Enter => Counter::MakerEntries,
                Action::Exit => Counter::MakerExits,
            });
        } else if !plan.suppress {
            self.cells.inc(taker_counter(action));
        }
    }

    fn wo_arg<'a, 'py>(
        method: &str,
        wo: &'a Bound<'py, PyAny>,
    ) -> PyResult<&'a Bound<'py, WorkingOrder>> {
        wo.cast::<WorkingOrder>().map_err(|_| {
            PyTypeError::new_err(format!("{method}() got an invalid wo: {}", type_name(wo)))
        })
    }

    /// `note_fill`/`note_cancel`: remove, count, tell the hooks.
    fn note_removed(
        &self,
        py: Python<'_>,
        method: &str,
        trade_id: &Bound<'_, PyAny>,
        counter: Counter,
        stage: Stage,
    ) -> PyResult<()> {
        if let Some(wo) = self.registry.pop(method, trade_id, Some(counter))? {
            let ctx = Ctx::one("trade_id", trade_id.clone());
            self.dispatch(py, stage, wo.into_any(), &ctx)?;
        }
        Ok(())
    }

    /// `note_fill` (`fill`) or `note_cancel`.
    pub(crate) fn note(
        &self,
        py: Python<'_>,
        fill: bool,
        trade_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (method, counter, stage) = if fill {
            ("note_fill", Counter::FillsWorking, Stage::OnFill)
        } else {
            ("note_cancel", Counter::Cancels, Stage::OnCancel)
        };
        let _depth = Depth::enter(method)?;
        self.note_removed(py, method, trade_id, counter, stage)
    }

    /// Urgent exit while a maker exit rests: MARKET that pre-empts it.
    fn escalation<'py>(
        &self,
        py: Python<'py>,
        reason: &Bound<'py, PyAny>,
        ctx: &Ctx<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.cells.inc(Counter::ExitEscalations);
        let preempt = || -> PyResult<Bound<'py, PyDict>> {
            let metadata = PyDict::new(py);
            metadata.set_item(intern!(py, "preempt_working"), true)?;
            Ok(metadata)
        };
        let reason = match reasons::escalate(reason) {
            Ok(reason) => reason,
            Err(fail) => {
                let plan = self.invalid_plan(py, "plan_exit", Action::Exit, fail)?;
                let metadata = plan.get().metadata_dict(py);
                metadata.update(preempt()?.as_mapping())?;
                return Ok(plan.into_any());
            }
        };
        let plan = Spec::market(Action::Exit, reason)
            .with_metadata(preempt()?)
            .build(py)?;
        let plan = self.dispatch(py, Stage::PreSubmit, plan.into_any(), ctx)?;
        let plan = plan.cast_into::<ExecutionPlan>()?;
        if plan.get().suppress {
            let reason = intern!(py, "hook_suppress_overridden_market").clone();
            let plan = Spec::market(Action::Exit, reason).with_metadata(preempt()?);
            return Ok(plan.build(py)?.into_any());
        }
        Ok(plan.into_any())
    }

    pub(crate) fn maker_price_of(
        &self,
        asset: &Bound<'_, PyAny>,
        order_side: &Bound<'_, PyAny>,
        reference_price: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        let _depth = Depth::enter("maker_price")?;
        self.policy()
            .price_of(asset, Err(order_side), reference_price)
            .map_err(|f| f.into_err("maker_price"))
    }

    /// Record a maker quote the runtime has submitted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn register<'py>(
        &self,
        py: Python<'py>,
        trade_id: &Bound<'py, PyAny>,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        plan: &Bound<'py, PyAny>,
        base_trade_id: Option<&Bound<'py, PyAny>>,
        retry_n: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, WorkingOrder>> {
        const METHOD: &str = "register_working";
        let _depth = Depth::enter(METHOD)?;
        let args = || -> Conv<(Bound<'py, PyString>, Bound<'py, PyAny>)> {
            hashable("trade_id", trade_id)?;
            let side = upper("position_side", position_side)?;
            let base = match base_trade_id {
                Some(b) if !is_blank("base_trade_id", b)? => b.clone(),
                _ => trade_id.clone(),
            };
            Ok((side, base))
        };
        let (side, base) = args().map_err(|f| f.into_err(METHOD))?;
        let plan = plan.cast::<ExecutionPlan>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{METHOD}() got an invalid plan: {}",
                type_name(plan)
            ))
        })?;
        let retry_n = match retry_n {
            None => 0,
            Some(r) => {
                if r.is_instance_of::<pyo3::types::PyBool>() || !r.is_instance_of::<PyInt>() {
                    return Err(PyTypeError::new_err(format!(
                        "{METHOD}() got an invalid retry_n: {}",
                        type_name(r)
                    )));
                }
                r.extract::<i64>().map_err(|_| {
                    PyValueError::new_err("WorkingOrder.retry_n must fit in 64 bits")
                })?
            }
        };
        // One lock for both: the clock is called after it is released.
        let (clock_fn, policy) = {
            let state = lock(&self.state);
            (state.clock.bind(py).clone(), state.policy.clone())
        };
        let now = clock::read(&clock_fn, METHOD)?;
        let p = plan.get();
        let deadline = now + py_max(0.5, p.ttl_s);
        if !deadline.is_finite() {
            return Err(PyValueError::new_err(format!(
                "{METHOD}() got an invalid plan: ttl_s {} gives no deadline",
                clock::float_text(py, p.ttl_s)
            )));
        }
        let enter = p.action_is(py, Action::Enter);
        let retries_left = policy.retries_left(enter, retry_n);
        let wo = Bound::new(
            py,
            WorkingOrder {
                trade_id: trade_id.clone().unbind(),
                asset: asset.clone().unbind(),
                side: side.unbind(),
                action: p.action_str(py).unbind(),
                plan: plan.clone().unbind(),
                submitted_at: now,
                deadline,
                retries_left,
                base_trade_id: base.unbind(),
                retry_n,
                link: None,
                journal: None,
            },
        )?;
        self.registry
            .put(METHOD, trade_id, &wo, deadline, enter, now)?;
        let ctx = Ctx::one("trade_id", trade_id.clone());
        self.dispatch(py, Stage::OnWorking, wo.clone().into_any(), &ctx)?;
        Ok(wo)
    }

    /// Plan an ENTER. Never raises on a bad value: falls back to MARKET.
    pub(crate) fn plan_entry<'py>(
        &self,
        py: Python<'py>,
        trade_id: &Bound<'py, PyAny>,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
        spread_bps: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (depth, within) = Depth::enter_any();
        if !within {
            return self.too_deep_plan(py, "plan_entry", Action::Enter, depth.outer());
        }
        self.cells.inc(Counter::PlansEntry);
        let ctx = Ctx::new(CtxSpec::Plan {
            trade_id,
            asset,
            side: position_side,
            reference_price,
            spread_bps,
            exit: None,
        });
        self.dispatch(py, Stage::PrePlan, py.None().into_bound(py), &ctx)?;
        if let Some(blocker) = self.registry.first_entry(py) {
            self.cells.inc(Counter::SuppressedDupEnter);
            let trade_id = blocker
                .bind(py)
                .try_borrow()
                .map_or_else(|_| py.None(), |b| b.trade_id.clone_ref(py));
            let reason = concat("working_entry_exists:", &label(trade_id.bind(py))?, "")?;
            let plan = Spec::market(Action::Enter, reason).suppressed().build(py)?;
            return Ok(plan.into_any());
        }
        let policy = self.policy();
        let spec = match policy.entry_plan(
            &self.cells,
            asset,
            position_side,
            reference_price,
            spread_bps,
        ) {
            Ok(spec) => spec,
            Err(fail) => {
                let plan = self.invalid_plan(py, "plan_entry", Action::Enter, fail)?;
                return Ok(plan.into_any());
            }
        };
        let plan = spec.build(py)?.into_any();
        let plan = self.dispatch(py, Stage::PreSubmit, plan, &ctx)?;
        let plan = plan.cast_into::<ExecutionPlan>()?;
        self.count_plan(plan.get(), Action::Enter);
        Ok(plan.into_any())
    }

    /// Plan an EXIT. Exits are never skipped, except when a maker exit for
    /// the same trade is resting and the new reason is not urgent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_exit<'py>(
        &self,
        py: Python<'py>,
        trade_id: &Bound<'py, PyAny>,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
        reason: &Bound<'py, PyAny>,
        spread_bps: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (depth, within) = Depth::enter_any();
        if !within {
            return self.too_deep_plan(py, "plan_exit", Action::Exit, depth.outer());
        }
        self.cells.inc(Counter::PlansExit);
        let invalid = |fail: Fail| -> PyResult<Bound<'py, PyAny>> {
            Ok(self
                .invalid_plan(py, "plan_exit", Action::Exit, fail)?
                .into_any())
        };
        let read_urgent = || -> Conv<bool> {
            if is_blank("reason", reason)? {
                return Ok(true);
            }
            Ok(!upper_is("reason", reason, "TAKE_PROFIT")?)
        };
        let urgent = match read_urgent() {
            Ok(r) => r,
            Err(fail) => return invalid(fail),
        };
        let ctx = Ctx::new(CtxSpec::Plan {
            trade_id,
            asset,
            side: position_side,
            reference_price,
            spread_bps,
            exit: Some((reason, urgent)),
        });
        self.dispatch(py, Stage::PrePlan, py.None().into_bound(py), &ctx)?;
        let found = match self.registry.get(trade_id) {
            Ok(found) => found,
            Err(fail) => return invalid(fail),
        };
        let working_exit = found
            .and_then(|w| w.cast_into::<WorkingOrder>().ok())
            .is_some_and(|w| w.try_borrow().is_ok_and(|w| w.is(py, Action::Exit)));
        if working_exit {
            if urgent {
                // The runtime cancels the resting quote, then sends this.
                return self.escalation(py, reason, &ctx);
            }
            self.cells.inc(Counter::SuppressedDupExit);
            let reason = intern!(py, "working_exit_exists").clone();
            let plan = Spec::market(Action::Exit, reason).suppressed().build(py)?;
            return Ok(plan.into_any());
        }
        let policy = self.policy();
        let spec = match policy.exit_plan(
            asset,
            position_side,
            reference_price,
            spread_bps,
            reason,
            urgent,
        ) {
            Ok(spec) => spec,
            Err(fail) => return invalid(fail),
        };
        let plan = spec.build(py)?.into_any();
        let mut plan = self
            .dispatch(py, Stage::PreSubmit, plan, &ctx)?
            .cast_into::<ExecutionPlan>()?;
        if plan.get().suppress {
            // Only the duplicate guard may suppress an exit; a hook may not.
            let reason = intern!(py, "hook_suppress_overridden_market").clone();
            plan = Spec::market(Action::Exit, reason).build(py)?;
        }
        if !plan.get().is_sane(py) {
            let reason = intern!(py, "sanity_fallback_market").clone();
            plan = Spec::market(Action::Exit, reason).build(py)?;
        }
        self.count_plan(plan.get(), Action::Exit);
        Ok(plan.into_any())
    }
}

fn taker_counter(action: Action) -> Counter {
    match action {
        Action::Enter => Counter::TakerEntries,
        Action::Exit => Counter::TakerExits,
    }
}

fn state_module(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyModule>> {
    py.import(intern!(py, "exec_router.state"))
}

fn default_logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Ok(LOGGER
        .import(py, "exec_router.constants", "LOGGER")?
        .clone())
}

fn check_logger(logger: &Bound<'_, PyAny>) -> PyResult<()> {
    let ok = logger
        .getattr(intern!(logger.py(), "warning"))
        .is_ok_and(|w| w.is_callable());
    if ok {
        Ok(())
    } else {
        Err(PyTypeError::new_err(
            "ExecutionRouter() got an invalid logger: it has no warning() method",
        ))
    }
}

#[pymethods]
impl ExecutionRouter {
    #[new]
    #[pyo3(signature = (config = None, *, logger = None, clock = None))]
    fn new(
        py: Python<'_>,
        config: Option<&Bound<'_, PyAny>>,
        logger: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let logger = match logger {
            Some(l) => l.clone(),
            None => default_logger(py)?,
        };
        check_logger(&logger)?;
        let clock = match clock {
            Some(c) => c.clone(),
            None => MONOTONIC.import(py, "time", "monotonic")?.clone(),
        };
        clock::check(&clock)?;
        let config = match config {
            Some(c) => c.clone(),
            None => policy::default_config(py)?,
        };
        let policy = Arc::new(policy::from_config(&config)?);
        let cells = Arc::new(Cells::default());
        let counters = Py::new(
            py,
            Counters {
                cells: cells.clone(),
            },
        )?;
        Ok(Self {
            registry: Registry::new(py, cells.clone()),
            cells,
            counters,
            hooks: Hooks::default(),
            state: Mutex::new(State {
                config: config.unbind(),
                policy,
                logger: logger.unbind(),
                clock: clock.unbind(),
            }),
        })
    }

    #[getter]
    fn config(&self, py: Python<'_>) -> Py<PyAny> {
        lock(&self.state).config.clone_ref(py)
    }

    #[setter]
    fn set_config(&self, config: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("config")?;
        let policy = Arc::new(policy::from_config(config)?);
        if self.registry.journaled() {
            let body = journal_config(config)?;
            self.registry.journal_config(config.py(), body)?;
        }
        let old = {
            let mut state = lock(&self.state);
            state.policy = policy;
            std::mem::replace(&mut state.config, config.clone().unbind())
        };
        drop(old);
        Ok(())
    }

    #[getter]
    fn logger(&self, py: Python<'_>) -> Py<PyAny> {
        lock(&self.state).logger.clone_ref(py)
    }

    #[setter]
    fn set_logger(&self, logger: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("logger")?;
        check_logger(logger)?;
        let old = std::mem::replace(&mut lock(&self.state).logger, logger.clone().unbind());
        drop(old);
        Ok(())
    }

    #[getter]
    fn clock(&self, py: Python<'_>) -> Py<PyAny> {
        lock(&self.state).clock.clone_ref(py)
    }

    #[setter]
    fn set_clock(&self, clock: &Bound<'_, PyAny>) -> PyResult<()> {
        clock::check(clock)?;
        let old = std::mem::replace(&mut lock(&self.state).clock, clock.clone().unbind());
        drop(old);
        Ok(())
    }

    /// The live counters mapping.
    #[getter]
    fn counters(&self, py: Python<'_>) -> Py<Counters> {
        self.counters.clone_ref(py)
    }

    #[setter]
    fn set_counters(&self, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("counters")?;
        let counters = self.counters.bind(values.py());
        for item in values
            .call_method0(intern!(values.py(), "items"))?
            .try_iter()?
        {
            let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            counters.set_item(key, value)?;
        }
        Ok(())
    }

    // ── hooks ────────────────────────────────────────────────────────────

    /// Register `fn` at `stage`; returns a callable that unregisters it.
    #[pyo3(signature = (stage, r#fn))]
    fn register_hook(
        slf: &Bound<'_, Self>,
        stage: &Bound<'_, PyAny>,
        r#fn: &Bound<'_, PyAny>,
    ) -> PyResult<HookHandle> {
        let _depth = Depth::enter("register_hook")?;
        let py = slf.py();
        let parsed = stage
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok().and_then(Stage::parse));
        let Some(parsed) = parsed else {
            let shown = stage
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| format!("<{}>", type_name(stage)));
            let valid = PyTuple::new(py, STAGES)?.repr()?;
            return Err(PyValueError::new_err(format!(
                "unknown hook stage {shown}; valid: {valid}"
            )));
        };
        if !r#fn.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "register_hook() got an invalid fn: {}",
                type_name(r#fn)
            )));
        }
        slf.get().hooks.register(py, parsed, r#fn);
        Ok(HookHandle::new(
            slf.clone().unbind(),
            r#fn.clone().unbind(),
            parsed,
        ))
    }

    // ── pricing ──────────────────────────────────────────────────────────

    fn tick_size(&self, asset: &Bound<'_, PyAny>) -> PyResult<f64> {
        let _depth = Depth::enter("tick_size")?;
        self.policy()
            .tick_of(asset)
            .map_err(|f| f.into_err("tick_size"))
    }

    #[staticmethod]
    fn order_side<'py>(
        py: Python<'py>,
        action: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyString>> {
        let _depth = Depth::enter("order_side")?;
        let side = || -> Conv<bool> {
            let long = upper_is("position_side", position_side, "LONG")?;
            let exit = upper_is("action", action, "EXIT")?;
            Ok(pricing::sells(exit, long))
        };
        let sells = side().map_err(|f| f.into_err("order_side"))?;
        let side = if sells {
            intern!(py, "SELL")
        } else {
            intern!(py, "BUY")
        };
        Ok(side.clone())
    }

    // ── planning ─────────────────────────────────────────────────────────

    // ── working-order registry ───────────────────────────────────────────

    fn working<'py>(&self, trade_id: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let _depth = Depth::enter("working")?;
        self.registry
            .get(trade_id)
            .map_err(|f| f.into_err("working"))
    }

    /// Working orders in first-registration order.
    fn working_orders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let _depth = Depth::enter("working_orders")?;
        Ok(self.registry.values(py))
    }

    fn has_working_entry(&self) -> PyResult<bool> {
        let _depth = Depth::enter("has_working_entry")?;
        Ok(self.registry.has_entry())
    }

    /// Working orders due at `now` (default: the clock), in
    /// first-registration order: O(k log n) for k due orders.
    #[pyo3(signature = (now = None))]
    fn expired<'py>(
        &self,
        py: Python<'py>,
        now: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let _depth = Depth::enter("expired")?;
        let t = match now {
            None => self.now(py, "expired")?,
            Some(v) => real("expired", "now", v)?,
        };
        PyList::new(py, self.registry.due(py, t))
    }

    fn clear_working(&self, trade_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("clear_working")?;
        self.registry.pop("clear_working", trade_id, None)?;
        Ok(())
    }

    /// Install `fn(op, trade_id, wo)`, told of every registry change (None removes it);
    /// returns the observer it replaces.
    #[pyo3(signature = (r#fn))]
    fn _observe_registry(&self, r#fn: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let _depth = Depth::enter("_observe_registry")?;
        self.registry.observe(r#fn)
    }

    // ── journal (exec_router.journal drives these) ─────────────────────

    /// Take over the locked descriptor `fd` of the journal at `path`, write
    /// the registry there as a snapshot, and journal every change.
    #[pyo3(signature = (fd, path, sync, group_ms, file_id, times = None, compact_bytes = None))]
    #[allow(clippy::too_many_arguments)]
    fn _journal_attach(
        &self,
        py: Python<'_>,
        fd: i32,
        path: std::path::PathBuf,
        sync: &str,
        group_ms: Option<f64>,
        file_id: [u8; 16],
        times: Option<Bound<'_, PyAny>>,
        compact_bytes: Option<usize>,
    ) -> PyResult<()> {
        let close = || {
            // SAFETY: the descriptor was handed over to this call.
            unsafe { libc::close(fd) };
        };
        let prepared = (|| -> PyResult<(SyncMode, Vec<u8>, f64)> {
            let mode = sync_mode(sync, group_ms)?;
            let config = journal_config(self.config(py).bind(py))?;
            let now = self.now(py, "attach")?;
            Ok((mode, config, now))
        })();
        let (mode, config, now) = match prepared {
            Ok(x) => x,
            Err(e) => {
                close();
                return Err(e);
            }
        };
        self.registry.attach(
            py,
            fd,
            path,
            mode,
            file_id,
            times,
            config,
            now,
            compact_bytes.unwrap_or(crate::journal::CHUNK),
        )
    }

    /// Register the orders of a journal read back by
    /// `_journal_read(data, name, working=True)` (its orders and times),
    /// their times moved by `now - clock_at - elapsed` seconds, elapsed by
    /// the boot clock when `same_boot`, else by the wall clock (never
    /// negative). Returns how many.
    #[pyo3(signature = (orders, times, now, wall_now, boot_now, same_boot))]
    fn _journal_restore<'py>(
        &self,
        orders: &Bound<'py, PyDict>,
        times: &Bound<'py, journal_restore::RestoreTimes>,
        now: f64,
        wall_now: f64,
        boot_now: f64,
        same_boot: bool,
    ) -> PyResult<usize> {
        let py = orders.py();
        let times = times.get();
        let place = self.registry.bulk_place(py);
        let restored = journal_restore::prepare(
            orders,
            times,
            now,
            wall_now,
            boot_now,
            same_boot,
            place.as_ref(),
            place.is_none() || times.rekeyed(),
        )?;
        match place {
            Some((_, first)) => {
                let source = (!times.rekeyed()).then_some(orders);
                self.registry.restore_bulk(py, source, restored, first)
            }
            None => self.registry.restore_each(py, restored, now),
        }
    }

    /// Stop journaling: sync (power, group) and close the file; whether one was attached.
    fn _journal_detach(&self) -> bool {
        self.registry.detach()
    }

    /// The attached journal's bytes so far, or None.
    fn _journal_bytes<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.registry
            .with_journal(|w| w.bytes().to_vec())
            .map(|b| PyBytes::new(py, &b))
    }

    /// Wait for a pending compaction (with `wait`, else only if it is done)
    /// and switch to its file; whether one was pending.
    #[pyo3(signature = (wait = true))]
    fn _journal_settle(&self, wait: bool) -> bool {
        self.registry.settle(wait)
    }

    /// Tests: hold finished compactions back until a settle.
    fn _journal_hold(&self, hold: bool) -> bool {
        self.registry
            .with_journal(|w| w.set_knobs(Some(hold)))
            .is_some()
    }

    /// Rewrite the attached journal from the orders' current fields.
    fn _journal_sync(&self, py: Python<'_>) -> PyResult<()> {
        let config = journal_config(self.config(py).bind(py))?;
        let now = self.now(py, "sync")?;
        self.registry.resnapshot(py, Some(config), now)
    }

    /// The attached journal's statistics, or None.
    fn _journal_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((s, end, cap, mode, compact_at, compacting, ready)) =
            self.registry.with_journal(|w| {
                (
                    w.stats(),
                    w.end(),
                    w.capacity(),
                    w.mode(),
                    w.compact_at(),
                    w.compacting(),
                    w.compaction_ready(),
                )
            })
        else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("records", s.records)?;
        d.set_item("bytes", end)?;
        d.set_item("capacity", cap)?;
        d.set_item("compact_at", compact_at)?;
        d.set_item("compactions", s.compactions)?;
        d.set_item("compacting", compacting)?;
        d.set_item("compaction_ready", ready)?;
        d.set_item("compaction_errors", s.compaction_errors)?;
        d.set_item("last_compaction_s", s.last_compaction_s)?;
        d.set_item("last_switch_s", s.last_switch_s)?;
        d.set_item("syncs", s.syncs)?;
        d.set_item("last_sync_s", s.last_sync_s)?;
        d.set_item("max_sync_s", s.max_sync_s)?;
        d.set_item("last_error", s.last_error)?;
        d.set_item(
            "sync",
            match mode {
                SyncMode::Process => "process",
                _ => "power",
            },
        )?;
        Ok(Some(d))
    }

    /// This router's state as a versioned, JSON-serialisable dict.
    fn export_state<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let _depth = Depth::enter("export_state")?;
        let py = slf.py();
        state_module(py)?.call_method1(intern!(py, "export_state"), (slf,))
    }

    /// Rebuild a router from `export_state()` output.
    #[classmethod]
    #[pyo3(signature = (state, config = None, *, logger = None, clock = None))]
    fn from_state<'py>(
        cls: &Bound<'py, pyo3::types::PyType>,
        state: &Bound<'py, PyAny>,
        config: Option<&Bound<'py, PyAny>>,
        logger: Option<&Bound<'py, PyAny>>,
        clock: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "logger"), logger)?;
        kwargs.set_item(intern!(py, "clock"), clock)?;
        let plan_type = py.get_type::<ExecutionPlan>();
        state_module(py)?.call_method(
            intern!(py, "from_state"),
            (cls, plan_type, state, config),
            Some(&kwargs),
        )
    }

    // ── miss and escalation policy ───────────────────────────────────────

    /// What to do with an expired working entry: a `MissAction` value.
    fn entry_miss_action<'py>(
        &self,
        py: Python<'py>,
        wo: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyString>> {
        let _depth = Depth::enter("entry_miss_action")?;
        let order = Self::wo_arg("entry_miss_action", wo)?;
        let retries_left = order.try_borrow()?.retries_left;
        let action = self.policy().miss_action(retries_left);
        self.cells.inc(match action {
            Miss::Skip => Counter::EntryMissSkip,
            Miss::Retry => Counter::EntryMissRetry,
            Miss::Market => Counter::EntryMissMarket,
        });
        let name = match action {
            Miss::Skip => intern!(py, "skip"),
            Miss::Retry => intern!(py, "retry"),
            Miss::Market => intern!(py, "market"),
        }
        .clone();
        let ctx = Ctx::one("action", name.clone().into_any());
        self.dispatch(py, Stage::OnMiss, wo.clone(), &ctx)?;
        Ok(name)
    }

    /// A fresh quote for a retried entry, under a new trade id.
    #[pyo3(signature = (wo, *, reference_price))]
    fn retry_plan<'py>(
        &self,
        py: Python<'py>,
        wo: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, ExecutionPlan>)> {
        let _depth = Depth::enter("retry_plan")?;
        let order = Self::wo_arg("retry_plan", wo)?;
        let (retry_n, base, side, asset) = {
            let o = order.try_borrow()?;
            (
                o.retry_n,
                o.base_trade_id.clone_ref(py),
                o.side.clone_ref(py),
                o.asset.clone_ref(py),
            )
        };
        let n = i128::from(retry_n) + 1;
        let base = base.bind(py);
        let base_text = text("base_trade_id", base).map_err(|f| f.into_err("retry_plan"))?;
        let new_tid = concat("", &base_text, &format!("-r{n}"))?;
        let long = upper_is("position_side", side.bind(py), "LONG")
            .map_err(|f| f.into_err("order_side"))?;
        let policy = self.policy();
        let price = policy
            .price_of(
                asset.bind(py),
                Ok(pricing::sells(false, long)),
                reference_price,
            )
            .map_err(|f| f.into_err("maker_price"))?;
        let metadata = PyDict::new(py);
        metadata.set_item(intern!(py, "retry_n"), n)?;
        metadata.set_item(intern!(py, "base_trade_id"), base)?;
        let spec = if price > 0.0 {
            let reason = PyString::new(py, &format!("maker_entry_retry_{n}"));
            let quote = Quote {
                price,
                post_only: policy.post_only,
                ttl_s: policy.entry_ttl_s,
            };
            Spec::limit(Action::Enter, reason, quote)
        } else {
            let reason = intern!(py, "retry_price_insane_market").clone();
            Spec::market(Action::Enter, reason)
        };
        Ok((new_tid.into_any(), spec.with_metadata(metadata).build(py)?))
    }

    /// MARKET after a missed or escalated quote. An entry gets a fresh `-m`
    /// trade id; an exit keeps its trade id (same position).
    fn market_fallback_plan<'py>(
        &self,
        py: Python<'py>,
        wo: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, ExecutionPlan>)> {
        let _depth = Depth::enter("market_fallback_plan")?;
        let order = Self::wo_arg("market_fallback_plan", wo)?;
        let enter = order.try_borrow()?.is(py, Action::Enter);
        let ctx = Ctx::one("to", intern!(py, "MARKET").clone().into_any());
        let base_of = || -> PyResult<Bound<'py, PyAny>> {
            Ok(order
                .try_borrow()?
                .base_trade_id
                .clone_ref(py)
                .into_bound(py))
        };
        let metadata = |base: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyDict>> {
            let m = PyDict::new(py);
            m.set_item(intern!(py, "base_trade_id"), base)?;
            Ok(m)
        };
        if enter {
            let base_text = text("base_trade_id", &base_of()?)
                .map_err(|f| f.into_err("market_fallback_plan"))?;
            let new_tid = concat("", &base_text, "-m")?;
            self.dispatch(py, Stage::OnEscalate, wo.clone(), &ctx)?;
            let reason = intern!(py, "entry_miss_market_fallback").clone();
            let plan = Spec::market(Action::Enter, reason)
                .with_metadata(metadata(base_of()?)?)
                .build(py)?;
            return Ok((new_tid.into_any(), plan));
        }
        self.cells.inc(Counter::ExitEscalations);
        self.dispatch(py, Stage::OnEscalate, wo.clone(), &ctx)?;
        let reason = intern!(py, "exit_ttl_market_fallback").clone();
        let plan = Spec::market(Action::Exit, reason)
            .with_metadata(metadata(base_of()?)?)
            .build(py)?;
        let trade_id = order.try_borrow()?.trade_id.clone_ref(py).into_bound(py);
        Ok((trade_id, plan))
    }

    // ── observability ────────────────────────────────────────────────────

    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let _depth = Depth::enter("snapshot")?;
        let out = PyDict::new(py);
        let config = self.config(py);
        out.set_item(
            intern!(py, "style"),
            config.bind(py).getattr(intern!(py, "style"))?,
        )?;
        let rows = PyList::empty(py);
        for wo in self.registry.values(py).iter() {
            let wo = wo.cast_into::<WorkingOrder>()?;
            let now = self.now(py, "snapshot")?;
            let (trade_id, action, asset, submitted_at, retry_n) = {
                let w = wo.try_borrow()?;
                (
                    w.trade_id.clone_ref(py),
                    w.action.clone_ref(py),
                    w.asset.clone_ref(py),
                    w.submitted_at,
                    w.retry_n,
                )
            };
            let row = PyDict::new(py);
            row.set_item(intern!(py, "trade_id"), trade_id)?;
            row.set_item(intern!(py, "action"), action)?;
            row.set_item(intern!(py, "asset"), asset)?;
            row.set_item(intern!(py, "age_s"), pricing::round3(now - submitted_at))?;
            row.set_item(intern!(py, "retry_n"), retry_n)?;
            rows.append(row)?;
        }
        out.set_item(intern!(py, "working"), rows)?;
        out.set_item(intern!(py, "counters"), self.cells.to_dict(py)?)?;
        Ok(out)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.counters)?;
        self.registry.traverse(&visit)?;
        self.hooks.traverse(&visit)?;
        if let Ok(state) = self.state.try_lock() {
            visit.call(&state.config)?;
            visit.call(&state.logger)?;
            visit.call(&state.clock)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            self.hooks.clear();
            self.registry.clear(py);
            let old = {
                let mut state = lock(&self.state);
                (
                    std::mem::replace(&mut state.logger, py.None()),
                    std::mem::replace(&mut state.clock, py.None()),
                )
            };
            drop(old);
        });
    }
}
