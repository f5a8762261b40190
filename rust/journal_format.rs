//! The journal's bytes (docs/state-and-journal.md has the byte table): the
//! header, the frames, and the tagged encoding of values. The pure backend
//! writes the same bytes in `exec_router/journal_format.py`.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use std::sync::Arc;

use crate::counters::{Cells, KEYS};
use crate::plan::ExecutionPlan;
use crate::working::WorkingOrder;

pub const MAGIC: [u8; 8] = *b"\x89ERJRNL\n";
/// Format 1 (16 counters in every frame) was a development format, never released.
pub const VERSION: u32 = 2;
pub const HEADER_LEN: usize = 64;
/// `[u32 length][u32 CRC-32C]` before each payload.
pub const FRAME_HEAD: usize = 8;
/// Nesting depth of a value (metadata) the journal writes.
pub const MAX_NESTING: u32 = 32;

pub const COUNTERS: usize = KEYS.len();
pub type Counts = [i64; COUNTERS];

/// A frame's counters: a u16 mask of those it carries, then their values in
/// `KEYS` order. Config and snapshot frames carry them all.
pub type Mask = u16;
const _: () = assert!(KEYS.len() == Mask::BITS as usize);
pub const ALL: Mask = Mask::MAX;
/// `[u8 kind][u64 seq]` before the counters.
pub const KIND_SEQ: usize = 1 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Snapshot = 1,
    Put = 2,
    Pop = 3,
    Config = 4,
}

const NONE: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const STR: u8 = 5;
const TUPLE: u8 = 6;
const LIST: u8 = 7;
const DICT: u8 = 8;

/// Why a value cannot be written: a TypeError or a ValueError.
pub enum Refusal {
    Type(String),
    Value(String),
}

impl Refusal {
    pub fn into_err(self, method: &str) -> PyErr {
        match self {
            Refusal::Type(m) => pyo3::exceptions::PyTypeError::new_err(format!(
                "{method}(): the journal cannot write {m}"
            )),
            Refusal::Value(m) => pyo3::exceptions::PyValueError::new_err(format!(
                "{method}(): the journal cannot write {m}"
            )),
        }
    }
}

pub fn counts(cells: &Cells) -> Counts {
    std::array::from_fn(|i| cells.get(i))
}

