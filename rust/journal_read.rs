//! Reading a journal back, natively: the same rules as `read()` in
//! `exec_router/journal_format.py` (the spec), for restores of a million
//! orders. One walk over the frames ([`walk`]) feeds a [`Sink`]: plain
//! Python values for `Journal.replay()` ([`Tuples`]), or working orders
//! built straight from the bytes for `Journal.restore()`
//! (`journal_restore::Image`).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors::journal_error;
use crate::journal_format::{
    counters_len, Kind, Mask, ALL, FRAME_HEAD, HEADER_LEN, KIND_SEQ, MAGIC, MAX_NESTING, VERSION,
};

/// The shortest payload: kind, seq and an empty counter mask.
const PREFIX_MIN: usize = KIND_SEQ + 2;

const STR: u8 = 5;
const DICT: u8 = 8;

/// Where a record starts, for errors (formatted only when one is raised).
pub struct Where<'s> {
    shown: &'s str,
    offset: usize,
}

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: record at offset {}", self.shown, self.offset)
    }
}

/// FNV-1a over short byte strings (the interner's keys).
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Strings up to this many bytes are interned.
const INTERN_MAX_LEN: usize = 64;
/// Distinct strings the interner keeps; past it, new ones are not kept.
const INTERN_MAX: usize = 1 << 16;

/// One Python str per distinct byte string (assets, sides, actions,
/// reasons, order types and metadata keys repeat across orders).
pub struct Interner<'a, 'py> {
    map: HashMap<&'a [u8], Bound<'py, PyString>, BuildHasherDefault<Fnv>>,
    /// The last string of each field.
    recent: [Option<(&'a [u8], Bound<'py, PyString>)>; SLOTS],
}

/// The interned fields: asset, side, action, order type, plan action,
/// reason, and the metadata keys.
const SLOTS: usize = 7;
const ASSET: usize = 0;
const KEYS: usize = 6;

impl<'a, 'py> Interner<'a, 'py> {
    pub fn new(py: Python<'py>) -> Self {
        let mut map: HashMap<&'a [u8], Bound<'py, PyString>, BuildHasherDefault<Fnv>> =
            HashMap::default();
        // The names the core compares by identity first.
        for name in ["ENTER", "EXIT", "LIMIT", "MARKET"] {
            map.insert(name.as_bytes(), PyString::intern(py, name));
        }
        Self {
            map,
            recent: Default::default(),
        }
    }

    /// `raw` as a str, or None when it is not UTF-8. A field of each
    /// `slot` mostly repeats the one before: that is checked first.
    fn get(&mut self, py: Python<'py>, raw: &'a [u8], slot: usize) -> Option<Bound<'py, PyString>> {
        if raw.len() > INTERN_MAX_LEN {
            return std::str::from_utf8(raw).ok().map(|s| PyString::new(py, s));
        }
        if let Some(Some((last, s))) = self.recent.get(slot) {
            if *last == raw {
                return Some(s.clone());
            }
        }
        let s = match self.map.get(raw) {
            Some(s) => s.clone(),
            None => {
                let s = PyString::new(py, std::str::from_utf8(raw).ok()?);
                if self.map.len() < INTERN_MAX {
                    self.map.insert(raw, s.clone());
                }
                s
            }
        };
        if let Some(recent) = self.recent.get_mut(slot) {
            *recent = Some((raw, s.clone()));
        }
        Some(s)
    }
}

/// A decoder over one record's body.
pub struct Dec<'a, 'i, 'py> {
    py: Python<'py>,
    data: &'a [u8],
    pos: usize,
    at: &'i Where<'i>,
    strings: &'i mut Interner<'a, 'py>,
}

