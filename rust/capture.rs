//! Recorded Binance USD-M stream captures: `<local_ts_ns> <json>` lines (or bare
//! JSON), plain or gzip, parsed into per-symbol columns on every core.
//!
//! Messages: `bookTicker`, `trade`, `aggTrade`, `depthUpdate` (bare or in the
//! combined-stream envelope `{"stream", "data"}`) and the REST depth snapshot
//! (`lastUpdateId`, `bids`, `asks`). Depth diffs and snapshots are kept whole, in
//! file order, for an L2 book; their `U`/`u`/`pu` chain is checked.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};

use flate2::read::MultiGzDecoder;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

/// Bytes read per block; each block is split between the worker threads.
const BLOCK: usize = 16 << 20;

// ── messages ────────────────────────────────────────────────────────────────

/// A JSON value whose shape depends on the message: a price string
/// (`bookTicker`), a list of `[price, qty]` levels (`depthUpdate`) or a number
/// (`aggTrade`'s id, ignored).
enum Field<'a> {
    Text(&'a str),
    Levels(Vec<(&'a str, &'a str)>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a list of [price, qty] levels")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Text(v))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while let Some(level) = seq.next_element::<(&'de str, &'de str)>()? {
                    out.push(level);
                }
                Ok(Field::Levels(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Every field of every message kind we read; the envelope's `data` nests one.
#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(borrow, default)]
    e: Option<&'a str>,
    #[serde(borrow, default)]
    s: Option<&'a str>,
    #[serde(rename = "U", default)]
    first_id: Option<u64>,
    #[serde(default)]
    u: Option<u64>,
    #[serde(default)]
    pu: Option<u64>,
    #[serde(borrow, default)]
    b: Option<Field<'a>>,
    #[serde(rename = "B", borrow, default)]
    bid_qty: Option<&'a str>,
    #[serde(borrow, default)]
    a: Option<Field<'a>>,
    #[serde(rename = "A", borrow, default)]
    ask_qty: Option<&'a str>,
    #[serde(borrow, default)]
    p: Option<&'a str>,
    #[serde(borrow, default)]
    q: Option<&'a str>,
    #[serde(default)]
    m: Option<bool>,
    #[serde(rename = "T", default)]
    tx_time: Option<i64>,
    #[serde(rename = "E", default)]
    event_time: Option<i64>,
    #[serde(rename = "lastUpdateId", default)]
    last_update_id: Option<u64>,
    #[serde(borrow, default)]
    bids: Option<Vec<(&'a str, &'a str)>>,
    #[serde(borrow, default)]
    asks: Option<Vec<(&'a str, &'a str)>>,
    #[serde(borrow, default)]
    data: Option<Box<Msg<'a>>>,
    #[serde(default)]
    #[allow(dead_code)]
    stream: Option<IgnoredAny>,
}

// ── columns ─────────────────────────────────────────────────────────────────

#[derive(Default)]
struct Book {
    ts: Vec<i64>,
    bid: Vec<f64>,
    ask: Vec<f64>,
    bid_qty: Vec<f64>,
    ask_qty: Vec<f64>,
}

#[derive(Default)]
struct Trades {
    ts: Vec<i64>,
    px: Vec<f64>,
    qty: Vec<f64>,
    side: Vec<i8>,
}

/// Depth messages in file order: `kind` 0 a diff, 1 a REST snapshot (whose
/// `first_id` and `last_id` are both its `lastUpdateId`, `prev_id` 0). The
/// levels of message `k` are `start[k]..start[k + 1]` (or to the end).
#[derive(Default)]
struct Depth {
    ts: Vec<i64>,
    line: Vec<u64>,
    kind: Vec<u8>,
    first_id: Vec<u64>,
    last_id: Vec<u64>,
    prev_id: Vec<u64>,
    start: Vec<u64>,
    px: Vec<f64>,
    qty: Vec<f64>,
    side: Vec<i8>,
}

impl Depth {
    fn push_levels(&mut self, levels: &[(&str, &str)], side: i8) -> Result<(), String> {
        for (px, qty) in levels {
            self.px.push(number(px, "price", true)?);
            self.qty.push(number(qty, "quantity", false)?);
            self.side.push(side);
        }
        Ok(())
    }

    fn append(&mut self, mut other: Depth, line_offset: u64) {
        let base = self.px.len() as u64;
        self.ts.append(&mut other.ts);
        self.line.extend(other.line.iter().map(|l| l + line_offset));
        self.kind.append(&mut other.kind);
        self.first_id.append(&mut other.first_id);
        self.last_id.append(&mut other.last_id);
        self.prev_id.append(&mut other.prev_id);
        self.start.extend(other.start.iter().map(|s| s + base));
        self.px.append(&mut other.px);
        self.qty.append(&mut other.qty);
        self.side.append(&mut other.side);
    }

    /// The message `k` of `other` appended to `self` (line numbers already global).
    fn copy_one(&mut self, other: &Depth, k: usize) {
        let lo = other.start.get(k).copied().unwrap_or(0) as usize;
        let hi = other
            .start
            .get(k + 1)
            .copied()
            .unwrap_or(other.px.len() as u64) as usize;
        self.start.push(self.px.len() as u64);
        self.ts.extend(other.ts.get(k).copied());
        self.line.extend(other.line.get(k).copied());
        self.kind.extend(other.kind.get(k).copied());
        self.first_id.extend(other.first_id.get(k).copied());
        self.last_id.extend(other.last_id.get(k).copied());
        self.prev_id.extend(other.prev_id.get(k).copied());
        self.px.extend(other.px.get(lo..hi).unwrap_or_default());
        self.qty.extend(other.qty.get(lo..hi).unwrap_or_default());
        self.side.extend(other.side.get(lo..hi).unwrap_or_default());
    }
}

#[derive(Default)]
struct Symbol {
    book: Book,
    trade: Trades,
    agg: Trades,
    depth: Depth,
    gaps: u64,
}

/// What one chunk of lines (or the whole file) holds.
#[derive(Default)]
struct Parsed {
    symbols: Vec<(String, Symbol)>,
    snapshots: Depth,
    lines: u64,
    messages: u64,
    ignored: u64,
}

impl Parsed {
    #[allow(clippy::indexing_slicing)] // `pos` < len by construction
    fn symbol(&mut self, name: &str) -> &mut Symbol {
        let pos = match self.symbols.iter().position(|(s, _)| s == name) {
            Some(pos) => pos,
            None => {
                self.symbols.push((name.to_owned(), Symbol::default()));
                self.symbols.len() - 1
            }
        };
        &mut self.symbols[pos].1
    }

    fn append(&mut self, other: Parsed) {
        let offset = self.lines;
        for (name, mut sym) in other.symbols {
            let dst = self.symbol(&name);
            let b = &mut dst.book;
            b.ts.append(&mut sym.book.ts);
            b.bid.append(&mut sym.book.bid);
            b.ask.append(&mut sym.book.ask);
            b.bid_qty.append(&mut sym.book.bid_qty);
            b.ask_qty.append(&mut sym.book.ask_qty);
            for (d, s) in [(&mut dst.trade, sym.trade), (&mut dst.agg, sym.agg)] {
                let mut s = s;
                d.ts.append(&mut s.ts);
                d.px.append(&mut s.px);
                d.qty.append(&mut s.qty);
                d.side.append(&mut s.side);
            }
            dst.depth.append(sym.depth, offset);
        }
        self.snapshots.append(other.snapshots, offset);
        self.lines += other.lines;
        self.messages += other.messages;
        self.ignored += other.ignored;
    }
}

// ── parsing ─────────────────────────────────────────────────────────────────

/// A bad line: 1-based line number (within the chunk until merged) and why.
struct LineError {
    line: u64,
    message: String,
}

fn number(text: &str, what: &str, positive: bool) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && (v > 0.0 || (!positive && v == 0.0)) => Ok(v),
        Ok(_) => Err(format!(
            "{what} {text:?} must be finite and {}",
            if positive { "> 0" } else { ">= 0" }
        )),
        Err(_) => Err(format!("{what} {text:?} is not a number")),
    }
}

