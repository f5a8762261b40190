//! Numeric CSV columns (Binance bookTicker and aggTrades) in one pass, straight into
//! native-endian column buffers, a block at a time. Only a strict subset of what Arrow's CSV
//! reader accepts is parsed here: plain decimals, integers, Arrow's boolean words, `\n` or
//! `\r\n` line ends, empty lines skipped. Anything else (quotes, spaces, exponents, empty
//! fields, a wrong field count, a stray `\r`, an I/O error) returns None, and the caller reads
//! the file with Arrow, which gives the same values or names the bad line.

use std::fs::File;
use std::io::Read;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

const BLOCK: usize = 1 << 22; // as Arrow's reader: progress every 4 MiB

/// 10^k for k <= 22: exact in f64, so `m / 10^k` with m < 2^53 is correctly rounded.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Bool,
}

struct Parser {
    width: usize,
    /// Per file column: its kind and output slot, or None when not read.
    read: Vec<Option<(Kind, usize)>>,
    outs: Vec<Vec<u8>>,
    skip_first: bool,
}

fn int(f: &[u8]) -> Option<i64> {
    let (neg, digits) = match f.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, f),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

fn float(f: &[u8]) -> Option<f64> {
    let (neg, digits) = match f.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, f),
    };
    let (mut m, mut n, mut whole, mut frac, mut dot) = (0u64, 0usize, 0usize, 0usize, false);
    for &b in digits {
        if b.is_ascii_digit() {
            if n < 19 {
                m = m * 10 + u64::from(b - b'0');
            }
            n += 1;
            if dot {
                frac += 1;
            } else {
                whole += 1;
            }
        } else if b == b'.' && !dot {
            dot = true;
        } else {
            return None;
        }
    }
    if whole == 0 || (dot && frac == 0) {
        return None;
    }
    let v = match POW10.get(frac) {
        Some(p) if n <= 15 => m as f64 / p,
        _ => std::str::from_utf8(digits).ok()?.parse::<f64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

fn boolean(f: &[u8]) -> Option<u8> {
    match f {
        b"1" | b"True" | b"TRUE" | b"true" => Some(1),
        b"0" | b"False" | b"FALSE" | b"false" => Some(0),
        _ => None,
    }
}

impl Parser {
    /// Parses the complete lines of `buf` (with `last`, its tail too); the bytes used.
    fn lines(&mut self, buf: &[u8], last: bool) -> Option<usize> {
        let (mut pos, cr) = (0, memchr::memchr(b'\r', buf).is_some());
        while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(k) => (rest.get(..k)?, pos + k + 1),
                None if last => (rest, buf.len()),
                None => break,
            };
            pos = next;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if std::mem::take(&mut self.skip_first) || line.is_empty() {
                continue;
            }
            if cr && memchr::memchr(b'\r', line).is_some() {
                return None; // Arrow ends a line there too
            }
            self.line(line)?;
        }
        Some(pos)
    }

    fn line(&mut self, line: &[u8]) -> Option<()> {
        let mut col = 0;
        for field in line.split(|&b| b == b',') {
            if let Some(&Some((kind, slot))) = self.read.get(col) {
                let out = self.outs.get_mut(slot)?;
                match kind {
                    Kind::Int => out.extend_from_slice(&int(field)?.to_ne_bytes()),
                    Kind::Float => out.extend_from_slice(&float(field)?.to_ne_bytes()),
                    Kind::Bool => out.push(boolean(field)?),
                }
            }
            col += 1;
        }
        (col == self.width).then_some(())
    }
}

