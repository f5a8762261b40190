//! The collector's own layouts, read in one pass: Binance USD-M `bookTicker`,
//! `trade`, `aggTrade` and `depthUpdate` with their keys in the order the exchange
//! sends them, no spaces, no escapes, bare or in the combined-stream envelope.
//! Numbers are converted as they are found and go straight into the columns.
//!
//! Any surprise (another key order, a space, an extra key, an escape, non-ASCII
//! text, a value the checks would refuse) returns None with nothing written, and
//! the line goes to the general path, which decides and writes the errors. So
//! correctness never depends on the layout: only speed does.

use super::{decimal_prefix, Parsed};

/// A position in a chunk of lines.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Consume `s`, which must come next.
    #[inline(always)]
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        let end = self.pos + s.len();
        if self.b.get(self.pos..end)? == s {
            self.pos = end;
            Some(())
        } else {
            None
        }
    }

    /// A string's bytes after its opening quote, through the closing one:
    /// printable ASCII only.
    #[inline(always)]
    fn text(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => return None,
                c if !(0x20..0x80).contains(&c) => return None,
                _ => self.pos += 1,
            }
        }
        let t = self.b.get(start..self.pos)?;
        self.pos += 1;
        Some(t)
    }

    /// The eight bytes here, the first one lowest.
    #[inline(always)]
    fn word(&self, at: usize) -> Option<u64> {
        let bytes = self.b.get(at..at + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// The run of digits here: its value (exact up to 19 digits) and length.
    #[inline(always)]
    fn digits(&mut self) -> (u64, usize) {
        let start = self.pos;
        let mut v = 0u64;
        while let Some(w) = self.word(self.pos) {
            let (x, n) = digit_run(w);
            v = v
                .wrapping_mul(TEN_TO.get(n).copied().unwrap_or(0))
                .wrapping_add(x);
            self.pos += n;
            if n < 8 {
                return (v, self.pos - start);
            }
        }
        // The last bytes of the chunk: one at a time.
        while let Some(d) = self.peek().map(|c| c.wrapping_sub(b'0')) {
            if d > 9 {
                break;
            }
            v = v.wrapping_mul(10).wrapping_add(u64::from(d));
            self.pos += 1;
        }
        (v, self.pos - start)
    }

    /// One of `known` (strings already read, all plain) and its closing quote, if one
    /// comes next; else a new one, added to `known` while it holds fewer than four.
    #[inline(always)]
    fn known_text(&mut self, known: &mut Vec<Vec<u8>>) -> Option<()> {
        let rest = self.b.get(self.pos..)?;
        for k in known.iter() {
            if rest.get(k.len()) == Some(&b'"') && rest.starts_with(k) {
                self.pos += k.len() + 1;
                return Some(());
            }
        }
        let text = self.text()?;
        if known.len() < 4 {
            known.push(text.to_vec());
        }
        Some(())
    }

    /// The symbol: None if it is `last` (the one of the line before), else its text.
    #[inline(always)]
    fn symbol(&mut self, last: &[u8]) -> Option<Option<&'a [u8]>> {
        let rest = self.b.get(self.pos..)?;
        if rest.get(last.len()) == Some(&b'"') && rest.starts_with(last) {
            self.pos += last.len() + 1;
            return Some(None);
        }
        self.text().map(Some)
    }

    /// A JSON integer >= 0 (no sign, no leading zero) of up to 19 digits. What
    /// follows is checked by the next literal, so `1.5` or `1e3` is refused there.
    #[inline(always)]
    fn uint(&mut self) -> Option<u64> {
        let first = self.peek()?;
        let (v, n) = self.digits();
        (n > 0 && n <= 19 && (first != b'0' || n == 1)).then_some(v)
    }

    #[inline(always)]
    fn int(&mut self) -> Option<i64> {
        i64::try_from(self.uint()?).ok()
    }

    /// A decimal string (`65000.1`) after its opening quote, through the closing one.
    /// Up to seven digits each side of the point are read a word at a time; the
    /// value is the one [`decimal_prefix`] gives (the same integer over the same
    /// power of ten), which reads every other case.
    #[inline(always)]
    fn dec(&mut self) -> Option<f64> {
        if let Some((v, len)) = self.short_decimal() {
            self.pos += len;
            return Some(v);
        }
        let (v, len) = decimal_prefix(self.b.get(self.pos..)?)?;
        self.pos += len;
        self.lit(b"\"")?;
        Some(v)
    }

    /// `ddd"` or `ddd.ddd"` with 1 to 7 digits each side: the value and the length,
    /// closing quote included.
    #[inline(always)]
    fn short_decimal(&self) -> Option<(f64, usize)> {
        let (int, n1) = digit_run(self.word(self.pos)?);
        if n1 == 0 || n1 == 8 {
            return None;
        }
        match self.b.get(self.pos + n1)? {
            b'"' => Some((int as f64, n1 + 1)),
            b'.' => {
                let (frac, n2) = digit_run(self.word(self.pos + n1 + 1)?);
                if n2 == 0 || n2 == 8 || self.b.get(self.pos + n1 + 1 + n2) != Some(&b'"') {
                    return None;
                }
                // At most 14 digits: exact as an f64, and so is the power of ten.
                let scale = TEN_TO.get(n2)?;
                let mantissa = int * scale + frac;
                Some((mantissa as f64 / *scale as f64, n1 + n2 + 2))
            }
            _ => None,
        }
    }

    #[inline(always)]
    fn boolean(&mut self) -> Option<bool> {
        if self.lit(b"true").is_some() {
            Some(true)
        } else {
            self.lit(b"false").map(|()| false)
        }
    }

    /// The local receive time `<digits> ` before the JSON (leading zeros allowed).
    #[inline(always)]
    fn local(&mut self) -> Option<i64> {
        let (v, n) = self.digits();
        if n == 0 || n > 19 {
            return None;
        }
        self.lit(b" ")?;
        i64::try_from(v).ok()
    }
}