fn text_field<'a>(f: &Option<Field<'a>>, name: &str) -> Result<&'a str, String> {
    match f {
        Some(Field::Text(t)) => Ok(t),
        _ => Err(format!("field {name:?} missing or not a string")),
    }
}

fn need<T: Copy>(v: Option<T>, name: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("field {name:?} missing"))
}

/// Split `<ts_ns> <json>` or bare `<json>`.
fn split_line(line: &[u8]) -> Result<(Option<i64>, &[u8]), String> {
    if line.first() == Some(&b'{') {
        return Ok((None, line));
    }
    let digits = line.iter().take_while(|c| c.is_ascii_digit()).count();
    let (head, rest) = line.split_at(digits);
    let json = rest.trim_ascii_start();
    if digits == 0 || json.len() == rest.len() || json.first() != Some(&b'{') {
        return Err("expected `<timestamp_ns> <json>` or a JSON object".to_owned());
    }
    let ts = std::str::from_utf8(head)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| "local timestamp out of range".to_owned())?;
    Ok((Some(ts), json))
}

fn parse_chunk(chunk: &[u8], local_time: bool) -> Result<Parsed, LineError> {
    let mut out = Parsed::default();
    if chunk.is_empty() {
        return Ok(out);
    }
    for raw in chunk.split(|&c| c == b'\n') {
        out.lines += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw).trim_ascii();
        if line.is_empty() {
            continue;
        }
        if let Err(message) = parse_line(line, local_time, &mut out) {
            return Err(LineError {
                line: out.lines,
                message,
            });
        }
    }
    // `split` yields one piece after the final newline; it is not a line.
    if chunk.last() == Some(&b'\n') {
        out.lines -= 1;
    }
    Ok(out)
}