fn read_block(file: &mut File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let start = buf.len();
    buf.resize(start + BLOCK, 0);
    let mut got = 0;
    while let Some(dst) = buf.get_mut(start + got..).filter(|d| !d.is_empty()) {
        match file.read(dst) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(start + got);
    Ok(got)
}

/// The `columns` (`(index, "i" | "f" | "b")`, in file order) of a CSV file of `width`
/// fields, from `data` or else the file at `path`, as one buffer of int64, float64 or
/// bool per column; None when the file leaves the fast subset (see the module's doc).
/// `report(bytes_read)` follows the file.
#[pyfunction]
#[pyo3(signature = (path, data, width, header, columns, report=None))]
pub fn csv_columns<'py>(
    py: Python<'py>,
    path: &str,
    data: Option<&[u8]>,
    width: usize,
    header: bool,
    columns: Vec<(usize, String)>,
    report: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
    let mut read = vec![None; width];
    for (slot, (index, kind)) in columns.iter().enumerate() {
        let kind = match kind.as_str() {
            "i" => Kind::Int,
            "f" => Kind::Float,
            "b" => Kind::Bool,
            _ => return Ok(None),
        };
        match read.get_mut(*index) {
            Some(entry @ None) => *entry = Some((kind, slot)),
            _ => return Ok(None),
        }
    }
    let outs = vec![Vec::new(); columns.len()];
    let mut parser = Parser {
        width,
        read,
        outs,
        skip_first: header,
    };
    if let Some(data) = data {
        let (mut pos, mut end) = (0, 0);
        while pos < data.len() {
            end = (end + BLOCK).min(data.len());
            let last = end == data.len();
            let window = data.get(pos..end).unwrap_or_default();
            let Some(used) = py.detach(|| parser.lines(window, last)) else {
                return Ok(None);
            };
            pos += used;
            if let Some(report) = report.as_ref().filter(|_| used > 0) {
                report.call1((pos,))?;
            }
        }
    } else {
        let Ok(mut file) = File::open(path) else {
            return Ok(None);
        };
        let (mut buf, mut seen) = (Vec::with_capacity(2 * BLOCK), 0usize);
        loop {
            let got = py.detach(|| read_block(&mut file, &mut buf));
            let Ok(got) = got else {
                return Ok(None);
            };
            seen += got;
            if let Some(report) = &report {
                report.call1((seen,))?;
            }
            let used = py.detach(|| parser.lines(&buf, got == 0));
            let Some(used) = used else {
                return Ok(None);
            };
            buf.drain(..used);
            if got == 0 {
                break;
            }
        }
    }
    // Each buffer is freed once copied: the peak holds one column twice, not all.
    let outs = parser.outs.into_iter();
    Ok(Some(outs.map(|out| PyBytes::new(py, &out)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_standard_parser() {
        for text in [
            "0",
            "-0",
            "65000.1",
            "0.001",
            "123456789012345",
            "1234567890123456.5",
        ] {
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                float(text.as_bytes()).unwrap().to_bits(),
                want.to_bits(),
                "{text}"
            );
        }
        for text in ["", "-", ".5", "1.", "1e5", " 1", "1,", "+1", "1.2.3", "nan"] {
            assert!(float(text.as_bytes()).is_none(), "{text}");
        }
        assert_eq!(int(b"-1700006400000"), Some(-1_700_006_400_000));
        assert_eq!(int(b"1709251200000000000"), Some(1_709_251_200_000_000_000)); // ns
        assert!(int(b"9223372036854775808").is_none()); // past i64: Arrow says so
        assert!(int(b"1.0").is_none());
    }

    #[test]
    fn lines_blocks_and_refusals() {
        let mut p = Parser {
            width: 2,
            read: vec![Some((Kind::Int, 0)), Some((Kind::Bool, 1))],
            outs: vec![Vec::new(), Vec::new()],
            skip_first: true,
        };
        assert_eq!(p.lines(b"a,b\n1,true\r\n\n2,0\n3,fa", false), Some(17));
        assert_eq!(p.outs[1], vec![1, 0]);
        assert_eq!(p.lines(b"3,false", true), Some(7));
        assert_eq!(p.outs[0].len(), 24);
        assert!(p.lines(b"4\n", true).is_none());
        assert!(p.lines(b"4,1\r5,0\n", true).is_none());
    }
}
