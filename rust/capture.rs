//! Recorded Binance USD-M stream captures: `<local_ts_ns> <json>` lines (or bare
//! JSON), plain or gzip, parsed into per-symbol columns on every core.
//!
//! Messages: `bookTicker`, `trade`, `aggTrade`, `depthUpdate` (bare or in the
//! combined-stream envelope `{"stream", "data"}`) and the REST depth snapshot
//! (`lastUpdateId`, `bids`, `asks`). Depth diffs and snapshots are kept whole, in
//! file order, for an L2 book; their `U`/`u`/`pu` chain is checked.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::{mpsc, Arc, Mutex};

use flate2::read::MultiGzDecoder;
use memchr::memmem;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMemoryView};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

mod layouts;

/// Bytes read per block at most; each block is parsed by one worker.
const BLOCK: usize = 8 << 20;

// ── messages ────────────────────────────────────────────────────────────────

/// A JSON string: borrowed from the line, or owned when it held escapes.
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A JSON value whose shape depends on the message: a price string
/// (`bookTicker`), a list of `[price, qty]` levels (`depthUpdate`) or a number
/// (`aggTrade`'s id, ignored).
enum Field<'a> {
    Text(Str<'a>),
    Levels(Vec<(Str<'a>, Str<'a>)>),
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
                Ok(Field::Text(Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Text(Str(Cow::Owned(v.to_owned()))))
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
                while let Some(level) = seq.next_element::<(Str<'de>, Str<'de>)>()? {
                    out.push(level);
                }
                Ok(Field::Levels(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Every field of every message kind we read.
#[derive(Deserialize, Default)]
struct Msg<'a> {
    #[serde(borrow, default)]
    e: Option<Str<'a>>,
    #[serde(borrow, default)]
    s: Option<Str<'a>>,
    #[serde(rename = "U", default)]
    first_id: Option<u64>,
    #[serde(default)]
    u: Option<u64>,
    #[serde(default)]
    pu: Option<u64>,
    #[serde(borrow, default)]
    b: Option<Field<'a>>,
    #[serde(rename = "B", borrow, default)]
    bid_qty: Option<Str<'a>>,
    #[serde(borrow, default)]
    a: Option<Field<'a>>,
    #[serde(rename = "A", borrow, default)]
    ask_qty: Option<Str<'a>>,
    #[serde(borrow, default)]
    p: Option<Str<'a>>,
    #[serde(borrow, default)]
    q: Option<Str<'a>>,
    #[serde(default)]
    m: Option<bool>,
    #[serde(rename = "T", default)]
    tx_time: Option<i64>,
    #[serde(rename = "E", default)]
    event_time: Option<i64>,
    #[serde(rename = "lastUpdateId", default)]
    last_update_id: Option<u64>,
    #[serde(borrow, default)]
    bids: Option<Vec<(Str<'a>, Str<'a>)>>,
    #[serde(borrow, default)]
    asks: Option<Vec<(Str<'a>, Str<'a>)>>,
}

/// The combined-stream envelope `{"stream": ..., "data": {...}}`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Msg<'a>,
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
    fn push_levels(&mut self, levels: &[(Str<'_>, Str<'_>)], side: i8) -> Result<(), String> {
        for (px, qty) in levels {
            self.px.push(number(px, "price", true)?);
            self.qty.push(number(qty, "quantity", false)?);
            self.side.push(side);
        }
        Ok(())
    }

    /// Move `other`'s messages to the end of `self` (`other` keeps its capacity).
    fn append(&mut self, other: &mut Depth, line_offset: u64) {
        let base = self.px.len() as u64;
        self.ts.append(&mut other.ts);
        self.line
            .extend(other.line.drain(..).map(|l| l + line_offset));
        self.kind.append(&mut other.kind);
        self.first_id.append(&mut other.first_id);
        self.last_id.append(&mut other.last_id);
        self.prev_id.append(&mut other.prev_id);
        self.start.extend(other.start.drain(..).map(|s| s + base));
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
    /// The index of the symbol last looked up.
    last: usize,
    /// Envelope stream names seen (a few), to be recognised without a scan.
    streams: Vec<Vec<u8>>,
    snapshots: Depth,
    lines: u64,
    messages: u64,
    ignored: u64,
}

impl Parsed {
    /// The index of symbol `name` (added if new), or None if it is not UTF-8.
    /// Lines come in runs of one symbol: the last one found is tried first.
    #[inline]
    fn symbol_index(&mut self, name: &[u8]) -> Option<usize> {
        if self
            .symbols
            .get(self.last)
            .is_some_and(|(s, _)| s.as_bytes() == name)
        {
            return Some(self.last);
        }
        let pos = match self.symbols.iter().position(|(s, _)| s.as_bytes() == name) {
            Some(pos) => pos,
            None => {
                let name = std::str::from_utf8(name).ok()?;
                self.symbols.push((name.to_owned(), Symbol::default()));
                self.symbols.len() - 1
            }
        };
        self.last = pos;
        Some(pos)
    }

    #[inline]
    fn symbol_bytes(&mut self, name: &[u8]) -> Option<&mut Symbol> {
        let pos = self.symbol_index(name)?;
        self.symbols.get_mut(pos).map(|(_, s)| s)
    }

    /// Move a chunk's rows to the end of `self`. The chunk keeps its buffers' capacity
    /// for the next block: no new pages to fault in, nothing returned to the system.
    fn append(&mut self, other: &mut Parsed) {
        let offset = self.lines;
        for (name, sym) in &mut other.symbols {
            let Some(dst) = self.symbol_bytes(name.as_bytes()) else {
                continue; // never: a `String` is UTF-8
            };
            let b = &mut dst.book;
            b.ts.append(&mut sym.book.ts);
            b.bid.append(&mut sym.book.bid);
            b.ask.append(&mut sym.book.ask);
            b.bid_qty.append(&mut sym.book.bid_qty);
            b.ask_qty.append(&mut sym.book.ask_qty);
            for (d, s) in [
                (&mut dst.trade, &mut sym.trade),
                (&mut dst.agg, &mut sym.agg),
            ] {
                d.ts.append(&mut s.ts);
                d.px.append(&mut s.px);
                d.qty.append(&mut s.qty);
                d.side.append(&mut s.side);
            }
            dst.depth.append(&mut sym.depth, offset);
        }
        self.snapshots.append(&mut other.snapshots, offset);
        self.lines += std::mem::take(&mut other.lines);
        self.messages += std::mem::take(&mut other.messages);
        self.ignored += std::mem::take(&mut other.ignored);
    }
}

// ── parsing ─────────────────────────────────────────────────────────────────

/// A bad line: 1-based line number (within the chunk until merged) and why.
struct LineError {
    line: u64,
    message: String,
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Plain decimals (`123.45`): the integer of the digits over a power of ten, both
/// exact, so one correctly rounded division (Clinger's fast path). Anything else
/// goes to the standard parser.
fn decimal(text: &str) -> Option<f64> {
    decimal_prefix(text.as_bytes()).and_then(|(v, len)| (len == text.len()).then_some(v))
}

/// The plain decimal at the start of `b` (up to its first byte other than a
/// digit or `.`) and its length; None if it is not one (`.5`, `5.`, `1.2.3`,
/// more than 15 digits).
#[inline(always)]
fn decimal_prefix(b: &[u8]) -> Option<(f64, usize)> {
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut dot: Option<usize> = None;
    let mut len = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            mantissa = mantissa * 10 + u64::from(d);
            digits += 1;
            if digits > 15 {
                return None;
            }
        } else if c == b'.' && dot.is_none() && len > 0 {
            dot = Some(len);
        } else if c == b'.' {
            return None;
        } else {
            break;
        }
        len += 1;
    }
    let frac = dot.map_or(0, |d| len - d - 1);
    let scale = *POW10.get(frac)?;
    (digits > 0 && dot.is_none_or(|_| frac > 0)).then(|| (mantissa as f64 / scale, len))
}

fn number(text: &str, what: &str, positive: bool) -> Result<f64, String> {
    match decimal(text).map_or_else(|| text.parse::<f64>(), Ok) {
        Ok(v) if v.is_finite() && (v > 0.0 || (!positive && v == 0.0)) => Ok(v),
        Ok(_) => Err(format!(
            "{what} {text:?} must be finite and {}",
            if positive { "> 0" } else { ">= 0" }
        )),
        Err(_) => Err(format!("{what} {text:?} is not a number")),
    }
}

fn text_field<'f>(f: &'f Option<Field<'_>>, name: &str) -> Result<&'f str, String> {
    match f {
        Some(Field::Text(t)) => Ok(t),
        _ => Err(format!("field {name:?} missing or not a string")),
    }
}

fn need<T: Copy>(v: Option<T>, name: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("field {name:?} missing"))
}

// ── the fast path ───────────────────────────────────────────────────────────

/// A JSON scanner for the common case, ~4x quicker than serde here: one flat
/// object of strings, numbers and literals, or an envelope whose `data` is one.
/// Anything else (arrays, escapes, a repeated key, a doubt) returns None and
/// the line goes to serde_json, which also writes the error messages.
fn flat(json: &str) -> Option<Msg<'_>> {
    let mut msg = Msg::default();
    let mut pos = object(json, skip_ws(json, 0), &mut msg, true)?;
    pos = skip_ws(json, pos);
    (pos == json.len()).then_some(msg)
}

