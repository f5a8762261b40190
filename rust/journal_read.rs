//! Reading a journal back, natively: the same rules as `read()` in
//! `exec_router/journal_format.py` (the spec), for restores of a million
//! orders. Returns plain Python values; the Python side builds the router.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::journal_error;
use crate::journal_format::{
    counters_len, Kind, Mask, ALL, FRAME_HEAD, HEADER_LEN, KIND_SEQ, MAGIC, MAX_NESTING, VERSION,
};

/// The shortest payload: kind, seq and an empty counter mask.
const PREFIX_MIN: usize = KIND_SEQ + 2;

struct Dec<'a, 'py> {
    py: Python<'py>,
    data: &'a [u8],
    pos: usize,
    at: &'a str,
}

impl<'a, 'py> Dec<'a, 'py> {
    fn err(&self, what: &str) -> PyErr {
        journal_error(self.py, &format!("{}: {what}", self.at))
    }

    fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.err("a record ends early"))?;
        let chunk = data
            .get(self.pos..end)
            .ok_or_else(|| self.err("a record ends early"))?;
        self.pos = end;
        Ok(chunk)
    }

    fn u8(&mut self) -> PyResult<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn arr8(&mut self) -> PyResult<[u8; 8]> {
        let mut a = [0_u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(a)
    }

    fn f64(&mut self) -> PyResult<f64> {
        Ok(f64::from_le_bytes(self.arr8()?))
    }

    fn i64(&mut self) -> PyResult<i64> {
        Ok(i64::from_le_bytes(self.arr8()?))
    }

    fn u32(&mut self) -> PyResult<u32> {
        let mut a = [0_u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn text(&mut self) -> PyResult<Bound<'py, PyAny>> {
        let v = self.value(0)?;
        if !v.is_exact_instance_of::<PyString>() {
            return Err(self.err("a str field holds another type"));
        }
        Ok(v)
    }

    fn value(&mut self, depth: u32) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        if depth > MAX_NESTING {
            return Err(self.err("a value nested too deep"));
        }
        Ok(match self.u8()? {
            0 => py.None().into_bound(py),
            1 => false.into_pyobject(py)?.to_owned().into_any(),
            2 => true.into_pyobject(py)?.to_owned().into_any(),
            3 => self.i64()?.into_pyobject(py)?.into_any(),
            4 => self.f64()?.into_pyobject(py)?.into_any(),
            5 => {
                let n = self.u32()? as usize;
                let raw = self.take(n)?;
                let s =
                    std::str::from_utf8(raw).map_err(|_| self.err("a str that is not UTF-8"))?;
                PyString::new(py, s).into_any()
            }
            tag @ (6 | 7) => {
                let n = self.u32()? as usize;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                if tag == 6 {
                    PyTuple::new(py, items)?.into_any()
                } else {
                    PyList::new(py, items)?.into_any()
                }
            }
            8 => {
                let n = self.u32()?;
                let d = PyDict::new(py);
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    d.set_item(k, v)
                        .map_err(|_| self.err("an unhashable dict key"))?;
                }
                d.into_any()
            }
            tag => return Err(self.err(&format!("unknown value tag {tag}"))),
        })
    }

    /// A PUT body as the tuple `journal_format.Order` takes.
    fn order(&mut self) -> PyResult<Bound<'py, PyTuple>> {
        let py = self.py;
        let trade_id = self.value(0)?;
        let asset = self.value(0)?;
        let side = self.text()?;
        let action = self.text()?;
        let plan = PyDict::new(py);
        plan.set_item(intern!(py, "order_type"), self.text()?)?;
        plan.set_item(intern!(py, "limit_price"), self.f64()?)?;
        plan.set_item(intern!(py, "post_only"), self.u8()? != 0)?;
        plan.set_item(intern!(py, "ttl_s"), self.f64()?)?;
        plan.set_item(intern!(py, "is_maker"), self.u8()? != 0)?;
        plan.set_item(intern!(py, "action"), self.text()?)?;
        plan.set_item(intern!(py, "reason"), self.text()?)?;
        plan.set_item(intern!(py, "suppress"), self.u8()? != 0)?;
        let metadata = self.value(0)?;
        if !metadata.is_exact_instance_of::<PyDict>() {
            return Err(self.err("plan.metadata is not a dict"));
        }
        plan.set_item(intern!(py, "metadata"), metadata)?;
        let submitted_at = self.f64()?.into_pyobject(py)?.into_any();
        let deadline = self.f64()?.into_pyobject(py)?.into_any();
        let retries_left = self.i64()?.into_pyobject(py)?.into_any();
        let base = self.value(0)?;
        let retry_n = self.i64()?.into_pyobject(py)?.into_any();
        let clock_at = self.f64()?.into_pyobject(py)?.into_any();
        let wall_at = self.f64()?.into_pyobject(py)?.into_any();
        let boot_at = self.f64()?.into_pyobject(py)?.into_any();
        if self.pos != self.data.len() {
            return Err(self.err(&format!(
                "{} bytes after the order",
                self.data.len() - self.pos
            )));
        }
        PyTuple::new(
            py,
            [
                trade_id,
                asset,
                side,
                action,
                plan.into_any(),
                submitted_at,
                deadline,
                retries_left,
                base,
                retry_n,
                clock_at,
                wall_at,
                boot_at,
            ],
        )
    }
}

fn zero(data: &[u8], start: usize) -> bool {
    data.get(start..).is_none_or(|t| t.iter().all(|&b| b == 0))
}