impl<'a, 'py> Dec<'a, '_, 'py> {
    fn err(&self, what: &str) -> PyErr {
        journal_error(self.py, &format!("{}: {what}", self.at))
    }

    #[cold]
    #[inline(never)]
    fn ends_early(&self) -> PyErr {
        self.err("a record ends early")
    }

    #[inline]
    fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        let data: &'a [u8] = self.data;
        match self
            .pos
            .checked_add(n)
            .and_then(|end| Some((end, data.get(self.pos..end)?)))
        {
            Some((end, chunk)) => {
                self.pos = end;
                Ok(chunk)
            }
            None => Err(self.ends_early()),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> PyResult<[u8; N]> {
        let data: &'a [u8] = self.data;
        let chunk = data
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>());
        match chunk {
            Some(a) => {
                self.pos += N;
                Ok(*a)
            }
            None => Err(self.ends_early()),
        }
    }

    #[inline]
    fn u8(&mut self) -> PyResult<u8> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    #[inline]
    fn arr8(&mut self) -> PyResult<[u8; 8]> {
        self.array::<8>()
    }

    #[inline]
    fn f64(&mut self) -> PyResult<f64> {
        Ok(f64::from_le_bytes(self.array::<8>()?))
    }

    #[inline]
    fn i64(&mut self) -> PyResult<i64> {
        Ok(i64::from_le_bytes(self.array::<8>()?))
    }

    #[inline]
    fn u32(&mut self) -> PyResult<u32> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// A STR's bytes (its tag read) as a str, interned in `intern`'s slot.
    fn string(&mut self, intern: Option<usize>) -> PyResult<Bound<'py, PyString>> {
        let n = self.u32()? as usize;
        let raw = self.take(n)?;
        let s = if let Some(slot) = intern {
            self.strings.get(self.py, raw, slot)
        } else {
            std::str::from_utf8(raw)
                .ok()
                .map(|s| PyString::new(self.py, s))
        };
        s.ok_or_else(|| self.err("a str that is not UTF-8"))
    }

    /// A field that must be a str (interned in `slot`).
    fn text(&mut self, slot: usize) -> PyResult<Bound<'py, PyString>> {
        if self.peek() == Some(STR) {
            self.pos += 1;
            return self.string(Some(slot));
        }
        // Decoded for its own errors first, as the spec does.
        let v = self.value(0, None)?;
        let name = v
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        Err(self.err(&format!("a str field holds {name}")))
    }

    /// A tagged value; a str interned in `intern`'s slot (dict keys always are).
    pub fn value(&mut self, depth: u32, intern: Option<usize>) -> PyResult<Bound<'py, PyAny>> {
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
            STR => self.string(intern)?.into_any(),
            tag @ (6 | 7) => {
                let n = self.u32()? as usize;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1, None)?);
                }
                if tag == 6 {
                    PyTuple::new(py, items)?.into_any()
                } else {
                    PyList::new(py, items)?.into_any()
                }
            }
            DICT => {
                let n = self.u32()?;
                let d = PyDict::new(py);
                for _ in 0..n {
                    let k = self.value(depth + 1, Some(KEYS))?;
                    let v = self.value(depth + 1, None)?;
                    d.set_item(k, v)
                        .map_err(|_| self.err("an unhashable dict key"))?;
                }
                d.into_any()
            }
            tag => return Err(self.err(&format!("unknown value tag {tag}"))),
        })
    }

    /// The plan's metadata: None for an empty dict (a plan makes its own on
    /// first access).
    fn metadata(&mut self) -> PyResult<Option<Bound<'py, PyDict>>> {
        let empty = [DICT, 0, 0, 0, 0];
        if self.data.get(self.pos..self.pos + empty.len()) == Some(&empty[..]) {
            self.pos += empty.len();
            return Ok(None);
        }
        let metadata = self.value(0, None)?;
        if !metadata.is_exact_instance_of::<PyDict>() {
            return Err(self.err("plan.metadata is not a dict"));
        }
        Ok(metadata.cast_into::<PyDict>().ok())
    }

    /// A PUT body.
    fn put(&mut self) -> PyResult<Put<'py>> {
        let put = Put {
            trade_id: self.value(0, None)?,
            asset: self.value(0, Some(ASSET))?,
            side: self.text(1)?,
            action: self.text(2)?,
            order_type: self.text(3)?,
            limit_price: self.f64()?,
            post_only: self.u8()? != 0,
            ttl_s: self.f64()?,
            is_maker: self.u8()? != 0,
            plan_action: self.text(4)?,
            reason: self.text(5)?,
            suppress: self.u8()? != 0,
            metadata: self.metadata()?,
            submitted_at: self.f64()?,
            deadline: self.f64()?,
            retries_left: self.i64()?,
            base_trade_id: self.value(0, None)?,
            retry_n: self.i64()?,
            clock_at: self.f64()?,
            wall_at: self.f64()?,
            boot_at: self.f64()?,
        };
        if self.pos != self.data.len() {
            return Err(self.err(&format!(
                "{} bytes after the order",
                self.data.len() - self.pos
            )));
        }
        Ok(put)
    }
}

