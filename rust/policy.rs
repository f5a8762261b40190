//! The execution policy read from an `ExecConfig`, and its decisions:
//! entry and exit plans, quote prices, ticks, the miss action.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use crate::convert::{
    concat, is_blank, is_positive, text, to_float, type_name, upper, upper_is, Conv,
};
use crate::counters::{Cells, Counter};
use crate::plan::{Action, Quote, Spec};
use crate::pricing::{self, TickTable};
use crate::reasons;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    Skip,
    Retry,
    Market,
}

impl Miss {
    pub fn parse(s: &str) -> Option<Miss> {
        match s {
            "skip" => Some(Miss::Skip),
            "retry" => Some(Miss::Retry),
            "market" => Some(Miss::Market),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Policy {
    pub maker_entry: bool,
    pub maker_exit: bool,
    pub entry_ttl_s: f64,
    pub exit_ttl_s: f64,
    pub entry_miss: Miss,
    pub entry_retries: i64,
    pub exhaust_market: bool,
    pub offset_ticks: f64,
    pub max_spread_bps: f64,
    pub post_only: bool,
    pub ticks: TickTable,
    /// The table's symbols as interned strings: a caller's literal symbol is
    /// found by identity, without hashing.
    pub interned: Vec<(Py<PyString>, f64)>,
}

impl Policy {
    /// The tick for `asset`, as `tick_size` computes it.
    pub fn tick_of(&self, asset: &Bound<'_, PyAny>) -> Conv<f64> {
        if let Some((_, tick)) = self
            .interned
            .iter()
            .find(|(s, _)| s.as_ptr() == asset.as_ptr())
        {
            return Ok(*tick);
        }
        if let Ok(s) = asset.cast_exact::<PyString>() {
            if let Ok(text) = s.to_str() {
                if text.is_ascii() {
                    return Ok(self.ticks.get_ascii(text));
                }
            }
        }
        if is_blank("asset", asset)? {
            return Ok(0.0);
        }
        let sym = upper("asset", asset)?;
        Ok(sym.to_str().map_or(0.0, |s| self.ticks.get(s)))
    }

    /// `maker_price` with the side already known (`Ok(sells)`) or still an
    /// argument to read.
    pub fn price_of(
        &self,
        asset: &Bound<'_, PyAny>,
        side: Result<bool, &Bound<'_, PyAny>>,
        reference_price: &Bound<'_, PyAny>,
    ) -> Conv<f64> {
        let reference = to_float("reference_price", reference_price)?;
        if !(reference > 0.0) || reference == f64::INFINITY {
            return Ok(0.0);
        }
        let tick = self.tick_of(asset)?;
        let py = asset.py();
        let sells = match side {
            Ok(sells) => sells,
            Err(s) if s.is(intern!(py, "SELL")) => true,
            Err(s) if s.is(intern!(py, "BUY")) => false,
            Err(order_side) => upper_is("order_side", order_side, "SELL")?,
        };
        Ok(pricing::maker_price(
            reference,
            tick,
            self.offset_ticks,
            sells,
        ))
    }

    fn spread_allows_maker(&self, spread_bps: Option<&Bound<'_, PyAny>>) -> Conv<bool> {
        match spread_bps {
            None => Ok(true),
            Some(s) => Ok(to_float("spread_bps", s)? <= self.max_spread_bps),
        }
    }

    fn quote(&self, price: f64, action: Action) -> Quote {
        let ttl_s = match action {
            Action::Enter => self.entry_ttl_s,
            Action::Exit => self.exit_ttl_s,
        };
        Quote {
            price,
            post_only: self.post_only,
            ttl_s,
        }
    }

    /// The plan for an entry (before hooks and the duplicate guard).
    pub fn entry_plan<'py>(
        &self,
        cells: &Cells,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
        spread_bps: Option<&Bound<'py, PyAny>>,
    ) -> Conv<Spec<'py>> {
        let py = asset.py();
        let taker = || Spec::market(Action::Enter, intern!(py, "taker_default").clone());
        if !(self.maker_entry && is_positive("reference_price", reference_price)?) {
            return Ok(taker());
        }
        if !self.spread_allows_maker(spread_bps)? {
            cells.inc(Counter::SpreadGateTaker);
            let spread = spread_bps.map_or_else(|| py.None().into_bound(py), Bound::clone);
            let reason = concat("spread_gate:", &text("spread_bps", &spread)?, "bps")?;
            return Ok(Spec::market(Action::Enter, reason));
        }
        let long = upper_is("position_side", position_side, "LONG")?;
        let price = self.price_of(asset, Ok(pricing::sells(false, long)), reference_price)?;
        if !(price > 0.0) {
            return Ok(taker());
        }
        let reason = intern!(py, "maker_entry").clone();
        Ok(Spec::limit(
            Action::Enter,
            reason,
            self.quote(price, Action::Enter),
        ))
    }

    /// The plan for an exit with no resting exit quote (before hooks).
    pub fn exit_plan<'py>(
        &self,
        asset: &Bound<'py, PyAny>,
        position_side: &Bound<'py, PyAny>,
        reference_price: &Bound<'py, PyAny>,
        spread_bps: Option<&Bound<'py, PyAny>>,
        reason: &Bound<'py, PyAny>,
        urgent: bool,
    ) -> Conv<Spec<'py>> {
        let py = asset.py();
        // Formatted first: legacy builds the taker plan before trying a quote.
        let taker_reason = reasons::taker_exit(reason)?;
        let taker = || Spec::market(Action::Exit, taker_reason.clone());
        if !(self.maker_exit
            && !urgent
            && is_positive("reference_price", reference_price)?
            && self.spread_allows_maker(spread_bps)?)
        {
            return Ok(taker());
        }
        let long = upper_is("position_side", position_side, "LONG")?;
        let price = self.price_of(asset, Ok(pricing::sells(true, long)), reference_price)?;
        if !(price > 0.0) {
            return Ok(taker());
        }
        let reason = intern!(py, "maker_exit:TAKE_PROFIT").clone();
        Ok(Spec::limit(
            Action::Exit,
            reason,
            self.quote(price, Action::Exit),
        ))
    }

    /// The miss action for an expired working entry with `retries_left`.
    pub fn miss_action(&self, retries_left: i64) -> Miss {
        match self.entry_miss {
            Miss::Retry if retries_left > 0 => Miss::Retry,
            Miss::Retry if self.exhaust_market => Miss::Market,
            Miss::Retry => Miss::Skip,
            other => other,
        }
    }

    /// Re-quotes left for a newly registered order.
    pub fn retries_left(&self, enter: bool, retry_n: i64) -> i64 {
        if retry_n > 0 {
            self.entry_retries.saturating_sub(retry_n).max(0)
        } else if enter {
            self.entry_retries
        } else {
            0
        }
    }
}