fn le_u32(data: &[u8], at: usize) -> u32 {
    let mut a = [0_u8; 4];
    if let Some(s) = data.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// `journal_format.read(data, name)` natively: a tuple of (file_id, boot_id,
/// created, config, counters, orders, end, torn, seq, records), orders a dict
/// of trade id -> the 13-tuple of `journal_format.Order`.
#[pyfunction]
pub fn _journal_read<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let shown = PyString::new(py, name).repr()?.to_string();
    let fail = |msg: String| journal_error(py, &msg);
    if data.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        let kind = if data.is_empty() {
            "an empty file"
        } else {
            "no journal header at offset 0"
        };
        return Err(fail(format!(
            "{shown} is not an exec-router journal: {kind}"
        )));
    }
    if data.len() < HEADER_LEN {
        return Err(fail(format!(
            "{shown} is a damaged exec-router journal: header cut at offset {}",
            data.len()
        )));
    }
    let (version, length) = (le_u32(data, 8), le_u32(data, 12));
    if version > VERSION {
        return Err(fail(format!(
            "{shown} is an exec-router journal of format {version}, newer than this \
             exec_router reads (up to {VERSION}); upgrade exec_router"
        )));
    }
    let head_ok = data
        .get(..60)
        .is_some_and(|h| crc32c::crc32c(h) == le_u32(data, 60));
    if version < 1 || length as usize != HEADER_LEN || !head_ok {
        return Err(fail(format!(
            "{shown} is a damaged exec-router journal: bad header at offset 0"
        )));
    }
    if version < VERSION {
        return Err(fail(format!(
            "{shown} is an exec-router journal of format {version}, a development format that \
             was never released; this exec_router reads format {VERSION}"
        )));
    }
    let mut created = [0_u8; 8];
    created.copy_from_slice(data.get(48..56).unwrap_or(&[0; 8]));
    let orders = PyDict::new(py);
    let mut config = py.None().into_bound(py);
    let mut counters = [0_i64; crate::counters::KEYS.len()];
    let (size, mut pos, mut seq, mut records, mut torn) =
        (data.len(), HEADER_LEN, 0_u64, 0_u64, false);
    let mut snapshot_left: u64 = 0;
    while pos < size {
        if pos + FRAME_HEAD > size {
            torn = !zero(data, pos);
            break;
        }
        let (length, crc) = (le_u32(data, pos) as usize, le_u32(data, pos + 4));
        let stop = pos + FRAME_HEAD + length;
        if length == 0 && zero(data, pos) {
            break;
        }
        let payload = data.get(pos + FRAME_HEAD..stop);
        let good = length >= PREFIX_MIN && payload.is_some_and(|p| crc32c::crc32c(p) == crc);
        let Some(payload) = payload.filter(|_| good) else {
            if zero(data, stop.min(size)) && length < (1 << 31) {
                torn = true;
                break;
            }
            return Err(fail(format!(
                "{shown} is a damaged exec-router journal: bad record at offset {pos}"
            )));
        };
        let at = format!("{shown}: record at offset {pos}");
        let kind = payload.first().copied().unwrap_or(0);
        let mut d = Dec {
            py,
            data: payload,
            pos: 1,
            at: &at,
        };
        let rseq = u64::from_le_bytes(d.arr8()?);
        let mask = Mask::from_le_bytes([d.u8()?, d.u8()?]);
        let full = kind == Kind::Config as u8 || kind == Kind::Snapshot as u8;
        if full && mask != ALL {
            return Err(fail(format!("{at}: bad counters (mask {mask:#06x})")));
        }
        let mut counts = counters;
        for (i, slot) in counts.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *slot = d.i64()?;
            }
        }
        let body = payload.get(KIND_SEQ + counters_len(mask)..).unwrap_or(&[]);
        let mut d = Dec {
            py,
            data: body,
            pos: 0,
            at: &at,
        };
        if !(1..=4).contains(&kind) || rseq <= seq {
            return Err(fail(format!("{at} is damaged (kind {kind}, seq {rseq})")));
        }
        if snapshot_left > 0 && kind != Kind::Put as u8 {
            return Err(fail(format!("{at}: a snapshot ends early")));
        }
        if kind == Kind::Snapshot as u8 {
            orders.clear();
            if body.len() != 8 {
                return Err(fail(format!("{at}: a bad snapshot record")));
            }
            snapshot_left = u64::from_le_bytes(d.arr8()?);
        } else if kind == Kind::Put as u8 {
            let order = d.order()?;
            let key = order.get_item(0)?;
            orders
                .set_item(key, order)
                .map_err(|_| fail(format!("{at}: an unhashable trade id")))?;
            snapshot_left = snapshot_left.saturating_sub(1);
        } else if kind == Kind::Pop as u8 {
            let key = d.value(0)?;
            let found = orders
                .contains(&key)
                .map_err(|_| fail(format!("{at}: an unhashable trade id")))?;
            if found {
                orders.del_item(key)?;
            }
        } else {
            let cfg = d.value(0)?;
            if !cfg.is_exact_instance_of::<PyDict>() {
                return Err(fail(format!("{at}: the config is not a mapping")));
            }
            config = cfg;
        }
        counters = counts;
        seq = rseq;
        records += 1;
        pos = stop;
    }
    if snapshot_left > 0 {
        return Err(fail(format!(
            "{shown}: a snapshot ends early at offset {pos}"
        )));
    }
    PyTuple::new(
        py,
        [
            PyBytes::new(py, data.get(16..32).unwrap_or(&[])).into_any(),
            PyBytes::new(py, data.get(32..48).unwrap_or(&[])).into_any(),
            f64::from_le_bytes(created).into_pyobject(py)?.into_any(),
            config,
            PyList::new(py, counters)?.into_any(),
            orders.into_any(),
            pos.into_pyobject(py)?.into_any(),
            torn.into_pyobject(py)?.to_owned().into_any(),
            seq.into_pyobject(py)?.into_any(),
            records.into_pyobject(py)?.into_any(),
        ],
    )
}