/// One PUT record's order, as written (times in its writer's clocks).
pub struct Put<'py> {
    pub trade_id: Bound<'py, PyAny>,
    pub asset: Bound<'py, PyAny>,
    pub side: Bound<'py, PyString>,
    pub action: Bound<'py, PyString>,
    pub order_type: Bound<'py, PyString>,
    pub limit_price: f64,
    pub post_only: bool,
    pub ttl_s: f64,
    pub is_maker: bool,
    pub plan_action: Bound<'py, PyString>,
    pub reason: Bound<'py, PyString>,
    pub suppress: bool,
    /// None when empty.
    pub metadata: Option<Bound<'py, PyDict>>,
    pub submitted_at: f64,
    pub deadline: f64,
    pub retries_left: i64,
    pub base_trade_id: Bound<'py, PyAny>,
    pub retry_n: i64,
    pub clock_at: f64,
    pub wall_at: f64,
    pub boot_at: f64,
}

/// What a walk does with the registry changes it reads.
pub trait Sink<'py> {
    /// A SNAPSHOT: the registry starts empty.
    fn clear(&mut self);
    /// `orders[put.trade_id] = put` (an equal key keeps its place).
    fn put(&mut self, put: Put<'py>, at: &Where<'_>) -> PyResult<()>;
    /// `orders.pop(key, None)`.
    fn pop(&mut self, key: Bound<'py, PyAny>, at: &Where<'_>) -> PyResult<()>;
}

/// `orders.pop(key, None)`, for a [`Sink`] keyed by trade id.
pub fn pop_from<'py>(
    orders: &Bound<'py, PyDict>,
    key: Bound<'py, PyAny>,
    at: &Where<'_>,
) -> PyResult<()> {
    let found = orders
        .contains(&key)
        .map_err(|_| journal_error(orders.py(), &format!("{at}: an unhashable trade id")))?;
    if found {
        orders.del_item(key)?;
    }
    Ok(())
}

/// The file's facts besides its orders.
pub struct Summary<'py> {
    pub file_id: [u8; 16],
    pub boot_id: [u8; 16],
    pub created: f64,
    pub config: Bound<'py, PyAny>,
    pub counters: Vec<i64>,
    pub end: usize,
    pub torn: bool,
    pub seq: u64,
    pub records: u64,
}

impl<'py> Summary<'py> {
    /// The first ten fields of `_journal_read`'s tuple, then `orders`, ...
    fn into_tuple(
        self,
        py: Python<'py>,
        orders: Bound<'py, PyAny>,
        extra: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let mut items = vec![
            PyBytes::new(py, &self.file_id).into_any(),
            PyBytes::new(py, &self.boot_id).into_any(),
            self.created.into_pyobject(py)?.into_any(),
            self.config,
            PyList::new(py, self.counters)?.into_any(),
            orders,
            self.end.into_pyobject(py)?.into_any(),
            self.torn.into_pyobject(py)?.to_owned().into_any(),
            self.seq.into_pyobject(py)?.into_any(),
            self.records.into_pyobject(py)?.into_any(),
        ];
        items.extend(extra);
        PyTuple::new(py, items)
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

fn arr16(data: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0_u8; 16];
    if let Some(s) = data.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    a
}

/// Walk `data` (a whole journal named `name`) by the spec's rules, handing
/// each registry change to `sink`.
pub fn walk<'py, S: Sink<'py>>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    sink: &mut S,
) -> PyResult<Summary<'py>> {
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
    let mut strings = Interner::new(py);
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
        let at = Where {
            shown: &shown,
            offset: pos,
        };
        let kind = payload.first().copied().unwrap_or(0);
        let mut d = Dec {
            py,
            data: payload,
            pos: 1,
            at: &at,
            strings: &mut strings,
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
            strings: &mut strings,
        };
        if !(1..=4).contains(&kind) || rseq <= seq {
            return Err(fail(format!("{at} is damaged (kind {kind}, seq {rseq})")));
        }
        if snapshot_left > 0 && kind != Kind::Put as u8 {
            return Err(fail(format!("{at}: a snapshot ends early")));
        }
        if kind == Kind::Snapshot as u8 {
            sink.clear();
            if body.len() != 8 {
                return Err(fail(format!("{at}: a bad snapshot record")));
            }
            snapshot_left = u64::from_le_bytes(d.arr8()?);
        } else if kind == Kind::Put as u8 {
            let put = d.put()?;
            sink.put(put, &at)?;
            snapshot_left = snapshot_left.saturating_sub(1);
        } else if kind == Kind::Pop as u8 {
            let key = d.value(0, None)?;
            sink.pop(key, &at)?;
        } else {
            let cfg = d.value(0, None)?;
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
    Ok(Summary {
        file_id: arr16(data, 16),
        boot_id: arr16(data, 32),
        created: f64::from_le_bytes(created),
        config,
        counters: counters.to_vec(),
        end: pos,
        torn,
        seq,
        records,
    })
}