pub fn header(file_id: &[u8; 16], boot_id: &[u8; 16], wall: f64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h.extend_from_slice(file_id);
    h.extend_from_slice(boot_id);
    h.extend_from_slice(&wall.to_le_bytes());
    h.extend_from_slice(&0_u32.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// The counters of `now` that differ from `prev`.
pub fn changed(prev: &Counts, now: &Counts) -> Mask {
    prev.iter()
        .zip(now)
        .enumerate()
        .fold(0, |m, (i, (a, b))| if a == b { m } else { m | 1 << i })
}

/// The bytes of the counters `mask` selects.
pub fn counters_len(mask: Mask) -> usize {
    2 + 8 * mask.count_ones() as usize
}

/// Append one frame carrying all the counters: `[len][crc][kind seq counters body]`.
pub fn frame(out: &mut Vec<u8>, kind: Kind, seq: u64, counts: &Counts, body: &[u8]) {
    frame_masked(out, kind, seq, ALL, counts, body);
}

/// Append one frame carrying the counters `mask` selects.
pub fn frame_masked(
    out: &mut Vec<u8>,
    kind: Kind,
    seq: u64,
    mask: Mask,
    counts: &Counts,
    body: &[u8],
) {
    let start = out.len();
    out.reserve(FRAME_HEAD + KIND_SEQ + counters_len(mask) + body.len());
    out.extend_from_slice(&[0; FRAME_HEAD]);
    prefix(out, kind, seq, mask, counts);
    out.extend_from_slice(body);
    let payload = out.get(start + FRAME_HEAD..).unwrap_or(&[]);
    let head = frame_head(payload.len(), crc32c::crc32c(payload));
    if let Some(slot) = out.get_mut(start..start + FRAME_HEAD) {
        slot.copy_from_slice(&head);
    }
}

/// The longest prefix: kind, seq, mask and every counter.
pub const PREFIX_MAX: usize = KIND_SEQ + 2 + 8 * KEYS.len();
/// Room kept at the front of a body buffer for its frame's head and prefix.
pub const ROOM: usize = FRAME_HEAD + PREFIX_MAX;

/// Write `[u8 kind][u64 seq][u16 mask][the counters mask selects]` into
/// `out` from its start; returns its length (0 if `out` is too short).
pub fn write_prefix(out: &mut [u8], kind: Kind, seq: u64, mask: Mask, counts: &Counts) -> usize {
    let len = KIND_SEQ + counters_len(mask);
    let Some(out) = out.get_mut(..len) else {
        return 0;
    };
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        if let Some(slot) = out.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
        at += bytes.len();
    };
    put(&[kind as u8]);
    put(&seq.to_le_bytes());
    put(&mask.to_le_bytes());
    let mut bits = mask;
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        put(&counts.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    len
}

/// Append `[u8 kind][u64 seq][u16 mask][the counters mask selects]`.
pub fn prefix(out: &mut Vec<u8>, kind: Kind, seq: u64, mask: Mask, counts: &Counts) {
    let mut buf = [0_u8; PREFIX_MAX];
    let n = write_prefix(&mut buf, kind, seq, mask, counts);
    out.extend_from_slice(buf.get(..n).unwrap_or(&[]));
}

/// Make a whole frame of `buf`, whose body starts at [`ROOM`]: the head and
/// prefix go right before the body. Returns where the frame starts in `buf`.
pub fn seal(buf: &mut [u8], kind: Kind, seq: u64, mask: Mask, counts: &Counts) -> Option<usize> {
    let start = ROOM.checked_sub(FRAME_HEAD + KIND_SEQ + counters_len(mask))?;
    let (head, payload) = buf.get_mut(start..)?.split_at_mut_checked(FRAME_HEAD)?;
    if write_prefix(payload, kind, seq, mask, counts) == 0 {
        return None;
    }
    head.copy_from_slice(&frame_head(payload.len(), crc32c::crc32c(payload)));
    Some(start)
}

/// `[u32 length][u32 CRC-32C]` of a payload.
pub fn frame_head(len: usize, crc: u32) -> [u8; FRAME_HEAD] {
    let mut head = [0; FRAME_HEAD];
    let (l, c) = head.split_at_mut(4);
    l.copy_from_slice(&(len as u32).to_le_bytes());
    c.copy_from_slice(&crc.to_le_bytes());
    head
}

/// The size of a frame holding `body` and all the counters.
pub fn frame_len(body: usize) -> usize {
    FRAME_HEAD + KIND_SEQ + counters_len(ALL) + body
}

fn str_bytes(out: &mut Vec<u8>, s: &Bound<'_, PyString>, what: &str) -> Result<(), Refusal> {
    let text = s
        .to_str()
        .map_err(|_| Refusal::Value(format!("{what}: a str that is not valid Unicode")))?;
    let len = u32::try_from(text.len())
        .map_err(|_| Refusal::Value(format!("{what}: a str of 4 GiB or more")))?;
    out.reserve(5 + text.len());
    out.push(STR);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn count(n: usize, what: &str) -> Result<[u8; 4], Refusal> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| Refusal::Value(format!("{what}: too many items")))
}

/// Encode `v`: None, bool, int (64-bit), finite float, str, and tuples,
/// lists and dicts of them, of exactly these types. No Python code runs.
pub fn value(
    out: &mut Vec<u8>,
    v: &Bound<'_, PyAny>,
    what: &str,
    depth: u32,
) -> Result<(), Refusal> {
    if depth > MAX_NESTING {
        return Err(Refusal::Value(format!(
            "{what}: nested deeper than {MAX_NESTING}"
        )));
    }
    if let Ok(s) = v.cast_exact::<PyString>() {
        str_bytes(out, s, what)?;
    } else if v.is_none() {
        out.push(NONE);
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        out.push(if b.is_true() { TRUE } else { FALSE });
    } else if let Ok(i) = v.cast_exact::<PyInt>() {
        let n: i64 = i
            .extract()
            .map_err(|_| Refusal::Value(format!("{what}: an int beyond 64 bits")))?;
        out.push(INT);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(f) = v.cast_exact::<PyFloat>() {
        let x = f.value();
        if !x.is_finite() {
            return Err(Refusal::Value(format!("{what}: a non-finite float")));
        }
        out.push(FLOAT);
        out.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(t) = v.cast_exact::<PyTuple>() {
        out.push(TUPLE);
        out.extend_from_slice(&count(t.len(), what)?);
        for item in t.iter() {
            value(out, &item, what, depth + 1)?;
        }
    } else if let Ok(l) = v.cast_exact::<PyList>() {
        out.push(LIST);
        let items: Vec<Bound<'_, PyAny>> = l.iter().collect();
        out.extend_from_slice(&count(items.len(), what)?);
        for item in &items {
            value(out, item, what, depth + 1)?;
        }
    } else if let Ok(d) = v.cast_exact::<PyDict>() {
        out.push(DICT);
        if d.is_empty() {
            out.extend_from_slice(&0_u32.to_le_bytes());
            return Ok(());
        }
        let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = d.iter().collect();
        out.extend_from_slice(&count(items.len(), what)?);
        for (k, item) in &items {
            value(out, k, what, depth + 1)?;
            value(out, item, what, depth + 1)?;
        }
    } else {
        let name = v
            .get_type()
            .qualname()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        return Err(Refusal::Type(format!("{what}: a {name}")));
    }
    Ok(())
}

#[inline]
fn f64s(out: &mut Vec<u8>, xs: &[f64]) {
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// The plan's fields before its metadata, encoded on the plan's first
/// journaled registration and kept with it (they are immutable).
fn plan_fields<'p>(py: Python<'_>, p: &'p ExecutionPlan) -> Result<&'p [u8], Refusal> {
    if let Some(done) = p.journaled().get() {
        return Ok(done);
    }
    let mut out = Vec::with_capacity(64);
    str_bytes(&mut out, &p.order_type_str(py), "plan.order_type")?;
    f64s(&mut out, &[p.limit_price]);
    out.push(u8::from(p.post_only));
    f64s(&mut out, &[p.ttl_s]);
    out.push(u8::from(p.is_maker));
    str_bytes(&mut out, &p.action_str(py), "plan.action")?;
    str_bytes(&mut out, &p.reason_str(py), "plan.reason")?;
    out.push(u8::from(p.suppress));
    Ok(p.journaled().get_or_init(|| out.into_boxed_slice()))
}

/// The plan's action, encoded, inside `plan_fields`: after the order
/// type (a str value), f64, u8, f64, u8.
fn cached_action(fields: &[u8]) -> Option<&[u8]> {
    let str_len = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = fields.get(at + 1..at + 5)?.try_into().ok()?;
        Some(5 + u32::from_le_bytes(raw) as usize)
    };
    let at = str_len(0)? + 8 + 1 + 8 + 1;
    fields.get(at..at + str_len(at)?)
}

/// The body of a PUT but for its last 16 bytes, the wall and boot clocks
/// (`order_body` adds them; the writer reads the clocks as it appends).
pub fn order_body_head(
    out: &mut Vec<u8>,
    py: Python<'_>,
    w: &WorkingOrder,
    clock_at: f64,
) -> Result<(), Refusal> {
    let plan = w.plan.bind(py);
    let p: &ExecutionPlan = plan.get();
    let fields = plan_fields(py, p)?;
    value(out, w.trade_id.bind(py), "trade_id", 0)?;
    value(out, w.asset.bind(py), "asset", 0)?;
    str_bytes(out, w.side.bind(py), "side")?;
    // The order's action is usually the plan's own str: its bytes are cached.
    match cached_action(fields).filter(|_| p.action_is_object(&w.action)) {
        Some(action) => out.extend_from_slice(action),
        None => str_bytes(out, w.action.bind(py), "action")?,
    }
    out.extend_from_slice(fields);
    // The metadata is a mutable dict: encoded each time.
    match p.metadata_if_any(py) {
        Some(m) => value(out, m.as_any(), "plan.metadata", 0)?,
        None => {
            out.push(DICT);
            out.extend_from_slice(&0_u32.to_le_bytes());
        }
    }
    let times = [w.submitted_at, w.deadline];
    if times.iter().any(|t| !t.is_finite()) {
        return Err(Refusal::Value("the order: a non-finite time".to_owned()));
    }
    f64s(out, &times);
    out.extend_from_slice(&w.retries_left.to_le_bytes());
    value(out, w.base_trade_id.bind(py), "base_trade_id", 0)?;
    out.extend_from_slice(&w.retry_n.to_le_bytes());
    f64s(out, &[clock_at]);
    Ok(())
}

/// The refusal of an order that is borrowed elsewhere.
pub fn being_changed() -> Refusal {
    Refusal::Value("the order: it is being changed".to_owned())
}

/// The body of a PUT: the whole order, with the clocks at the time of writing.
pub fn order_body(
    wo: &Bound<'_, WorkingOrder>,
    clock_at: f64,
    wall: f64,
    boot: f64,
) -> Result<Vec<u8>, Refusal> {
    let w = wo.try_borrow().map_err(|_| being_changed())?;
    let mut out = Vec::with_capacity(192);
    order_body_head(&mut out, wo.py(), &w, clock_at)?;
    f64s(&mut out, &[wall, boot]);
    Ok(out)
}

/// The body of a POP: the trade id.
pub fn pop_body(trade_id: &Bound<'_, PyAny>) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(24);
    value(&mut out, trade_id, "trade_id", 0)?;
    Ok(out)
}

/// Per-thread buffers of the journal's hot path: the scratch buffer bodies
/// are encoded in, and the bodies removed orders gave back, for reuse.
#[derive(Default)]
pub struct Local {
    scratch: Vec<u8>,
    bodies: Bodies,
}

thread_local! {
    static LOCAL: std::cell::Cell<Option<Box<Local>>> = const { std::cell::Cell::new(None) };
}

/// Bodies kept for reuse per thread, and the largest kept.
const POOL: usize = 128;
const POOLED_MAX: usize = 1024;

/// Run `f` on this thread's scratch buffer and its kept bodies (a nested
/// call gets fresh ones): no allocation once they have grown. The buffer
/// holds [`ROOM`] bytes (of no meaning), room for a frame's head and prefix.
pub fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>, &mut Bodies) -> T) -> T {
    // Boxed: taking and putting back moves a pointer, not the buffers.
    let mut local = LOCAL
        .try_with(std::cell::Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default();
    // Not zeroed each time: `seal` writes what it uses of the room.
    if local.scratch.len() < ROOM {
        local.scratch.resize(ROOM, 0);
    }
    local.scratch.truncate(ROOM);
    let Local { scratch, bodies } = &mut *local;
    let out = f(scratch, bodies);
    if local.scratch.capacity() > 1 << 16 {
        local.scratch = Vec::new();
    }
    // Put back without a drop call on the way (the slot is empty unless a
    // nested call refilled it): a call here spilled `out` and stalled.
    if let Ok(Some(nested)) = LOCAL.try_with(|cell| cell.replace(Some(local))) {
        drop_cold(nested);
    }
    out
}

#[cold]
#[inline(never)]
fn drop_cold(local: Box<Local>) {
    drop(local);
}

/// The bodies removed orders gave back, by length (mod [`BUCKETS`]).
#[derive(Default)]
pub struct Bodies {
    buckets: Vec<Vec<Arc<[u8]>>>,
    kept: usize,
}

const BUCKETS: usize = 64;

impl Bodies {
    /// A copy of `bytes` for an order to keep: a body of the same length
    /// given back earlier and shared with no one, if there is one (no
    /// allocator call).
    pub fn boxed(&mut self, bytes: &[u8]) -> Arc<[u8]> {
        let hit = self
            .buckets
            .get_mut(bytes.len() % BUCKETS)
            .and_then(|bucket| {
                let i = bucket.iter().rposition(|b| b.len() == bytes.len())?;
                Some(bucket.swap_remove(i))
            });
        match hit {
            Some(mut b) => {
                self.kept = self.kept.saturating_sub(1);
                match Arc::get_mut(&mut b) {
                    Some(slot) => {
                        slot.copy_from_slice(bytes);
                        b
                    }
                    None => Arc::from(bytes),
                }
            }
            None => Arc::from(bytes),
        }
    }

    /// Keep `body` for reuse, unless a compaction still shares it.
    pub fn recycle(&mut self, body: Arc<[u8]>) {
        if body.len() > POOLED_MAX || self.kept >= POOL || Arc::strong_count(&body) != 1 {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets.resize_with(BUCKETS, Vec::new);
        }
        if let Some(bucket) = self.buckets.get_mut(body.len() % BUCKETS) {
            bucket.push(body);
            self.kept += 1;
        }
    }
}

/// Give back the body of an order that left the registry.
pub fn recycle(body: Arc<[u8]>) {
    with_scratch(|_, bodies| bodies.recycle(body));
}

/// The body of a SNAPSHOT: how many PUT frames follow.
pub fn snapshot_body(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_castagnoli() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn header_and_frame_sizes() {
        let h = header(&[1; 16], &[2; 16], 1.5);
        assert_eq!(h.len(), HEADER_LEN);
        assert_eq!(&h[..8], &MAGIC);
        assert_eq!(crc32c::crc32c(&h[..60]).to_le_bytes(), h[60..]);
        let mut out = Vec::new();
        frame(&mut out, Kind::Pop, 7, &[0; KEYS.len()], b"abc");
        assert_eq!(out.len(), frame_len(3));
        assert_eq!(
            u32::from_le_bytes(out[..4].try_into().unwrap()) as usize,
            out.len() - 8
        );
        assert_eq!(out[8], Kind::Pop as u8);
        assert_eq!(out[17..19], ALL.to_le_bytes());
    }

    #[test]
    fn the_cached_action_is_the_plans_action_encoding() {
        let enc = |s: &str| {
            let mut v = vec![STR];
            v.extend_from_slice(&(s.len() as u32).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
            v
        };
        let mut fields = enc("LIMIT");
        fields.extend_from_slice(&1.5_f64.to_le_bytes());
        fields.push(1);
        fields.extend_from_slice(&9.0_f64.to_le_bytes());
        fields.push(0);
        fields.extend_from_slice(&enc("EXIT"));
        fields.extend_from_slice(&enc("maker_exit:TAKE_PROFIT"));
        fields.push(0);
        assert_eq!(cached_action(&fields), Some(&enc("EXIT")[..]));
        assert_eq!(cached_action(&fields[..20]), None);
        assert_eq!(cached_action(&[]), None);
    }

    #[test]
    fn bodies_are_reused_by_length_and_kept_bounded() {
        let mut bodies = Bodies::default();
        let a = bodies.boxed(b"abc");
        let a_ptr = a.as_ptr();
        bodies.recycle(a);
        let other = bodies.boxed(b"abcd"); // another length: a new box
        assert_ne!(other.as_ptr(), a_ptr);
        let again = bodies.boxed(b"xyz");
        assert_eq!((again.as_ptr(), &*again), (a_ptr, &b"xyz"[..]));
        for _ in 0..2 * POOL {
            bodies.recycle(Arc::from(&b"12"[..]));
        }
        assert_eq!(bodies.kept, POOL);
        bodies.recycle(Arc::from(vec![0; POOLED_MAX + 1]));
        assert_eq!(bodies.kept, POOL);
        let kept: usize = bodies.buckets.iter().map(Vec::len).sum();
        assert_eq!(kept, POOL);
    }

    #[test]
    fn a_frame_carries_the_changed_counters() {
        let prev: Counts = [0; KEYS.len()];
        let mut now = prev;
        now[0] = 5;
        now[13] = -1;
        let mask = changed(&prev, &now);
        assert_eq!(mask, 1 | 1 << 13);
        let mut out = Vec::new();
        frame_masked(&mut out, Kind::Put, 3, mask, &now, b"xy");
        assert_eq!(out.len(), FRAME_HEAD + KIND_SEQ + 2 + 16 + 2);
        assert_eq!(out[17..19], mask.to_le_bytes());
        assert_eq!(out[19..27], 5_i64.to_le_bytes());
        assert_eq!(out[27..35], (-1_i64).to_le_bytes());
        assert_eq!(&out[35..], b"xy");
        let crc = crc32c::crc32c(&out[8..]);
        assert_eq!(out[..8], frame_head(out.len() - 8, crc));
        let mut none = Vec::new();
        frame_masked(&mut none, Kind::Pop, 4, 0, &now, b"");
        assert_eq!(none.len(), FRAME_HEAD + KIND_SEQ + 2);
    }
}