fn skip_ws(json: &str, mut pos: usize) -> usize {
    while json
        .as_bytes()
        .get(pos)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    {
        pos += 1;
    }
    pos
}

/// The text of the string starting after the quote at `pos`; returns it and the
/// position after the closing quote. Strings here are short: a plain loop is
/// quicker than any SIMD search.
fn string(json: &str, pos: usize) -> Option<(&str, usize)> {
    let bytes = json.as_bytes();
    let mut end = pos;
    loop {
        match *bytes.get(end)? {
            b'"' => break,
            b'\\' => return None, // an escape: serde_json decodes it
            c if c < 0x20 => return None,
            _ => end += 1,
        }
    }
    Some((json.get(pos..end)?, end + 1))
}

/// The keys the fast path reads; every other key's scalar value is skipped.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    E,
    S,
    Bid,
    BidQty,
    Ask,
    AskQty,
    P,
    Q,
    M,
    TxTime,
    EventTime,
    Data,
    Other,
}

fn key_of(key: &str) -> Key {
    match key.as_bytes() {
        b"e" => Key::E,
        b"s" => Key::S,
        b"b" => Key::Bid,
        b"B" => Key::BidQty,
        b"a" => Key::Ask,
        b"A" => Key::AskQty,
        b"p" => Key::P,
        b"q" => Key::Q,
        b"m" => Key::M,
        b"T" => Key::TxTime,
        b"E" => Key::EventTime,
        b"data" => Key::Data,
        _ => Key::Other,
    }
}