fn parse_line(line: &[u8], local_time: bool, out: &mut Parsed) -> Result<(), String> {
    let (local_ns, json) = split_line(line)?;
    let outer: Msg<'_> = serde_json::from_slice(json).map_err(|e| format!("invalid JSON ({e})"))?;
    let msg = match outer.data {
        Some(inner) => *inner,
        None => outer,
    };
    let ts = if local_time {
        match local_ns {
            Some(ns) => ns.div_euclid(1_000_000),
            None => {
                return Err(
                    "no local timestamp: --time local needs `<timestamp_ns> <json>` lines"
                        .to_owned(),
                )
            }
        }
    } else {
        match msg.tx_time.or(msg.event_time) {
            Some(t) => t,
            None => return Err("no exchange time (field \"T\" or \"E\")".to_owned()),
        }
    };
    let Some(kind) = msg.e else {
        if let Some(id) = msg.last_update_id {
            let d = &mut out.snapshots;
            d.ts.push(ts);
            d.line.push(out.lines);
            d.kind.push(1);
            d.first_id.push(id);
            d.last_id.push(id);
            d.prev_id.push(0);
            d.start.push(d.px.len() as u64);
            d.push_levels(msg.bids.as_deref().unwrap_or_default(), 1)?;
            d.push_levels(msg.asks.as_deref().unwrap_or_default(), -1)?;
            out.messages += 1;
        } else {
            out.ignored += 1;
        }
        return Ok(());
    };
    if !matches!(kind, "bookTicker" | "trade" | "aggTrade" | "depthUpdate") {
        out.ignored += 1;
        return Ok(());
    }
    let name = need(msg.s, "s")?;
    let line_no = out.lines;
    let sym = out.symbol(name);
    match kind {
        "bookTicker" => {
            let bid = number(text_field(&msg.b, "b")?, "bid price", true)?;
            let ask = number(text_field(&msg.a, "a")?, "ask price", true)?;
            if ask < bid {
                return Err(format!("crossed book: ask {ask} < bid {bid}"));
            }
            let bq = number(need(msg.bid_qty, "B")?, "bid quantity", false)?;
            let aq = number(need(msg.ask_qty, "A")?, "ask quantity", false)?;
            let b = &mut sym.book;
            b.ts.push(ts);
            b.bid.push(bid);
            b.ask.push(ask);
            b.bid_qty.push(bq);
            b.ask_qty.push(aq);
        }
        "trade" | "aggTrade" => {
            let px = number(need(msg.p, "p")?, "price", true)?;
            let qty = number(need(msg.q, "q")?, "quantity", false)?;
            // `m`: the buyer was the maker, so the seller took liquidity.
            let side = if need(msg.m, "m")? { -1 } else { 1 };
            let t = if kind == "trade" {
                &mut sym.trade
            } else {
                &mut sym.agg
            };
            t.ts.push(ts);
            t.px.push(px);
            t.qty.push(qty);
            t.side.push(side);
        }
        _ => {
            let first = need(msg.first_id, "U")?;
            let last_id = need(msg.u, "u")?;
            let prev = need(msg.pu, "pu")?;
            let bids = match &msg.b {
                Some(Field::Levels(l)) => l.as_slice(),
                _ => return Err("field \"b\" missing or not a list of levels".to_owned()),
            };
            let asks = match &msg.a {
                Some(Field::Levels(l)) => l.as_slice(),
                _ => return Err("field \"a\" missing or not a list of levels".to_owned()),
            };
            let d = &mut sym.depth;
            d.ts.push(ts);
            d.line.push(line_no);
            d.kind.push(0);
            d.first_id.push(first);
            d.last_id.push(last_id);
            d.prev_id.push(prev);
            d.start.push(d.px.len() as u64);
            d.push_levels(bids, 1)?;
            d.push_levels(asks, -1)?;
        }
    }
    out.messages += 1;
    Ok(())
}

