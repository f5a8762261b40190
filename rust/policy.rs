//! The execution policy read from an `ExecConfig`, and its decisions.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use crate::convert::type_name;
use crate::pricing::TickTable;

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

#[derive(Debug, Clone)]
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
}

impl Policy {
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
        ticks: TickTable::new(ticks),
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