/// Powers of ten up to 10^8.
const TEN_TO: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The digits at the start of `w` (eight bytes, the first one lowest): their
/// value and how many (0 to 8).
#[inline(always)]
fn digit_run(w: u64) -> (u64, usize) {
    // A digit byte becomes 0..=9; adding 6 then keeps its high nibble zero. The
    // first byte that fails is exact: carries only reach the bytes after it.
    let t = w ^ 0x3030_3030_3030_3030;
    let bad = (t | t.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0;
    let n = (bad.trailing_zeros() / 8) as usize;
    if n == 0 {
        return (0, 0);
    }
    // The n digits to the top bytes, zeros (leading zeros) below them.
    let d = t << (64 - 8 * n);
    // Pairs, then fours, then all eight: three multiplications.
    let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    (((d.wrapping_mul(10_000)) + (d >> 32)) & 0xFFFF_FFFF, n)
}

/// What a line holds, before it is written.
enum Row<'a> {
    Book {
        sym: Option<&'a [u8]>,
        ts: i64,
        bid: f64,
        ask: f64,
        bid_qty: f64,
        ask_qty: f64,
    },
    Trade {
        sym: Option<&'a [u8]>,
        ts: i64,
        px: f64,
        qty: f64,
        buyer_maker: bool,
        agg: bool,
    },
}

/// Read the line at `pos` of `chunk` if it has one of the collector's layouts:
/// its row goes to `out` (`out.lines` already counts it) and the position after
/// its newline is returned. None: nothing was written.
pub(super) fn line(chunk: &[u8], pos: usize, local_time: bool, out: &mut Parsed) -> Option<usize> {
    let mut c = Cur { b: chunk, pos };
    let local = if c.peek()? == b'{' {
        None
    } else {
        Some(c.local()?)
    };
    // `None`: exchange time, from the message.
    let at = if local_time {
        Some(local?.div_euclid(1_000_000))
    } else {
        None
    };
    let envelope = c.lit(b"{\"stream\":\"").is_some();
    if envelope {
        c.known_text(&mut out.streams)?;
        c.lit(b",\"data\":")?;
    }
    c.lit(b"{\"e\":\"")?;
    let last = out
        .symbols
        .get(out.last)
        .map_or(&[][..], |(s, _)| s.as_bytes());
    let row = match c.peek()? {
        b'b' => book(&mut c, at, last)?,
        b't' => trade(&mut c, at, last)?,
        b'a' => agg_trade(&mut c, at, last)?,
        b'd' => return depth(&mut c, at, envelope, out),
        _ => return None,
    };
    let next = end(&mut c, envelope)?;
    match row {
        Row::Book {
            sym,
            ts,
            bid,
            ask,
            bid_qty,
            ask_qty,
        } => {
            let b = &mut out.symbol_of(sym)?.book;
            b.ts.push(ts);
            b.bid.push(bid);
            b.ask.push(ask);
            b.bid_qty.push(bid_qty);
            b.ask_qty.push(ask_qty);
        }
        Row::Trade {
            sym,
            ts,
            px,
            qty,
            buyer_maker,
            agg,
        } => {
            let s = out.symbol_of(sym)?;
            let t = if agg { &mut s.agg } else { &mut s.trade };
            t.ts.push(ts);
            t.px.push(px);
            t.qty.push(qty);
            // The buyer was the maker, so the seller took liquidity.
            t.side.push(if buyer_maker { -1 } else { 1 });
        }
    }
    out.messages += 1;
    Some(next)
}