/// Split `buf` into about `n` pieces, each ending just after a newline.
fn pieces(buf: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = buf;
    for k in (1..n).rev() {
        let target = rest.len() / (k + 1);
        let cut = rest
            .get(target..)
            .and_then(|tail| tail.iter().position(|&c| c == b'\n'))
            .map(|p| target + p + 1);
        match cut {
            Some(cut) if cut < rest.len() => {
                let (head, tail) = rest.split_at(cut);
                out.push(head);
                rest = tail;
            }
            _ => break,
        }
    }
    out.push(rest);
    out
}

fn parse_parallel(buf: &[u8], local_time: bool, threads: usize) -> Vec<Result<Parsed, LineError>> {
    let parts = pieces(buf, threads);
    if parts.len() == 1 {
        return parts.iter().map(|p| parse_chunk(p, local_time)).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|p| scope.spawn(move || parse_chunk(p, local_time)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LineError {
                        line: 0,
                        message: "internal error: a parser thread failed".to_owned(),
                    })
                })
            })
            .collect()
    })
}

/// Read and parse the whole file, one block at a time.
fn parse_file(path: &str, local_time: bool, threads: usize) -> Result<Parsed, LineError> {
    let io_err = |e: std::io::Error| LineError {
        line: 0,
        message: format!("cannot read ({e})"),
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map_err(io_err)? == 2 && magic == [0x1f, 0x8b];
    let file = File::open(path).map_err(io_err)?;
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
    } else {
        Box::new(file)
    };
    let mut total = Parsed::default();
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK + (1 << 16));
    let mut first = true;
    loop {
        let filled = buf.len();
        buf.resize(BLOCK.max(filled * 2), 0);
        let mut got = filled;
        while got < buf.len() {
            match reader.read(buf.get_mut(got..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(LineError {
                        line: total.lines + 1,
                        message: format!("cannot read ({e})"),
                    })
                }
            }
        }
        buf.truncate(got);
        let eof = got < BLOCK.max(filled * 2);
        if first {
            first = false;
            if let Some(rest) = buf.strip_prefix(b"\xef\xbb\xbf") {
                buf = rest.to_vec();
            }
        }
        let end = if eof {
            buf.len()
        } else {
            match buf.iter().rposition(|&c| c == b'\n') {
                Some(p) => p + 1,
                None => continue, // one line longer than the buffer: read more
            }
        };
        let (whole, _) = buf.split_at(end);
        let mut offset = total.lines;
        for part in parse_parallel(whole, local_time, threads) {
            match part {
                Ok(p) => {
                    offset += p.lines;
                    total.append(p);
                }
                Err(e) => {
                    return Err(LineError {
                        line: if e.line == 0 { 0 } else { offset + e.line },
                        message: e.message,
                    });
                }
            }
        }
        buf.drain(..end);
        if eof {
            break;
        }
    }
    Ok(total)
}