/// Length of the JSON number at the start of `b` (RFC 8259 grammar), or None.
fn json_number(b: &[u8]) -> Option<usize> {
    let digits = |from: usize| {
        b.get(from..)
            .map_or(0, |t| t.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int = digits(i);
    if int == 0 || (int > 1 && b.get(i) == Some(&b'0')) {
        return None;
    }
    i += int;
    if b.get(i) == Some(&b'.') {
        let frac = digits(i + 1);
        if frac == 0 {
            return None;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    Some(i)
}

/// Parse the object at `pos` (a `{`) into `msg`; `top` allows one nested `data`.
fn object<'a>(json: &'a str, pos: usize, msg: &mut Msg<'a>, top: bool) -> Option<usize> {
    let bytes = json.as_bytes();
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    let mut pos = skip_ws(json, pos + 1);
    let mut seen: u16 = 0;
    if bytes.get(pos) == Some(&b'}') {
        return Some(pos + 1);
    }
    loop {
        if bytes.get(pos) != Some(&b'"') {
            return None;
        }
        let (name, after) = string(json, pos + 1)?;
        pos = skip_ws(json, after);
        if bytes.get(pos) != Some(&b':') {
            return None;
        }
        pos = skip_ws(json, pos + 1);
        let key = key_of(name);
        if key != Key::Other {
            let bit = 1u16 << (key as u16);
            if seen & bit != 0 {
                return None; // a repeated key: serde_json reports it
            }
            seen |= bit;
        }
        match *bytes.get(pos)? {
            b'"' => {
                let (text, after) = string(json, pos + 1)?;
                pos = after;
                match key {
                    Key::E => msg.e = Some(Str(Cow::Borrowed(text))),
                    Key::S => msg.s = Some(Str(Cow::Borrowed(text))),
                    Key::Bid => msg.b = Some(Field::Text(Str(Cow::Borrowed(text)))),
                    Key::BidQty => msg.bid_qty = Some(Str(Cow::Borrowed(text))),
                    Key::Ask => msg.a = Some(Field::Text(Str(Cow::Borrowed(text)))),
                    Key::AskQty => msg.ask_qty = Some(Str(Cow::Borrowed(text))),
                    Key::P => msg.p = Some(Str(Cow::Borrowed(text))),
                    Key::Q => msg.q = Some(Str(Cow::Borrowed(text))),
                    Key::M | Key::TxTime | Key::EventTime | Key::Data => return None,
                    Key::Other => {}
                }
            }
            b'{' if top && key == Key::Data => {
                // The envelope: only the inner message counts.
                *msg = Msg::default();
                pos = object(json, pos, msg, false)?;
                return finish_envelope(json, pos);
            }
            b'-' | b'0'..=b'9' => {
                let len = json_number(bytes.get(pos..)?)?;
                let token = json.get(pos..pos + len)?;
                match key {
                    Key::Ask => msg.a = Some(Field::Other), // aggTrade's id
                    Key::TxTime => msg.tx_time = Some(token.parse().ok()?),
                    Key::EventTime => msg.event_time = Some(token.parse().ok()?),
                    Key::Other => {}
                    _ => return None,
                }
                pos += len;
            }
            b't' | b'f' | b'n' => {
                let rest = bytes.get(pos..)?;
                let (value, len) = if rest.starts_with(b"true") {
                    (Some(true), 4)
                } else if rest.starts_with(b"false") {
                    (Some(false), 5)
                } else if rest.starts_with(b"null") {
                    (None, 4)
                } else {
                    return None;
                };
                match (key, value) {
                    (Key::M, Some(v)) => msg.m = Some(v),
                    (Key::Other, _) => {}
                    _ => return None,
                }
                pos += len;
            }
            _ => return None,
        }
        pos = skip_ws(json, pos);
        match *bytes.get(pos)? {
            b',' => pos = skip_ws(json, pos + 1),
            b'}' => return Some(pos + 1),
            _ => return None,
        }
    }
}

/// After the envelope's `data`: only scalar keys (such as `stream`) may follow.
fn finish_envelope(json: &str, pos: usize) -> Option<usize> {
    let bytes = json.as_bytes();
    let mut pos = skip_ws(json, pos);
    loop {
        match bytes.get(pos)? {
            b'}' => return Some(pos + 1),
            b',' => {
                pos = skip_ws(json, pos + 1);
                if bytes.get(pos) != Some(&b'"') {
                    return None;
                }
                let (key, after) = string(json, pos + 1)?;
                if key == "data" {
                    return None;
                }
                pos = skip_ws(json, after);
                if bytes.get(pos) != Some(&b':') {
                    return None;
                }
                pos = skip_ws(json, pos + 1);
                if bytes.get(pos) != Some(&b'"') {
                    return None;
                }
                pos = skip_ws(json, string(json, pos + 1)?.1);
            }
            _ => return None,
        }
    }
}

/// Split `<ts_ns> <json>` or bare `<json>`.
fn split_line(line: &str) -> Result<(Option<i64>, &str), String> {
    if line.starts_with('{') {
        return Ok((None, line));
    }
    let digits = line.bytes().take_while(|c| c.is_ascii_digit()).count();
    let (head, rest) = line.split_at_checked(digits).unwrap_or(("", line));
    let json = rest.trim_ascii_start();
    if digits == 0 || json.len() == rest.len() || !json.starts_with('{') {
        return Err("expected `<timestamp_ns> <json>` or a JSON object".to_owned());
    }
    let ts = head
        .parse::<i64>()
        .map_err(|_| "local timestamp out of range".to_owned())?;
    Ok((Some(ts), json))
}

/// Parse `chunk` into `out` (emptied by the last merge, its capacity kept).
/// Each line is tried on the collector's layouts first, then on the general path.
fn parse_chunk(chunk: &[u8], local_time: bool, out: &mut Parsed) -> Result<(), LineError> {
    let mut pos = 0;
    while pos < chunk.len() {
        out.lines += 1;
        if let Some(next) = layouts::line(chunk, pos, local_time, out) {
            pos = next;
            continue;
        }
        let rest = chunk.get(pos..).unwrap_or_default();
        let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let raw = rest.get(..len).unwrap_or_default();
        pos += len + 1;
        let line_no = out.lines;
        let fail = |message: String| LineError {
            line: line_no,
            message,
        };
        let line = std::str::from_utf8(raw.trim_ascii())
            .map_err(|_| fail("not valid UTF-8".to_owned()))?;
        if line.is_empty() {
            continue;
        }
        parse_line(line, local_time, out).map_err(fail)?;
    }
    Ok(())
}

fn parse_line(line: &str, local_time: bool, out: &mut Parsed) -> Result<(), String> {
    let (local_ns, json) = split_line(line)?;
    let bad = |e: serde_json::Error| format!("invalid JSON ({e})");
    let msg: Msg<'_> = if let Some(msg) = flat(json) {
        msg
    } else if memmem::find(json.as_bytes(), b"\"data\"").is_some() {
        serde_json::from_str::<Envelope<'_>>(json)
            .map_err(bad)?
            .data
    } else {
        serde_json::from_str(json).map_err(bad)?
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
    let Some(kind) = msg.e.as_deref() else {
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
    let name = need(msg.s.as_deref(), "s")?;
    let line_no = out.lines;
    let Some(sym) = out.symbol_bytes(name.as_bytes()) else {
        return Err("field \"s\" is not UTF-8".to_owned());
    };
    match kind {
        "bookTicker" => {
            let bid = number(text_field(&msg.b, "b")?, "bid price", true)?;
            let ask = number(text_field(&msg.a, "a")?, "ask price", true)?;
            if ask < bid {
                return Err(format!("crossed book: ask {ask} < bid {bid}"));
            }
            let bq = number(need(msg.bid_qty.as_deref(), "B")?, "bid quantity", false)?;
            let aq = number(need(msg.ask_qty.as_deref(), "A")?, "ask quantity", false)?;
            let b = &mut sym.book;
            b.ts.push(ts);
            b.bid.push(bid);
            b.ask.push(ask);
            b.bid_qty.push(bq);
            b.ask_qty.push(aq);
        }
        "trade" | "aggTrade" => {
            let px = number(need(msg.p.as_deref(), "p")?, "price", true)?;
            let qty = number(need(msg.q.as_deref(), "q")?, "quantity", false)?;
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

/// A parsed block on its way back to the merging thread: its number, its rows
/// (line numbers within the block) and its buffer, to be refilled.
type Done = (u64, Result<Parsed, LineError>, Vec<u8>);

/// A block read, numbered, on its way to a worker.
type Block = (u64, std::io::Result<Vec<u8>>);

/// Read and parse the whole file: one thread reads (and inflates) blocks of whole
/// lines, `threads` workers each parse whole blocks, and this thread appends them
/// in file order while the workers go on with the next ones.
fn parse_file(
    path: &str,
    local_time: bool,
    threads: usize,
    block: usize,
) -> Result<Parsed, LineError> {
    let io_err = |e: std::io::Error| LineError {
        line: 0,
        message: format!("cannot read ({e})"),
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map_err(io_err)? == 2 && magic == [0x1f, 0x8b];
    let file = File::open(path).map_err(io_err)?;
    let block = match block {
        // About eight blocks a worker, so that they finish together; 1 to 8 MiB.
        0 if !gz => {
            let size = file.metadata().map_or(0, |m| m.len());
            let per = size / (8 * threads.max(1) as u64);
            usize::try_from(per).unwrap_or(BLOCK).clamp(1 << 20, BLOCK)
        }
        0 => BLOCK,
        b => b,
    };
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
    } else {
        Box::new(file)
    };
    let workers = threads.max(1);
    let (full_tx, full_rx) = mpsc::sync_channel::<Block>(workers);
    // Shared by the workers, dropped with the last of them: a reader blocked on
    // `send` then wakes up and ends.
    let full_rx = Arc::new(Mutex::new(full_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let (spare_tx, spare_rx) = mpsc::channel::<Parsed>();
    let spare_rx = Mutex::new(spare_rx);
    let mut total = Parsed::default();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_blocks(reader, block, &full_tx, &empty_rx));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (full_rx, done_tx) = (Arc::clone(&full_rx), done_tx.clone());
                let spare_rx = &spare_rx;
                scope.spawn(move || work(&full_rx, &done_tx, spare_rx, local_time))
            })
            .collect();
        drop((full_rx, done_tx));
        let merged = merge(done_rx, &mut total, &spare_tx, &empty_tx);
        // Every thread joined here, so that none is left running and a failed one
        // (a missing block) is an error, never a short answer.
        let mut failed = reader.join().is_err();
        for h in handles {
            failed |= h.join().is_err();
        }
        match merged {
            Ok(()) if failed => Err(LineError {
                line: 0,
                message: "internal error: a parser thread failed".to_owned(),
            }),
            other => other,
        }
    })?;
    Ok(total)
}

/// Append the parsed blocks to `total` in file order as they come. Returns at the
/// first bad line, dropping `done`: the workers then stop at their next block.
fn merge(
    done: mpsc::Receiver<Done>,
    total: &mut Parsed,
    spare: &mpsc::Sender<Parsed>,
    empty: &mpsc::Sender<Vec<u8>>,
) -> Result<(), LineError> {
    let mut waiting: BTreeMap<u64, (Result<Parsed, LineError>, Vec<u8>)> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, result, buf) in done {
        waiting.insert(seq, (result, buf));
        while let Some((result, buf)) = waiting.remove(&next) {
            next += 1;
            let offset = total.lines;
            let mut chunk = result.map_err(|e| LineError {
                line: if e.line == 0 { 0 } else { offset + e.line },
                message: e.message,
            })?;
            total.append(&mut chunk);
            let _ = spare.send(chunk); // emptied, its capacity kept
            let _ = empty.send(buf); // back to the reader, to be refilled
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(LineError {
            line: 0,
            message: "internal error: a parsed block went missing".to_owned(),
        })
    }
}

/// A worker: parse blocks until there are none, or nobody wants the rows.
fn work(
    full: &Mutex<mpsc::Receiver<Block>>,
    done: &mpsc::Sender<Done>,
    spare: &Mutex<mpsc::Receiver<Parsed>>,
    local_time: bool,
) {
    loop {
        let next = match full.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, read)) = next else {
            return; // the file is done
        };
        let (result, buf) = match read {
            Ok(buf) => {
                let mut out = spare
                    .lock()
                    .ok()
                    .and_then(|rx| rx.try_recv().ok())
                    .unwrap_or_default();
                let result = parse_chunk(&buf, local_time, &mut out).map(|()| out);
                (result, buf)
            }
            Err(e) => {
                let error = LineError {
                    line: 1, // the line after the last one read
                    message: format!("cannot read ({e})"),
                };
                (Err(error), Vec::new())
            }
        };
        if done.send((seq, result, buf)).is_err() {
            return;
        }
    }
}

/// Send the file as numbered blocks of whole lines (the last one may lack its
/// newline), each about `block` bytes; buffers come back on `empty` to be reused.
fn read_blocks(
    mut reader: Box<dyn Read + Send>,
    block: usize,
    full: &mpsc::SyncSender<Block>,
    empty: &mpsc::Receiver<Vec<u8>>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(block + (1 << 16));
    let mut first = true;
    for seq in 0u64.. {
        let mut eof: bool;
        let end = loop {
            // Top the buffer up to a block (or twice the carried-over part: one long line).
            let want = block.max(buf.len() * 2) - buf.len();
            let got = match reader.by_ref().take(want as u64).read_to_end(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = full.send((seq, Err(e)));
                    return;
                }
            };
            eof = got < want;
            if first {
                first = false;
                if buf.starts_with(b"\xef\xbb\xbf") {
                    buf.drain(..3);
                }
            }
            if eof {
                break buf.len();
            }
            if let Some(p) = memchr::memrchr(b'\n', &buf) {
                break p + 1;
            } // else one line longer than the buffer: read more
        };
        let mut next = empty.try_recv().unwrap_or_default();
        next.clear();
        next.extend_from_slice(buf.get(end..).unwrap_or_default());
        buf.truncate(end);
        let whole = std::mem::replace(&mut buf, next);
        if full.send((seq, Ok(whole))).is_err() || eof {
            return; // the parsers stopped (a bad line), or the file is done
        }
    }
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
    let diffs: Vec<usize> = (0..d.ts.len())
        .filter(|&k| d.kind.get(k) == Some(&0))
        .collect();
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

/// A finished column, handed to Python without a copy: a read-only buffer of its
/// native-endian bytes (`memoryview(column)`, `np.frombuffer(column, dtype)`).
#[pyclass(frozen, module = "exec_router._core")]
struct CaptureColumn {
    data: ColumnData,
}

enum ColumnData {
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
}

impl ColumnData {
    fn raw(&self) -> (*const std::ffi::c_void, usize) {
        fn of<T>(v: &[T]) -> (*const std::ffi::c_void, usize) {
            (v.as_ptr().cast(), std::mem::size_of_val(v))
        }
        match self {
            ColumnData::I64(v) => of(v),
            ColumnData::U64(v) => of(v),
            ColumnData::F64(v) => of(v),
            ColumnData::I8(v) => of(v),
            ColumnData::U8(v) => of(v),
        }
    }
}

#[pymethods]
impl CaptureColumn {
    /// # Safety
    /// `view` is the buffer Python asks to fill. The data never changes (the
    /// class is frozen) and lives as long as the view, which holds a reference.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        let (ptr, len) = slf.get().data.raw();
        let len = isize::try_from(len)
            .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("column too large"))?;
        // SAFETY: `ptr` and `len` describe memory owned by `slf`, kept alive by the
        // reference the view takes; the buffer is marked read-only.
        let status = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast_mut(), len, 1, flags)
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }
}