static EXEC_CONFIG: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DEFAULT_TICKS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn exec_config_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    EXEC_CONFIG.import(py, "exec_router.config", "ExecConfig")
}

/// `ExecConfig()`.
pub fn default_config(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    exec_config_type(py)?.call0()
}

fn str_attr(config: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    config
        .getattr(name)?
        .cast_into::<PyString>()?
        .to_str()
        .map(str::to_owned)
}

fn ticks_of(mapping: &Bound<'_, PyAny>, out: &mut Vec<(String, f64)>) -> PyResult<()> {
    let dict = PyDict::new(mapping.py());
    dict.call_method1("update", (mapping,))?;
    for (k, v) in dict.iter() {
        out.push((k.extract::<String>()?, v.extract::<f64>()?));
    }
    Ok(())
}

/// Read a validated `ExecConfig` into a policy.
pub fn from_config(config: &Bound<'_, PyAny>) -> PyResult<Policy> {
    let py = config.py();
    if !config.is_instance(exec_config_type(py)?)? {
        return Err(PyTypeError::new_err(format!(
            "ExecutionRouter got an invalid config: {}",
            type_name(config)
        )));
    }
    let style = str_attr(config, "style")?;
    let mut ticks = Vec::new();
    let defaults = DEFAULT_TICKS.import(py, "exec_router.constants", "DEFAULT_TICKS")?;
    ticks_of(defaults, &mut ticks)?;
    ticks_of(&config.getattr("tick_overrides")?, &mut ticks)?;
    let table = TickTable::new(ticks.iter().map(|(s, t)| (s.as_str(), *t)));
    Ok(Policy {
        maker_entry: matches!(style.as_str(), "maker_entry" | "maker_both"),
        maker_exit: matches!(style.as_str(), "maker_exit" | "maker_both"),
        entry_ttl_s: config.getattr("entry_ttl_s")?.extract()?,
        exit_ttl_s: config.getattr("exit_ttl_s")?.extract()?,
        entry_miss: Miss::parse(&str_attr(config, "entry_miss")?).unwrap_or(Miss::Skip),
        entry_retries: config.getattr("entry_retries")?.extract()?,
        exhaust_market: str_attr(config, "retry_exhaust")? == "market",
        offset_ticks: config.getattr("offset_ticks")?.extract()?,
        max_spread_bps: config.getattr("max_spread_bps")?.extract()?,
        post_only: config.getattr("post_only")?.extract()?,
        // Only keys a lookup can reach (already upper-case ASCII), at their final tick.
        interned: ticks
            .iter()
            .filter(|(s, _)| s.is_ascii() && !s.bytes().any(|b| b.is_ascii_lowercase()))
            .map(|(s, _)| (PyString::intern(py, s).unbind(), table.get(s)))
            .collect(),
        ticks: table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entry_miss: Miss, exhaust_market: bool) -> Policy {
        Policy {
            maker_entry: true,
            maker_exit: true,
            entry_ttl_s: 8.0,
            exit_ttl_s: 5.0,
            entry_miss,
            entry_retries: 2,
            exhaust_market,
            offset_ticks: 1.0,
            max_spread_bps: 5.0,
            post_only: true,
            ticks: TickTable::default(),
            interned: Vec::new(),
        }
    }

    #[test]
    fn miss_actions() {
        assert_eq!(policy(Miss::Skip, true).miss_action(5), Miss::Skip);
        assert_eq!(policy(Miss::Market, false).miss_action(0), Miss::Market);
        assert_eq!(policy(Miss::Retry, false).miss_action(1), Miss::Retry);
        assert_eq!(policy(Miss::Retry, false).miss_action(0), Miss::Skip);
        assert_eq!(policy(Miss::Retry, true).miss_action(0), Miss::Market);
        assert_eq!(policy(Miss::Retry, true).miss_action(-3), Miss::Market);
    }

    #[test]
    fn retries_left_counts_down_and_never_goes_negative() {
        let p = policy(Miss::Retry, false);
        assert_eq!(p.retries_left(true, 0), 2);
        assert_eq!(p.retries_left(false, 0), 0);
        assert_eq!(p.retries_left(true, 1), 1);
        assert_eq!(p.retries_left(false, 1), 1);
        assert_eq!(p.retries_left(true, 5), 0);
        assert_eq!(p.retries_left(true, i64::MIN), 2);
        assert_eq!(p.retries_left(true, i64::MAX), 0);
    }
}