// ── depth continuity ────────────────────────────────────────────────────────

/// Give each snapshot to the symbol whose diffs span its `lastUpdateId`, merge it
/// into that symbol's depth in file order, and check every chain.
fn finish_depth(parsed: &mut Parsed, allow_gaps: bool) -> Result<(), LineError> {
    let snaps = std::mem::take(&mut parsed.snapshots);
    let mut owner: Vec<usize> = Vec::with_capacity(snaps.ts.len());
    for (k, &id) in snaps.last_id.iter().enumerate() {
        let line = snaps.line.get(k).copied().unwrap_or(0);
        let with_depth: Vec<usize> = parsed
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| !s.depth.ts.is_empty())
            .map(|(i, _)| i)
            .collect();
        let spanning: Vec<usize> = with_depth
            .iter()
            .copied()
            .filter(|&i| {
                parsed.symbols.get(i).is_some_and(|(_, s)| {
                    let lo = s.depth.first_id.iter().min().copied().unwrap_or(u64::MAX);
                    let hi = s.depth.last_id.iter().max().copied().unwrap_or(0);
                    lo <= id && id <= hi
                })
            })
            .collect();
        let pick = match (spanning.as_slice(), with_depth.as_slice()) {
            ([one], _) => Some(*one),
            ([], [one]) => Some(*one),
            ([], []) if parsed.symbols.len() == 1 => Some(0),
            _ => None,
        };
        match pick {
            Some(i) => owner.push(i),
            None => {
                return Err(LineError {
                    line,
                    message: format!(
                        "cannot tell which symbol the depth snapshot (lastUpdateId {id}) belongs to"
                    ),
                })
            }
        }
    }
    for (i, (_, sym)) in parsed.symbols.iter_mut().enumerate() {
        let mine: Vec<usize> = owner
            .iter()
            .enumerate()
            .filter(|(_, &o)| o == i)
            .map(|(k, _)| k)
            .collect();
        if !mine.is_empty() {
            let diffs = std::mem::take(&mut sym.depth);
            let mut merged = Depth::default();
            let (mut a, mut b) = (0usize, 0usize);
            while a < diffs.ts.len() || b < mine.len() {
                let la = diffs.line.get(a).copied().unwrap_or(u64::MAX);
                let snap = mine.get(b).copied();
                let lb = snap
                    .and_then(|k| snaps.line.get(k).copied())
                    .unwrap_or(u64::MAX);
                if la < lb {
                    merged.copy_one(&diffs, a);
                    a += 1;
                } else if let Some(k) = snap {
                    merged.copy_one(&snaps, k);
                    b += 1;
                } else {
                    break;
                }
            }
            sym.depth = merged;
        }
        sym.gaps = check_chain(&sym.depth, allow_gaps)?;
    }
    Ok(())
}