impl Parsed {
    /// The symbol `name`, or the last one looked up if None.
    #[inline(always)]
    fn symbol_of(&mut self, name: Option<&[u8]>) -> Option<&mut super::Symbol> {
        let pos = match name {
            Some(name) => self.symbol_index(name)?,
            None => self.last,
        };
        self.symbols.get_mut(pos).map(|(_, s)| s)
    }
}

/// The envelope's `}`, then the end of the line: its newline, or the chunk's end.
#[inline(always)]
fn end(c: &mut Cur<'_>, envelope: bool) -> Option<usize> {
    if envelope {
        c.lit(b"}")?;
    }
    match c.peek() {
        None => Some(c.pos),
        Some(b'\n') => Some(c.pos + 1),
        Some(_) => None,
    }
}

/// `bookTicker`: e, u, s, b, B, a, A, T, E.
fn book<'a>(c: &mut Cur<'a>, at: Option<i64>, last: &[u8]) -> Option<Row<'a>> {
    c.lit(b"bookTicker\",\"u\":")?;
    c.uint()?;
    c.lit(b",\"s\":\"")?;
    let sym = c.symbol(last)?;
    c.lit(b",\"b\":\"")?;
    let bid = c.dec()?;
    c.lit(b",\"B\":\"")?;
    let bid_qty = c.dec()?;
    c.lit(b",\"a\":\"")?;
    let ask = c.dec()?;
    c.lit(b",\"A\":\"")?;
    let ask_qty = c.dec()?;
    c.lit(b",\"T\":")?;
    let t = c.int()?;
    c.lit(b",\"E\":")?;
    c.int()?;
    c.lit(b"}")?;
    // A zero price or a crossed book: the general path names the fault.
    (bid > 0.0 && ask >= bid).then_some(Row::Book {
        sym,
        ts: at.unwrap_or(t),
        bid,
        ask,
        bid_qty,
        ask_qty,
    })
}

/// `trade`: e, E, T, s, t, p, q, X, m.
fn trade<'a>(c: &mut Cur<'a>, at: Option<i64>, last: &[u8]) -> Option<Row<'a>> {
    c.lit(b"trade\",\"E\":")?;
    c.int()?;
    c.lit(b",\"T\":")?;
    let t = c.int()?;
    c.lit(b",\"s\":\"")?;
    let sym = c.symbol(last)?;
    c.lit(b",\"t\":")?;
    c.uint()?;
    c.lit(b",\"p\":\"")?;
    let px = c.dec()?;
    c.lit(b",\"q\":\"")?;
    let qty = c.dec()?;
    c.lit(b",\"X\":\"")?;
    c.text()?;
    c.lit(b",\"m\":")?;
    let buyer_maker = c.boolean()?;
    c.lit(b"}")?;
    (px > 0.0).then_some(Row::Trade {
        sym,
        ts: at.unwrap_or(t),
        px,
        qty,
        buyer_maker,
        agg: false,
    })
}

/// `aggTrade`: e, E, a, s, p, q, f, l, T, m.
fn agg_trade<'a>(c: &mut Cur<'a>, at: Option<i64>, last: &[u8]) -> Option<Row<'a>> {
    c.lit(b"aggTrade\",\"E\":")?;
    c.int()?;
    c.lit(b",\"a\":")?;
    c.uint()?;
    c.lit(b",\"s\":\"")?;
    let sym = c.symbol(last)?;
    c.lit(b",\"p\":\"")?;
    let px = c.dec()?;
    c.lit(b",\"q\":\"")?;
    let qty = c.dec()?;
    c.lit(b",\"f\":")?;
    c.uint()?;
    c.lit(b",\"l\":")?;
    c.uint()?;
    c.lit(b",\"T\":")?;
    let t = c.int()?;
    c.lit(b",\"m\":")?;
    let buyer_maker = c.boolean()?;
    c.lit(b"}")?;
    (px > 0.0).then_some(Row::Trade {
        sym,
        ts: at.unwrap_or(t),
        px,
        qty,
        buyer_maker,
        agg: true,
    })
}

