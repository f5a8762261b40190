//! `ExecutionRouter`: planning, the working-order registry and the miss
//! policy. No lock is held across a call into Python (hook, clock, logger,
//! `__eq__`/`__hash__` of a key, or a drop that may run `__del__`).

use std::cell::OnceCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::convert::{
    concat, guard, hashable, is_blank, is_positive, label, real, text, to_float, type_name, upper,
    upper_is, Conv, Fail,
};
use crate::counters::{Cells, Counter, Counters};
use crate::depth::{Depth, MAX_DEPTH};
use crate::hooks::{HookTable, Stage, STAGES};
use crate::plan::{ExecutionPlan, Spec};
use crate::policy::{self, Miss, Policy};
use crate::pricing::{self, py_max};
use crate::sync::lock;
use crate::working::{Link, Registry, WorkingOrder};

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MONOTONIC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The mutable settings, swapped whole under the lock.
struct State {
    config: Py<PyAny>,
    policy: Arc<Policy>,
    logger: Py<PyAny>,
    clock: Py<PyAny>,
    hooks: HookTable,
    /// Told of every registry change (the journal).
    observer: Option<Py<PyAny>>,
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
    /// trade_id -> WorkingOrder, in first-registration order.
    working: Py<PyDict>,
    index: Arc<Registry>,
    state: Mutex<State>,
    /// Bumped by every registry mutation: detects one nested in a key's __eq__/__hash__.
    gen: std::sync::atomic::AtomicU64,
    /// `HookTable::mask`, readable without the lock: stages without hooks skip it.
    hooked: AtomicU8,
}

/// A hook's context, built only when a stage has hooks.
enum CtxSpec<'a, 'py> {
    Plan {
        trade_id: &'a Bound<'py, PyAny>,
        asset: &'a Bound<'py, PyAny>,
        side: &'a Bound<'py, PyAny>,
        reference_price: &'a Bound<'py, PyAny>,
        spread_bps: Option<&'a Bound<'py, PyAny>>,
        exit: Option<(&'a Bound<'py, PyAny>, bool)>,
    },
    One(&'static str, Bound<'py, PyAny>),
}

struct Ctx<'a, 'py> {
    spec: CtxSpec<'a, 'py>,
    dict: OnceCell<Bound<'py, PyDict>>,
}

impl<'a, 'py> Ctx<'a, 'py> {
    fn new(spec: CtxSpec<'a, 'py>) -> Self {
        Self {
            spec,
            dict: OnceCell::new(),
        }
    }