/// Diffs chain by `pu` == the previous diff's `u`. For each snapshot, the first
/// diff (wherever it sits in the file: snapshots are fetched while diffs are
/// buffered) with `u` >= `lastUpdateId` must have `U` <= `lastUpdateId`.
/// Returns the gaps seen.
fn check_chain(d: &Depth, allow_gaps: bool) -> Result<u64, LineError> {
    let mut gaps = 0;
    let mut fail = |line: u64, message: String| {
        if allow_gaps {
            gaps += 1;
            Ok(())
        } else {
            Err(LineError {
                line,
                message: format!("{message} (pass --allow-gaps to replay anyway)"),
            })
        }
    };
    let at = |v: &Vec<u64>, k: usize| v.get(k).copied().unwrap_or(0);
    let diffs: Vec<usize> = (0..d.ts.len()).filter(|&k| d.kind.get(k) == Some(&0)).collect();
    let mut prev_u: Option<u64> = None;
    for &k in &diffs {
        let (pu, u) = (at(&d.prev_id, k), at(&d.last_id, k));
        if let Some(p) = prev_u {
            if pu != p {
                fail(
                    at(&d.line, k),
                    format!("depth gap: pu={pu} but the previous diff ended at u={p}"),
                )?;
            }
        }
        prev_u = Some(u);
    }
    for k in (0..d.ts.len()).filter(|&k| d.kind.get(k) == Some(&1)) {
        let id = at(&d.last_id, k);
        let next = diffs.iter().copied().find(|&j| at(&d.last_id, j) >= id);
        if let Some(j) = next {
            let first = at(&d.first_id, j);
            if first > id {
                fail(
                    at(&d.line, j),
                    format!(
                        "depth gap: the snapshot on line {} (lastUpdateId {id}) is older \
                         than this diff's U={first}",
                        at(&d.line, k)
                    ),
                )?;
            }
        }
    }
    Ok(gaps)
}

// ── Python ──────────────────────────────────────────────────────────────────

fn bytes_of<T: Copy, const N: usize>(
    py: Python<'_>,
    v: Vec<T>,
    to: fn(T) -> [u8; N],
) -> PyResult<Bound<'_, PyBytes>> {
    PyBytes::new_with(py, v.len() * N, |buf| {
        for (dst, x) in buf.chunks_exact_mut(N).zip(v.iter()) {
            dst.copy_from_slice(&to(*x));
        }
        Ok(())
    })
}

fn columns<'py>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let sub = PyDict::new(py);
    d.set_item(name, &sub)?;
    Ok(sub)
}

fn put_f64(d: &Bound<'_, PyDict>, name: &str, v: Vec<f64>) -> PyResult<()> {
    d.set_item(name, bytes_of(d.py(), v, f64::to_ne_bytes)?)
}

fn put_i64(d: &Bound<'_, PyDict>, name: &str, v: Vec<i64>) -> PyResult<()> {
    d.set_item(name, bytes_of(d.py(), v, i64::to_ne_bytes)?)
}

fn put_u64(d: &Bound<'_, PyDict>, name: &str, v: Vec<u64>) -> PyResult<()> {
    d.set_item(name, bytes_of(d.py(), v, u64::to_ne_bytes)?)
}

fn put_i8(d: &Bound<'_, PyDict>, name: &str, v: Vec<i8>) -> PyResult<()> {
    d.set_item(name, bytes_of(d.py(), v, i8::to_ne_bytes)?)
}

fn put_trades(d: &Bound<'_, PyDict>, t: Trades) -> PyResult<()> {
    put_i64(d, "ts", t.ts)?;
    put_f64(d, "px", t.px)?;
    put_f64(d, "qty", t.qty)?;
    put_i8(d, "side", t.side)
}