/// `v` as a memoryview of its bytes, without a copy.
fn column(py: Python<'_>, data: ColumnData) -> PyResult<Bound<'_, PyMemoryView>> {
    let col = Bound::new(py, CaptureColumn { data })?;
    PyMemoryView::from(col.as_any())
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

fn put_f64(d: &Bound<'_, PyDict>, name: &str, mut v: Vec<f64>) -> PyResult<()> {
    v.shrink_to_fit();
    d.set_item(name, column(d.py(), ColumnData::F64(v))?)
}

fn put_i64(d: &Bound<'_, PyDict>, name: &str, mut v: Vec<i64>) -> PyResult<()> {
    v.shrink_to_fit();
    d.set_item(name, column(d.py(), ColumnData::I64(v))?)
}

fn put_u64(d: &Bound<'_, PyDict>, name: &str, mut v: Vec<u64>) -> PyResult<()> {
    v.shrink_to_fit();
    d.set_item(name, column(d.py(), ColumnData::U64(v))?)
}

fn put_i8(d: &Bound<'_, PyDict>, name: &str, mut v: Vec<i8>) -> PyResult<()> {
    v.shrink_to_fit();
    d.set_item(name, column(d.py(), ColumnData::I8(v))?)
}

fn put_u8(d: &Bound<'_, PyDict>, name: &str, mut v: Vec<u8>) -> PyResult<()> {
    v.shrink_to_fit();
    d.set_item(name, column(d.py(), ColumnData::U8(v))?)
}

fn put_trades(d: &Bound<'_, PyDict>, t: Trades) -> PyResult<()> {
    put_i64(d, "ts", t.ts)?;
    put_f64(d, "px", t.px)?;
    put_f64(d, "qty", t.qty)?;
    put_i8(d, "side", t.side)
}

/// Parse a capture file. Returns `{"symbols": {name: {"book", "trade", "agg",
/// "depth": {column: memoryview}, "gaps": int}}, "lines", "messages", "ignored"}`,
/// columns as read-only memoryviews of native-endian bytes (`ts` int64 ms, prices float64, `side` int8).
/// A bad line raises `ValueError(line, message)` (line 0: the whole file).
#[pyfunction]
#[pyo3(signature = (path, *, local_time = false, allow_gaps = false, threads = 0, block = 0))]
pub fn parse_capture<'py>(
    py: Python<'py>,
    path: &str,
    local_time: bool,
    allow_gaps: bool,
    threads: usize,
    block: usize,
) -> PyResult<Bound<'py, PyDict>> {
    // `block`: bytes read at a time (0: by the file's size, up to 8 MiB); small
    // values exercise the block seams.
    let block = if block == 0 {
        0
    } else {
        block.clamp(64, 1 << 30)
    };
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    } else {
        threads.min(64)
    };
    let owned = path.to_owned();
    let result = py.detach(move || {
        let mut parsed = parse_file(&owned, local_time, threads, block)?;
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
        put_u8(&d, "kind", dp.kind)?;
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
        let mut p = Parsed::default();
        parse_chunk(text.as_bytes(), false, &mut p)?;
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

    /// The fast path reads exactly what serde_json reads, or defers to it.
    #[test]
    fn flat_agrees_with_serde() {
        let lines = [
            BOOK.to_owned(),
            format!("{{\"stream\":\"x\",\"data\":{BOOK}}}"),
            format!("{{\"data\":{BOOK},\"stream\":\"x\"}}"),
            format!(" {{ \"stream\" : \"x\" , \"data\" : {} }} ", BOOK.replace(',', " , ")),
            r#"{"e":"trade","E":2,"T":1,"s":"ETHUSDT","t":9,"p":"1.5","q":"2","X":"MARKET","m":false}"#.to_owned(),
            r#"{"e":"aggTrade","a":-12,"f":1.5e3,"s":"X","p":"1","q":"0","T":7,"m":true,"n":null}"#.to_owned(),
        ];
        for line in &lines {
            let fast = flat(line).map(|m| show(&m));
            let slow = if line.contains("\"data\"") {
                serde_json::from_str::<Envelope<'_>>(line).map(|e| show(&e.data))
            } else {
                serde_json::from_str::<Msg<'_>>(line).map(|m| show(&m))
            };
            assert_eq!(fast, Some(slow.unwrap()), "{line}");
        }
        for deferred in [
            r#"{"e":"bookTicker","s":"A\u0042","b":"1"}"#,
            r#"{"e":"depthUpdate","b":[["1","2"]]}"#,
            r#"{"e":"trade","e":"trade"}"#,
            r#"{"e":"trade","T":"1"}"#,
            r#"{"e":"trade","x":01x}"#,
            r#"{"e":"trade"} trailing"#,
            r#"{"data":{"e":"trade"},"data":{}}"#,
            r#"{"e":"trade","x":{"y":1}}"#,
        ] {
            assert!(flat(deferred).is_none(), "{deferred}");
        }
    }

    fn show(m: &Msg<'_>) -> String {
        let text = |f: &Option<Field<'_>>| match f {
            Some(Field::Text(t)) => t.to_string(),
            Some(_) => "other".to_owned(),
            None => "-".to_owned(),
        };
        format!(
            "{:?} {:?} {} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?}",
            m.e,
            m.s,
            text(&m.b),
            m.bid_qty,
            text(&m.a),
            m.ask_qty,
            m.p,
            m.q,
            m.m,
            m.tx_time,
            m.event_time
        )
    }

    #[test]
    fn flat_reads_the_collector_layout() {
        let line = r#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":0,"s":"BTCUSDT","b":"65000","B":"1.278","a":"65000.1","A":"3.255","T":1700006400000,"E":1700006400001}}"#;
        assert!(flat(line).is_some());
    }

    #[test]
    fn decimal_matches_the_standard_parser() {
        for t in [
            "0",
            "1",
            "65000.1",
            "0.001",
            "2681.63",
            "123456789012345",
            "9.99999999999999",
        ] {
            assert_eq!(decimal(t), Some(t.parse::<f64>().unwrap()), "{t}");
        }
        for t in [
            "",
            ".5",
            "5.",
            "1e3",
            "-1",
            "1.2.3",
            "1234567890123456",
            "0x1",
            "+1",
        ] {
            assert!(
                decimal(t).is_none_or(|v| Some(v) == t.parse::<f64>().ok()),
                "{t}"
            );
        }
        assert!(decimal("5.").is_none() && decimal(".5").is_none() && decimal("1e3").is_none());
    }

    #[test]
    fn string_scan_stops_at_the_first_special_byte() {
        // Every length and position, each special byte, and high bytes (UTF-8) around it.
        fn naive(json: &str, pos: usize) -> Option<(&str, usize)> {
            let bytes = json.as_bytes();
            let special = |c: &u8| *c == b'"' || *c == b'\\' || *c < 0x20;
            let end = pos + bytes.get(pos..)?.iter().position(special)?;
            (bytes.get(end) == Some(&b'"'))
                .then(|| (json.get(pos..end).unwrap_or_default(), end + 1))
        }
        for len in 0..20 {
            for at in 0..=len {
                for special in ["\"", "\\", "\n", "\u{1f}", "\u{0}"] {
                    for fill in ["a", "\u{e9}", "\u{7f}", " "] {
                        let body: String = (0..len)
                            .map(|k| if k == at { special } else { fill })
                            .collect();
                        let json = format!("\"{body}\"tail");
                        assert_eq!(string(&json, 1), naive(&json, 1), "{json:?}");
                    }
                }
            }
        }
    }
}