/// `orders`: trade id -> the 13-tuple of `journal_format.Order`.
struct Tuples<'py> {
    orders: Bound<'py, PyDict>,
}

impl<'py> Sink<'py> for Tuples<'py> {
    fn clear(&mut self) {
        self.orders.clear();
    }

    fn put(&mut self, o: Put<'py>, at: &Where<'_>) -> PyResult<()> {
        let py = self.orders.py();
        let plan = PyDict::new(py);
        plan.set_item(intern!(py, "order_type"), o.order_type)?;
        plan.set_item(intern!(py, "limit_price"), o.limit_price)?;
        plan.set_item(intern!(py, "post_only"), o.post_only)?;
        plan.set_item(intern!(py, "ttl_s"), o.ttl_s)?;
        plan.set_item(intern!(py, "is_maker"), o.is_maker)?;
        plan.set_item(intern!(py, "action"), o.plan_action)?;
        plan.set_item(intern!(py, "reason"), o.reason)?;
        plan.set_item(intern!(py, "suppress"), o.suppress)?;
        let metadata = o.metadata.unwrap_or_else(|| PyDict::new(py));
        plan.set_item(intern!(py, "metadata"), metadata)?;
        let f = |x: f64| x.into_pyobject(py).map(Bound::into_any);
        let i = |x: i64| x.into_pyobject(py).map(Bound::into_any);
        let order = PyTuple::new(
            py,
            [
                o.trade_id.clone(),
                o.asset,
                o.side.into_any(),
                o.action.into_any(),
                plan.into_any(),
                f(o.submitted_at)?,
                f(o.deadline)?,
                i(o.retries_left)?,
                o.base_trade_id,
                i(o.retry_n)?,
                f(o.clock_at)?,
                f(o.wall_at)?,
                f(o.boot_at)?,
            ],
        )?;
        self.orders
            .set_item(o.trade_id, order)
            .map_err(|_| journal_error(py, &format!("{at}: an unhashable trade id")))
    }

    fn pop(&mut self, key: Bound<'py, PyAny>, at: &Where<'_>) -> PyResult<()> {
        pop_from(&self.orders, key, at)
    }
}

/// `journal_format.read(data, name)` natively: a tuple of (file_id, boot_id,
/// created, config, counters, orders, end, torn, seq, records), orders a dict
/// of trade id -> the 13-tuple of `journal_format.Order`. With `working`,
/// orders are `WorkingOrder`s as written (times in the writer's clock) and
/// an 11th item holds their clock readings: both for
/// `ExecutionRouter._journal_restore`.
#[pyfunction]
#[pyo3(signature = (data, name, working = false))]
pub fn _journal_read<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    name: &str,
    working: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return read(py, b.as_bytes(), name, working);
    }
    // A read-only map of the file (no copy): held for the whole read.
    let buf = PyBuffer::<u8>::get(data)?;
    if !buf.is_c_contiguous() {
        return Err(PyTypeError::new_err(
            "_journal_read() got an invalid data: not a contiguous buffer",
        ));
    }
    // SAFETY: a contiguous buffer of `len_bytes` bytes, exported until `buf`
    // drops. Bytes another process changes meanwhile are read as they are
    // (every access is bounds-checked, every record CRC-checked).
    let bytes = unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), buf.len_bytes()) };
    let out = read(py, bytes, name, working);
    drop(buf);
    out
}

fn read<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    working: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    if working {
        let mut image = crate::journal_restore::Image::new(py);
        let summary = walk(py, data, name, &mut image)?;
        let (orders, times) = image.finish(py)?;
        return summary.into_tuple(py, orders.into_any(), Some(times.into_any()));
    }
    let mut sink = Tuples {
        orders: PyDict::new(py),
    };
    let summary = walk(py, data, name, &mut sink)?;
    summary.into_tuple(py, sink.orders.into_any(), None)
}