/// Parse a capture file. Returns `{"symbols": {name: {"book", "trade", "agg",
/// "depth": {column: bytes}, "gaps": int}}, "lines", "messages", "ignored"}`,
/// columns as native-endian bytes (`ts` int64 ms, prices float64, `side` int8).
/// A bad line raises `ValueError(line, message)` (line 0: the whole file).
#[pyfunction]
#[pyo3(signature = (path, *, local_time = false, allow_gaps = false, threads = 0))]
pub fn parse_capture<'py>(
    py: Python<'py>,
    path: &str,
    local_time: bool,
    allow_gaps: bool,
    threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    } else {
        threads.min(64)
    };
    let owned = path.to_owned();
    let result = py.detach(move || {
        let mut parsed = parse_file(&owned, local_time, threads)?;
        finish_depth(&mut parsed, allow_gaps)?;
        Ok::<Parsed, LineError>(parsed)
    });
    let parsed = result.map_err(|e| PyValueError::new_err((e.line, e.message)))?;
    let out = PyDict::new(py);
    let symbols = columns(py, &out, "symbols")?;
    for (name, sym) in parsed.symbols {
        if name.is_empty() {
            continue;
        }
        let s = columns(py, &symbols, &name)?;
        let b = columns(py, &s, "book")?;
        put_i64(&b, "ts", sym.book.ts)?;
        put_f64(&b, "bid", sym.book.bid)?;
        put_f64(&b, "ask", sym.book.ask)?;
        put_f64(&b, "bid_qty", sym.book.bid_qty)?;
        put_f64(&b, "ask_qty", sym.book.ask_qty)?;
        put_trades(&columns(py, &s, "trade")?, sym.trade)?;
        put_trades(&columns(py, &s, "agg")?, sym.agg)?;
        let d = columns(py, &s, "depth")?;
        let dp = sym.depth;
        put_i64(&d, "ts", dp.ts)?;
        put_u64(&d, "line", dp.line)?;
        d.set_item("kind", PyBytes::new(py, &dp.kind))?;
        put_u64(&d, "first_id", dp.first_id)?;
        put_u64(&d, "last_id", dp.last_id)?;
        put_u64(&d, "prev_id", dp.prev_id)?;
        put_u64(&d, "start", dp.start)?;
        put_f64(&d, "px", dp.px)?;
        put_f64(&d, "qty", dp.qty)?;
        put_i8(&d, "side", dp.side)?;
        s.set_item("gaps", sym.gaps)?;
    }
    out.set_item("lines", parsed.lines)?;
    out.set_item("messages", parsed.messages)?;
    out.set_item("ignored", parsed.ignored)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parsed, LineError> {
        let mut p = parse_chunk(text.as_bytes(), false)?;
        finish_depth(&mut p, false)?;
        Ok(p)
    }

    const BOOK: &str = r#"{"e":"bookTicker","u":1,"s":"ETHUSDT","b":"10.5","B":"1","a":"10.6","A":"2","T":5,"E":6}"#;

    #[test]
    fn envelope_prefix_and_bare() {
        let text = format!(
            "17 {{\"stream\":\"x\",\"data\":{BOOK}}}\n{BOOK}\n\n{}\n",
            r#"{"e":"aggTrade","s":"BTCUSDT","a":12,"p":"3","q":"0.5","f":1,"l":2,"T":9,"m":true}"#
        );
        let p = parse(&text).map_err(|e| e.message).unwrap();
        assert_eq!(p.lines, 4);
        assert_eq!(p.symbols.len(), 2);
        let (name, eth) = &p.symbols[0];
        assert_eq!(name, "ETHUSDT");
        assert_eq!(eth.book.ts, vec![5, 5]);
        assert_eq!(eth.book.ask, vec![10.6, 10.6]);
        assert_eq!(p.symbols[1].1.agg.side, vec![-1]);
    }

    #[test]
    fn gap_names_the_line() {
        let d = |u0: u64, u1: u64, pu: u64| {
            format!(
                r#"{{"e":"depthUpdate","s":"X","T":1,"U":{u0},"u":{u1},"pu":{pu},"b":[["1","2"]],"a":[]}}"#
            )
        };
        let ok = format!("{}\n{}\n", d(1, 5, 0), d(6, 9, 5));
        assert!(parse(&ok).is_ok());
        let bad = format!("{}\n{}\n", d(1, 5, 0), d(7, 9, 6));
        let err = parse(&bad).err().unwrap();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("gap"));
    }

    #[test]
    fn pieces_cut_after_newlines() {
        let buf = b"a\nbb\nccc\ndddd\n";
        let parts = pieces(buf, 3);
        assert_eq!(parts.concat(), buf.to_vec());
        assert!(parts.iter().all(|p| p.ends_with(b"\n")));
    }
}