/// `depthUpdate`: e, E, T, s, U, u, pu, b, a. Its levels are pushed as they are
/// read, and taken back if the line turns out not to fit.
fn depth(c: &mut Cur<'_>, at: Option<i64>, envelope: bool, out: &mut Parsed) -> Option<usize> {
    let last = out
        .symbols
        .get(out.last)
        .map_or(&[][..], |(s, _)| s.as_bytes());
    c.lit(b"depthUpdate\",\"E\":")?;
    c.int()?;
    c.lit(b",\"T\":")?;
    let t = c.int()?;
    c.lit(b",\"s\":\"")?;
    let sym = c.symbol(last)?;
    c.lit(b",\"U\":")?;
    let first = c.uint()?;
    c.lit(b",\"u\":")?;
    let last = c.uint()?;
    c.lit(b",\"pu\":")?;
    let prev = c.uint()?;
    c.lit(b",\"b\":")?;
    let line_no = out.lines;
    let sym = match sym {
        Some(name) => out.symbol_index(name)?,
        None => out.last,
    };
    let d = &mut out.symbols.get_mut(sym)?.1.depth;
    let start = d.px.len();
    let read = (|| {
        levels(c, d, 1)?;
        c.lit(b",\"a\":")?;
        levels(c, d, -1)?;
        c.lit(b"}")?;
        end(c, envelope)
    })();
    let Some(next) = read else {
        d.px.truncate(start);
        d.qty.truncate(start);
        d.side.truncate(start);
        return None;
    };
    d.ts.push(at.unwrap_or(t));
    d.line.push(line_no);
    d.kind.push(0);
    d.first_id.push(first);
    d.last_id.push(last);
    d.prev_id.push(prev);
    d.start.push(start as u64);
    out.messages += 1;
    Some(next)
}