    fn one(key: &'static str, value: Bound<'py, PyAny>) -> Self {
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
                    None => d.set_item(intern!(py, "action"), intern!(py, "ENTER"))?,
                    Some((reason, urgent)) => {
                        d.set_item(intern!(py, "action"), intern!(py, "EXIT"))?;
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

impl ExecutionRouter {
    fn policy(&self) -> Arc<Policy> {
        lock(&self.state).policy.clone()
    }

    /// Call each hook of `stage` with its own copy of the context. A sane
    /// plan returned at `pre_submit` replaces the plan; an `Exception` is
    /// counted and logged; any other `BaseException` propagates.
    fn dispatch<'py>(
        &self,
        py: Python<'py>,
        stage: Stage,
        payload: Bound<'py, PyAny>,
        ctx: &Ctx<'_, 'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.hooked.load(Ordering::Relaxed) & (1 << stage as u8) == 0 {
            return Ok(payload);
        }
        let Some(hooks) = lock(&self.state).hooks.get(stage) else {
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
                                self.warn(
                                    py,
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
                    self.cells.inc(Counter::HookErrors);
                    self.warn(
                        py,
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
            Err(err) if err.is_instance_of::<PyException>(py) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A clock reading: a finite number, or a ValueError naming the clock.
    fn now(&self, py: Python<'_>, method: &str) -> PyResult<f64> {
        let clock = lock(&self.state).clock.clone_ref(py);
        let reading = match clock.bind(py).call0() {
            Ok(reading) => reading,
            Err(err) if is_fatal(py, &err) => return Err(err),
            Err(err) => {
                let kind = err
                    .get_type(py)
                    .name()
                    .map_or_else(|_| "an error".to_owned(), |n| n.to_string());
                let refused = PyValueError::new_err(format!(
                    "{method}() got no time from the clock: it raised {kind}"
                ));
                refused.set_cause(py, Some(err));
                return Err(refused);
            }
        };
        if let Ok(f) = reading.cast_exact::<PyFloat>() {
            if f.value().is_finite() {
                return Ok(f.value());
            }
        }
        let invalid = |what: String| {
            PyValueError::new_err(format!("{method}() got an invalid clock reading: {what}"))
        };
        if reading.is_instance_of::<PyFloat>() || reading.is_instance_of::<PyInt>() {
            let value: f64 = reading
                .extract()
                .map_err(|_| invalid("an int out of float range".to_owned()))?;
            if value.is_finite() {
                return Ok(value);
            }
            return Err(invalid(pyfloat_text(py, value)));
        }
        Err(invalid(format!(
            "{}, expected a finite number",
            type_name(&reading)
        )))
    }

    /// The tick for `asset`, as `tick_size` computes it.
    fn tick_of(&self, policy: &Policy, asset: &Bound<'_, PyAny>) -> Conv<f64> {
        if let Ok(s) = asset.cast_exact::<PyString>() {
            if let Ok(text) = s.to_str() {
                if text.is_ascii() {
                    return Ok(policy.ticks.get_ascii(text));
                }
            }
        }
        if is_blank("asset", asset)? {
            return Ok(0.0);
        }
        let sym = upper("asset", asset)?;
        Ok(sym.to_str().map_or(0.0, |s| policy.ticks.get(s)))
    }

    /// `maker_price` with the side already known (`Some(sells)`) or still an
    /// argument to read.
    fn price_of(
        &self,
        policy: &Policy,
        asset: &Bound<'_, PyAny>,
        side: Result<bool, &Bound<'_, PyAny>>,
        reference_price: &Bound<'_, PyAny>,
    ) -> Conv<f64> {
        let reference = to_float("reference_price", reference_price)?;
        if !(reference > 0.0) || reference == f64::INFINITY {
            return Ok(0.0);
        }
        let tick = self.tick_of(policy, asset)?;
        let sells = match side {
            Ok(sells) => sells,
            Err(order_side) => upper_is("order_side", order_side, "SELL")?,
        };
        Ok(pricing::maker_price(
            reference,
            tick,
            policy.offset_ticks,
            sells,
        ))
    }

    fn spread_allows_maker(policy: &Policy, spread_bps: Option<&Bound<'_, PyAny>>) -> Conv<bool> {
        match spread_bps {
            None => Ok(true),
            Some(s) => Ok(to_float("spread_bps", s)? <= policy.max_spread_bps),
        }
    }

    fn invalid_plan<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        action: &'static str,
        fail: Fail,
    ) -> PyResult<Bound<'py, ExecutionPlan>> {
        let (name, type_name) = match fail {
            Fail::Fatal(err) => return Err(err),
            Fail::Invalid {
                name, type_name, ..
            } => (name, type_name),
        };
        let counter = if action == "ENTER" {
            Counter::TakerEntries
        } else {
            Counter::TakerExits
        };
        self.cells.inc(counter);
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
        action: &'static str,
        outer: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let enter = action == "ENTER";
        self.cells.inc(if enter {
            Counter::PlansEntry
        } else {
            Counter::PlansExit
        });
        self.cells.inc(if enter {
            Counter::TakerEntries
        } else {
            Counter::TakerExits
        });
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

    fn entry_plan<'py>(
        &self,
        py: Python<'py>,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
        spread_bps: Option<&Bound<'py, PyAny>>,
    ) -> Conv<Spec<'py>> {
        let policy = self.policy();
        let taker = || Spec::market("ENTER", intern!(py, "taker_default").clone());
        if !(policy.maker_entry && is_positive("reference_price", reference_price)?) {
            return Ok(taker());
        }
        if !Self::spread_allows_maker(&policy, spread_bps)? {
            self.cells.inc(Counter::SpreadGateTaker);
            let spread = spread_bps.map_or_else(|| py.None().into_bound(py), Bound::clone);
            let reason = concat("spread_gate:", &text("spread_bps", &spread)?, "bps")?;
            return Ok(Spec::market("ENTER", reason));
        }
        let long = upper_is("position_side", position_side, "LONG")?;
        let sells = pricing::sells(false, long);
        let price = self.price_of(&policy, asset, Ok(sells), reference_price)?;
        if !(price > 0.0) {
            return Ok(taker());
        }
        let reason = intern!(py, "maker_entry").clone();
        Ok(Spec::limit(
            "ENTER",
            reason,
            price,
            policy.post_only,
            policy.entry_ttl_s,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn exit_plan<'py>(
        &self,
        py: Python<'py>,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
        spread_bps: Option<&Bound<'py, PyAny>>,
        reason: &Bound<'py, PyAny>,
        urgent: bool,
    ) -> Conv<Spec<'py>> {
        let policy = self.policy();
        // Formatted first: legacy builds the taker plan before trying a quote.
        let label = text("reason", reason)?;
        let taker =
            || -> Conv<Spec<'py>> { Ok(Spec::market("EXIT", concat("taker_exit:", &label, "")?)) };
        if !(policy.maker_exit
            && !urgent
            && is_positive("reference_price", reference_price)?
            && Self::spread_allows_maker(&policy, spread_bps)?)
        {
            return taker();
        }
        let long = upper_is("position_side", position_side, "LONG")?;
        let sells = pricing::sells(true, long);
        let price = self.price_of(&policy, asset, Ok(sells), reference_price)?;
        if !(price > 0.0) {
            return taker();
        }
        let reason = intern!(py, "maker_exit:TAKE_PROFIT").clone();
        Ok(Spec::limit(
            "EXIT",
            reason,
            price,
            policy.post_only,
            policy.exit_ttl_s,
        ))
    }

    /// The first-registered working entry, if any.
    fn first_working_entry(&self, py: Python<'_>) -> Option<Py<WorkingOrder>> {
        lock(&self.index).first_entry().map(|wo| wo.clone_ref(py))
    }

    /// Start a registry mutation; returns the generation it runs in.
    fn bump(&self) -> u64 {
        self.gen.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn changed_since(&self, g: u64) -> bool {
        self.gen.load(Ordering::Relaxed) != g
    }

    /// Drop index entries whose order is no longer a value of `working` (identity only,
    /// no user code); returns their positions.
    fn prune_orphans(&self, py: Python<'_>) -> Vec<u64> {
        let live: std::collections::HashSet<usize> = self
            .working
            .bind(py)
            .iter()
            .map(|(_, v)| v.as_ptr() as usize)
            .collect();
        let removed = lock(&self.index).remove_where(|w| !live.contains(&(w.as_ptr() as usize)));
        let positions = removed.iter().map(|(p, _)| *p).collect();
        for (_, w) in &removed {
            if let Ok(mut m) = w.bind(py).try_borrow_mut() {
                m.link = None;
            }
        }
        drop(removed);
        positions
    }

    /// `working[trade_id] = wo`, keeping the place of a replaced order.
    fn put(
        &self,
        key: &Bound<'_, PyAny>,
        wo: &Bound<'_, WorkingOrder>,
        deadline: f64,
        enter: bool,
    ) -> PyResult<()> {
        let py = key.py();
        let g = self.bump();
        let dict = self.working.bind(py);
        let invalid = |f: Fail| f.into_err("register_working");
        let old = guard("trade_id", key, dict.get_item(key)).map_err(invalid)?;
        guard("trade_id", key, dict.set_item(key, wo)).map_err(invalid)?;
        // A key's __eq__/__hash__ may have changed the registry meanwhile.
        let conflict = self.changed_since(g);
        let old = old.and_then(|o| o.cast_into::<WorkingOrder>().ok());
        let mut old_pos = match &old {
            Some(o) => o.try_borrow_mut()?.link.take().map(|l| l.pos),
            None => None,
        };
        if conflict {
            let orphans = self.prune_orphans(py);
            old_pos = old_pos.or_else(|| orphans.into_iter().min());
        }
        let (pos, displaced) = {
            let mut index = lock(&self.index);
            let pos = old_pos.unwrap_or_else(|| index.new_pos());
            (pos, index.insert(pos, wo.clone().unbind(), deadline, enter))
        };
        wo.try_borrow_mut()?.link = Some(Link {
            registry: Arc::downgrade(&self.index),
            pos,
        });
        drop(displaced);
        Ok(())
    }

    /// Remove and return the order under `trade_id`.
    fn pop<'py>(
        &self,
        method: &str,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, WorkingOrder>>> {
        let py = key.py();
        hashable("trade_id", key).map_err(|f| f.into_err(method))?;
        let dict = self.working.bind(py);
        let g = self.bump();
        let found = guard(
            "trade_id",
            key,
            dict.call_method1(intern!(py, "pop"), (key, py.None())),
        )
        .map_err(|f| f.into_err(method))?;
        if self.changed_since(g) {
            self.prune_orphans(py);
        }
        if found.is_none() {
            return Ok(None);
        }
        let wo = found.cast_into::<WorkingOrder>()?;
        let link = wo.try_borrow_mut()?.link.take();
        if let Some(link) = link {
            let removed = lock(&self.index).remove(link.pos);
            drop(removed);
        }
        Ok(Some(wo))
    }

    fn wo_arg<'a, 'py>(
        method: &str,
        wo: &'a Bound<'py, PyAny>,
    ) -> PyResult<&'a Bound<'py, WorkingOrder>> {
        wo.cast::<WorkingOrder>().map_err(|_| {
            PyTypeError::new_err(format!("{method}() got an invalid wo: {}", type_name(wo)))
        })
    }

    fn note_removed(
        &self,
        py: Python<'_>,
        wo: Bound<'_, WorkingOrder>,
        trade_id: &Bound<'_, PyAny>,
        counter: Counter,
        stage: Stage,
    ) -> PyResult<()> {
        self.cells.inc(counter);
        self.notify(py, intern!(py, "pop"), trade_id, &wo)?;
        let ctx = Ctx::one("trade_id", trade_id.clone());
        self.dispatch(py, stage, wo.into_any(), &ctx)?;
        Ok(())
    }

    /// Tell the observer, if any, of a registry change; no lock is held.
    fn notify<'py>(
        &self,
        py: Python<'py>,
        op: &Bound<'py, PyString>,
        trade_id: &Bound<'py, PyAny>,
        wo: &Bound<'py, WorkingOrder>,
    ) -> PyResult<()> {
        let observer = lock(&self.state).observer.as_ref().map(|o| o.clone_ref(py));
        match observer {
            Some(o) => o.bind(py).call1((op, trade_id, wo)).map(drop),
            None => Ok(()),
        }
    }

    /// Replace the stage's hook list with the first equal to `hook` removed.
    fn unregister(&self, py: Python<'_>, stage: Stage, hook: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(snapshot) = lock(&self.state).hooks.get(stage) else {
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
            let mut state = lock(&self.state);
            match state.hooks.get(stage) {
                Some(current) if current.iter().any(|h| h.as_ptr() == target) => {
                    let mut skipped = false;
                    let rest: Vec<Py<PyAny>> = current
                        .iter()
                        .filter(|h| {
                            if !skipped && h.as_ptr() == target {
                                skipped = true;
                                false
                            } else {
                                true
                            }
                        })
                        .map(|h| h.clone_ref(py))
                        .collect();
                    let old = state.hooks.replace(stage, rest);
                    self.hooked.store(state.hooks.mask(), Ordering::Relaxed);
                    Some((old, current))
                }
                _ => None,
            }
        };
        drop(old);
        drop(snapshot);
        Ok(())
    }
}

/// `str(value)` of a float, as Python prints it (`nan`, `inf`, `1e+300`).
fn pyfloat_text(py: Python<'_>, value: f64) -> String {
    PyFloat::new(py, value)
        .str()
        .map_or_else(|_| value.to_string(), |s| s.to_string())
}

/// A `BaseException` that is not an `Exception`, or a `MemoryError`: never
/// turned into another error.
fn is_fatal(py: Python<'_>, err: &PyErr) -> bool {
    !err.is_instance_of::<PyException>(py)
        || err.is_instance_of::<pyo3::exceptions::PyMemoryError>(py)
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

fn check_clock(clock: &Bound<'_, PyAny>) -> PyResult<()> {
    if clock.is_callable() {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "ExecutionRouter() got an invalid clock: {}",
            type_name(clock)
        )))
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
        check_clock(&clock)?;
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
            cells,
            counters,
            working: PyDict::new(py).unbind(),
            index: Arc::new(Registry::default()),
            gen: std::sync::atomic::AtomicU64::new(0),
            hooked: AtomicU8::new(0),
            state: Mutex::new(State {
                config: config.unbind(),
                policy,
                logger: logger.unbind(),
                clock: clock.unbind(),
                hooks: HookTable::default(),
                observer: None,
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
        check_clock(clock)?;
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
        let me = slf.get();
        let old = {
            let mut state = lock(&me.state);
            let list = state.hooks.appended(py, parsed, r#fn.clone().unbind());
            let old = state.hooks.replace(parsed, list);
            me.hooked.store(state.hooks.mask(), Ordering::Relaxed);
            old
        };
        drop(old);
        Ok(HookHandle {
            target: Mutex::new(Some((slf.clone().unbind(), r#fn.clone().unbind()))),
            stage: parsed,
        })
    }

    // ── pricing ──────────────────────────────────────────────────────────

    fn tick_size(&self, asset: &Bound<'_, PyAny>) -> PyResult<f64> {
        let _depth = Depth::enter("tick_size")?;
        self.tick_of(&self.policy(), asset)
            .map_err(|f| f.into_err("tick_size"))
    }

    #[pyo3(signature = (*, asset, order_side, reference_price))]
    fn maker_price(
        &self,
        asset: &Bound<'_, PyAny>,
        order_side: &Bound<'_, PyAny>,
        reference_price: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        let _depth = Depth::enter("maker_price")?;
        self.price_of(&self.policy(), asset, Err(order_side), reference_price)
            .map_err(|f| f.into_err("maker_price"))
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

    /// Plan an ENTER. Never raises on a bad value: falls back to MARKET.
    #[pyo3(signature = (*, trade_id, asset, position_side, reference_price, spread_bps = None))]
    fn plan_entry<'py>(
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
            return self.too_deep_plan(py, "plan_entry", "ENTER", depth.outer());
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
        if let Some(blocker) = self.first_working_entry(py) {
            self.cells.inc(Counter::SuppressedDupEnter);
            let trade_id = blocker
                .bind(py)
                .try_borrow()
                .map_or_else(|_| py.None(), |b| b.trade_id.clone_ref(py));
            let reason = concat("working_entry_exists:", &label(trade_id.bind(py))?, "")?;
            let plan = Spec::market("ENTER", reason).suppressed().build(py)?;
            return Ok(plan.into_any());
        }
        let spec = match self.entry_plan(py, asset, position_side, reference_price, spread_bps) {
            Ok(spec) => spec,
            Err(fail) => {
                return Ok(self
                    .invalid_plan(py, "plan_entry", "ENTER", fail)?
                    .into_any())
            }
        };
        let plan = spec.build(py)?.into_any();
        let plan = self.dispatch(py, Stage::PreSubmit, plan, &ctx)?;
        let plan = plan.cast_into::<ExecutionPlan>()?;
        let p = plan.get();
        if p.is_maker {
            self.cells.inc(Counter::MakerEntries);
        } else if !p.suppress {
            self.cells.inc(Counter::TakerEntries);
        }
        Ok(plan.into_any())
    }

    /// Plan an EXIT. Exits are never skipped, except when a maker exit for
    /// the same trade is resting and the new reason is not urgent.
    #[pyo3(signature = (*, trade_id, asset, position_side, reference_price, reason, spread_bps = None))]
    #[allow(clippy::too_many_arguments)]
    fn plan_exit<'py>(
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
            return self.too_deep_plan(py, "plan_exit", "EXIT", depth.outer());
        }
        self.cells.inc(Counter::PlansExit);
        let read_urgent = || -> Conv<bool> {
            if is_blank("reason", reason)? {
                return Ok(true);
            }
            Ok(!upper_is("reason", reason, "TAKE_PROFIT")?)
        };
        let urgent = match read_urgent() {
            Ok(r) => r,
            Err(fail) => return Ok(self.invalid_plan(py, "plan_exit", "EXIT", fail)?.into_any()),
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
        let found = match hashable("trade_id", trade_id) {
            Ok(()) => self.working.bind(py).get_item(trade_id),
            Err(fail) => return Ok(self.invalid_plan(py, "plan_exit", "EXIT", fail)?.into_any()),
        };
        let found = match found {
            Ok(found) => found,
            Err(err) => {
                let fail = Fail::invalid("trade_id", trade_id, &err);
                return Ok(self.invalid_plan(py, "plan_exit", "EXIT", fail)?.into_any());
            }
        };
        let working_exit = found
            .and_then(|w| w.cast_into::<WorkingOrder>().ok())
            .is_some_and(|w| {
                w.try_borrow()
                    .is_ok_and(|w| w.action.bind(py).to_str().is_ok_and(|a| a == "EXIT"))
            });
        if working_exit {
            if !urgent {
                self.cells.inc(Counter::SuppressedDupExit);
                let reason = intern!(py, "working_exit_exists").clone();
                return Ok(Spec::market("EXIT", reason)
                    .suppressed()
                    .build(py)?
                    .into_any());
            }
            // Urgent: the runtime cancels the resting quote, then sends this.
            self.cells.inc(Counter::ExitEscalations);
            let preempt = || -> PyResult<Bound<'py, PyDict>> {
                let metadata = PyDict::new(py);
                metadata.set_item(intern!(py, "preempt_working"), true)?;
                Ok(metadata)
            };
            let label = match text("reason", reason) {
                Ok(label) => label,
                Err(fail) => {
                    let plan = self.invalid_plan(py, "plan_exit", "EXIT", fail)?;
                    let metadata = plan.get().metadata_dict(py);
                    metadata.update(preempt()?.as_mapping())?;
                    return Ok(plan.into_any());
                }
            };
            let reason = concat("escalate:", &label, "")?;
            let plan = Spec::market("EXIT", reason)
                .with_metadata(preempt()?)
                .build(py)?;
            let plan = self.dispatch(py, Stage::PreSubmit, plan.into_any(), &ctx)?;
            let plan = plan.cast_into::<ExecutionPlan>()?;
            if plan.get().suppress {
                let reason = intern!(py, "hook_suppress_overridden_market").clone();
                let plan = Spec::market("EXIT", reason).with_metadata(preempt()?);
                return Ok(plan.build(py)?.into_any());
            }
            return Ok(plan.into_any());
        }
        let spec = match self.exit_plan(
            py,
            asset,
            position_side,
            reference_price,
            spread_bps,
            reason,
            urgent,
        ) {
            Ok(spec) => spec,
            Err(fail) => return Ok(self.invalid_plan(py, "plan_exit", "EXIT", fail)?.into_any()),
        };
        let plan = spec.build(py)?.into_any();
        let mut plan = self
            .dispatch(py, Stage::PreSubmit, plan, &ctx)?
            .cast_into::<ExecutionPlan>()?;
        if plan.get().suppress {
            let reason = intern!(py, "hook_suppress_overridden_market").clone();
            plan = Spec::market("EXIT", reason).build(py)?;
        }
        if !plan.get().is_sane(py) {
            plan = Spec::market("EXIT", intern!(py, "sanity_fallback_market").clone()).build(py)?;
        }
        let p = plan.get();
        if p.is_maker {
            self.cells.inc(Counter::MakerExits);
        } else if !p.suppress {
            self.cells.inc(Counter::TakerExits);
        }
        Ok(plan.into_any())
    }

    // ── working-order registry ───────────────────────────────────────────

    /// Record a maker quote the runtime has submitted.
    #[pyo3(signature = (*, trade_id, asset, position_side, plan, base_trade_id = None, retry_n = None))]
    #[allow(clippy::too_many_arguments)]
    fn register_working<'py>(
        &self,
        py: Python<'py>,
        trade_id: &Bound<'py, PyAny>,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        plan: &Bound<'py, PyAny>,
        base_trade_id: Option<&Bound<'py, PyAny>>,
        retry_n: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, WorkingOrder>> {
        let _depth = Depth::enter("register_working")?;
        const METHOD: &str = "register_working";
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
        let now = self.now(py, METHOD)?;
        let p = plan.get();
        let deadline = now + py_max(0.5, p.ttl_s);
        if !deadline.is_finite() {
            return Err(PyValueError::new_err(format!(
                "{METHOD}() got an invalid plan: ttl_s {} gives no deadline",
                pyfloat_text(py, p.ttl_s)
            )));
        }
        let enter = p.action_is(py, "ENTER");
        let retries_left = self.policy().retries_left(enter, retry_n);
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
            },
        )?;
        self.put(trade_id, &wo, deadline, enter)?;
        self.notify(py, intern!(py, "put"), trade_id, &wo)?;
        let ctx = Ctx::one("trade_id", trade_id.clone());
        self.dispatch(py, Stage::OnWorking, wo.clone().into_any(), &ctx)?;
        Ok(wo)
    }

    fn working<'py>(
        &self,
        py: Python<'py>,
        trade_id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let _depth = Depth::enter("working")?;
        hashable("trade_id", trade_id).map_err(|f| f.into_err("working"))?;
        guard(
            "trade_id",
            trade_id,
            self.working.bind(py).get_item(trade_id),
        )
        .map_err(|f| f.into_err("working"))
    }

    /// Working orders in first-registration order.
    fn working_orders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let _depth = Depth::enter("working_orders")?;
        Ok(self.working.bind(py).values())
    }

    fn has_working_entry(&self) -> PyResult<bool> {
        let _depth = Depth::enter("has_working_entry")?;
        Ok(lock(&self.index).has_entry())
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
        let due: Vec<Py<WorkingOrder>> = {
            let index = lock(&self.index);
            index.due(t).into_iter().map(|w| w.clone_ref(py)).collect()
        };
        PyList::new(py, due)
    }

    fn note_fill(&self, py: Python<'_>, trade_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("note_fill")?;
        if let Some(wo) = self.pop("note_fill", trade_id)? {
            self.note_removed(py, wo, trade_id, Counter::FillsWorking, Stage::OnFill)?;
        }
        Ok(())
    }

    fn note_cancel(&self, py: Python<'_>, trade_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("note_cancel")?;
        if let Some(wo) = self.pop("note_cancel", trade_id)? {
            self.note_removed(py, wo, trade_id, Counter::Cancels, Stage::OnCancel)?;
        }
        Ok(())
    }

    fn clear_working(&self, py: Python<'_>, trade_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let _depth = Depth::enter("clear_working")?;
        if let Some(wo) = self.pop("clear_working", trade_id)? {
            self.notify(py, intern!(py, "pop"), trade_id, &wo)?;
        }
        Ok(())
    }

    /// Install `fn(op, trade_id, wo)`, told of every registry change (None removes it);
    /// returns the observer it replaces.
    #[pyo3(signature = (r#fn))]
    fn _observe_registry(&self, r#fn: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let _depth = Depth::enter("_observe_registry")?;
        let new = if r#fn.is_none() {
            None
        } else if r#fn.is_callable() {
            Some(r#fn.clone().unbind())
        } else {
            return Err(PyTypeError::new_err(format!(
                "_observe_registry() got an invalid fn: {}",
                type_name(r#fn)
            )));
        };
        Ok(std::mem::replace(&mut lock(&self.state).observer, new))
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
        let price = self
            .price_of(
                &policy,
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
            Spec::limit("ENTER", reason, price, policy.post_only, policy.entry_ttl_s)
        } else {
            Spec::market("ENTER", intern!(py, "retry_price_insane_market").clone())
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
        let enter = order.try_borrow()?.is_enter(py);
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
            let plan = Spec::market("ENTER", intern!(py, "entry_miss_market_fallback").clone())
                .with_metadata(metadata(base_of()?)?)
                .build(py)?;
            return Ok((new_tid.into_any(), plan));
        }
        self.cells.inc(Counter::ExitEscalations);
        self.dispatch(py, Stage::OnEscalate, wo.clone(), &ctx)?;
        let plan = Spec::market("EXIT", intern!(py, "exit_ttl_market_fallback").clone())
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
        for wo in self.working.bind(py).values().iter() {
            let wo = wo.cast_into::<WorkingOrder>()?;
            let now = self.now(py, "snapshot")?;
            let (trade_id, action, asset, submitted_at, retry_n) = {
                let w = wo.try_borrow()?;
                let fields = (&w.trade_id, &w.action, &w.asset);
                (
                    fields.0.clone_ref(py),
                    fields.1.clone_ref(py),
                    fields.2.clone_ref(py),
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
        visit.call(&self.working)?;
        if let Ok(state) = self.state.try_lock() {
            visit.call(&state.config)?;
            visit.call(&state.logger)?;
            visit.call(&state.clock)?;
            if let Some(o) = &state.observer {
                visit.call(o)?;
            }
            state.hooks.traverse(&visit)?;
        }
        if let Ok(index) = self.index.try_lock() {
            for wo in index.items() {
                visit.call(wo)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let hooks = {
                let mut state = lock(&self.state);
                self.hooked.store(0, Ordering::Relaxed);
                state.hooks.take_all()
            };
            drop(hooks);
            let index = std::mem::take(&mut *lock(&self.index));
            drop(index);
            self.working.bind(py).clear();
            let old = {
                let mut state = lock(&self.state);
                (
                    std::mem::replace(&mut state.logger, py.None()),
                    std::mem::replace(&mut state.clock, py.None()),
                    state.observer.take(),
                )
            };
            drop(old);
        });
    }
}

/// The callable `register_hook` returns: calling it unregisters the hook.
#[pyclass(module = "exec_router._core", name = "HookHandle", frozen)]
pub struct HookHandle {
    target: Mutex<Option<(Py<ExecutionRouter>, Py<PyAny>)>>,
    stage: Stage,
}

#[pymethods]
impl HookHandle {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let _depth = Depth::enter("unregister")?;
        let target = lock(&self.target)
            .as_ref()
            .map(|(r, h)| (r.clone_ref(py), h.clone_ref(py)));
        if let Some((router, hook)) = target {
            router.get().unregister(py, self.stage, hook.bind(py))?;
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