/// `[["price","qty"],...]` onto the depth columns, prices > 0.
fn levels(c: &mut Cur<'_>, d: &mut super::Depth, side: i8) -> Option<()> {
    c.lit(b"[")?;
    if c.lit(b"]").is_some() {
        return Some(());
    }
    loop {
        c.lit(b"[\"")?;
        let px = c.dec()?;
        c.lit(b",\"")?;
        let qty = c.dec()?;
        c.lit(b"]")?;
        if !(px > 0.0) {
            return None;
        }
        d.px.push(px);
        d.qty.push(qty);
        d.side.push(side);
        match c.peek()? {
            b',' => c.pos += 1,
            b']' => {
                c.pos += 1;
                return Some(());
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decimal, parse_line};
    use super::*;

    #[test]
    fn digit_run_reads_the_leading_digits() {
        let fills = [b'0', b'9', b'.', b'"', b'/', b':', b' ', 0xff, 0x06, b'a'];
        for n in 0..=8 {
            for &stop in &fills {
                for &digit in b"0123456789" {
                    let mut w = [stop; 8];
                    for (k, b) in w.iter_mut().enumerate().take(n) {
                        *b = if k % 2 == 0 { digit } else { b'0' + (k as u8) };
                    }
                    let text = &w[..];
                    let want_n = text.iter().take_while(|c| c.is_ascii_digit()).count();
                    let want: u64 =
                        std::str::from_utf8(&text[..want_n]).map_or(0, |t| t.parse().unwrap_or(0));
                    assert_eq!(digit_run(u64::from_le_bytes(w)), (want, want_n), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn decimals_match_decimal() {
        for t in [
            "0",
            "1",
            "65000",
            "65000.1",
            "0.001",
            "1.178",
            "2681.63",
            "1234567.1234567",
            "12345678.1",
            "1.12345678",
            "9999999.9999999",
            "007.50",
            "0.0",
            "123456789012345",
            "1234567890123456",
            "1.",
            ".5",
            "1.2.3",
            "1e3",
            "",
            "-1",
        ] {
            let line = format!("{t}\"tail");
            let mut c = Cur {
                b: line.as_bytes(),
                pos: 0,
            };
            let got = c.dec();
            assert_eq!(got, decimal(t), "{t}");
            if got.is_some() {
                assert_eq!(c.pos, t.len() + 1, "{t}");
            }
            // Near the end of the chunk: no word to read.
            let short = format!("{t}\"");
            let mut c = Cur {
                b: short.as_bytes(),
                pos: 0,
            };
            assert_eq!(c.dec(), decimal(t), "{t}");
        }
    }

    /// Rows of `p` as text, to compare two parses.
    fn dump(p: &Parsed) -> String {
        let mut out = format!("{} {} {}\n", p.lines, p.messages, p.ignored);
        for (name, s) in &p.symbols {
            let b = &s.book;
            let d = &s.depth;
            out += &format!(
                "{name:?} book {:?} {:?} {:?} {:?} {:?}\n trade {:?} {:?} {:?} {:?}\n \
                 agg {:?} {:?} {:?} {:?}\n depth {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}\n",
                b.ts, b.bid, b.ask, b.bid_qty, b.ask_qty,
                s.trade.ts, s.trade.px, s.trade.qty, s.trade.side,
                s.agg.ts, s.agg.px, s.agg.qty, s.agg.side,
                d.ts, d.line, d.kind, d.first_id, d.last_id, d.prev_id, d.start, d.px, d.qty, d.side,
            );
        }
        out
    }

    const LINES: [&str; 6] = [
        r#"1723161255088165267 {"stream":"ethusdt@bookTicker","data":{"e":"bookTicker","u":5123107838717,"s":"ETHUSDT","b":"2681.62","B":"1.165","a":"2681.63","A":"73.077","T":1723161256310,"E":1723161256311}}"#,
        r#"1723161255290656866 {"stream":"ethusdt@trade","data":{"e":"trade","E":1723161256560,"T":1723161256560,"s":"ETHUSDT","t":4308068523,"p":"2681.62","q":"1.000","X":"MARKET","m":true}}"#,
        r#"{"e":"aggTrade","E":123456789,"a":5933014,"s":"BTCUSDT","p":"0.001","q":"100","f":100,"l":105,"T":123456785,"m":false}"#,
        r#"1723161255088156767 {"stream":"ethusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256303,"T":1723161256302,"s":"ETHUSDT","U":5123107832349,"u":5123107837896,"pu":5123107832175,"b":[["200.00","10.229"],["707.81","0.170"]],"a":[["2681.63","0"]]}}"#,
        r#"{"e":"depthUpdate","E":3,"T":2,"s":"X","U":1,"u":2,"pu":0,"b":[],"a":[]}"#,
        r#"{"e":"bookTicker","u":0,"s":"BTCUSDT","b":"65000","B":"0","a":"65000.1","A":"3.255","T":1700006400000,"E":1700006400001}"#,
    ];

    /// One line through the layouts (None if they pass it on) and through the
    /// general path, each after `warm` (read by the layouts: its stream name and
    /// symbol are then the ones remembered).
    fn both(warm: &str, text: &str, local_time: bool) -> (Option<String>, Result<String, String>) {
        let mut fast = Parsed {
            lines: 1,
            ..Parsed::default()
        };
        let mut slow = Parsed {
            lines: 1,
            ..Parsed::default()
        };
        if !warm.is_empty() {
            assert!(
                line(warm.as_bytes(), 0, false, &mut fast).is_some(),
                "{warm}"
            );
            assert!(parse_line(warm, false, &mut slow).is_ok(), "{warm}");
            fast.lines = 2;
            slow.lines = 2;
        }
        let got = line(text.as_bytes(), 0, local_time, &mut fast).map(|end| {
            assert_eq!(end, text.len());
            dump(&fast)
        });
        let want = parse_line(text.trim_ascii(), local_time, &mut slow).map(|()| dump(&slow));
        (got, want)
    }

    #[test]
    fn the_layouts_read_their_lines() {
        for text in LINES {
            for local_time in [false, true] {
                let (got, want) = both("", text, local_time);
                if local_time && !text.starts_with('1') {
                    assert!(got.is_none() && want.is_err(), "{text}");
                } else {
                    assert_eq!(got.as_ref(), Some(&want.unwrap()), "{text}");
                }
            }
        }
    }

    /// Every one-byte change, insertion and cut of the sample lines: whatever the
    /// layouts accept, the general path reads the same.
    #[test]
    fn the_layouts_accept_only_what_the_general_path_reads_alike() {
        let subs = [
            b' ', b'0', b'1', b'9', b'.', b'"', b'\\', b',', b'}', b'{', b'[', b']', b'-', b'e',
            b'x', b'\t',
        ];
        let mut accepted = 0;
        for original in LINES {
            let bytes = original.as_bytes();
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for i in 0..bytes.len() {
                variants.push(bytes[..i].to_vec());
                for &c in &subs {
                    let mut v = bytes.to_vec();
                    v[i] = c;
                    variants.push(v);
                    let mut v = bytes.to_vec();
                    v.insert(i, c);
                    variants.push(v);
                }
            }
            for v in variants {
                let Ok(text) = std::str::from_utf8(&v) else {
                    continue;
                };
                if text.trim_ascii().is_empty() {
                    continue;
                }
                for (warm, local_time) in [("", false), ("", true), (original, false)] {
                    let (got, want) = both(warm, text, local_time);
                    if let Some(got) = got {
                        accepted += 1;
                        assert_eq!(Ok(got), want, "{text}");
                    }
                }
            }
        }
        assert!(accepted > 1000, "{accepted}");
    }
}
