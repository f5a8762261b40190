//! Tick sizes and maker quote prices: pure Rust, no Python.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small multiplicative hash (the one rustc uses): symbols are short and
/// not attacker-chosen keys of a long-lived table, so SipHash buys nothing.
#[derive(Default, Clone, Copy)]
struct SymbolHasher(u64);

impl Hasher for SymbolHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An unknown symbol's tick is this fraction of the reference price.
pub const FALLBACK_TICK_FRACTION: f64 = 1e-5;

/// Tick sizes keyed by upper-case symbol.
#[derive(Debug, Default, Clone)]
pub struct TickTable {
    ticks: HashMap<Box<str>, f64, BuildHasherDefault<SymbolHasher>>,
}

impl TickTable {
    /// Later entries win, so pass the defaults first, then the overrides.
    pub fn new<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = (S, f64)>,
        S: Into<Box<str>>,
    {
        let ticks = entries.into_iter().map(|(s, t)| (s.into(), t)).collect();
        Self { ticks }
    }

    /// The tick for an already upper-cased symbol; 0.0 when unknown.
    pub fn get(&self, upper_symbol: &str) -> f64 {
        self.ticks.get(upper_symbol).copied().unwrap_or(0.0)
    }

    /// The tick for an ASCII symbol in any case.
    pub fn get_ascii(&self, symbol: &str) -> f64 {
        if symbol.bytes().any(|b| b.is_ascii_lowercase()) {
            self.get(&symbol.to_ascii_uppercase())
        } else {
            self.get(symbol)
        }
    }
}

/// Python's `max(a, b)`: `a` unless `b > a` (so NaN never wins as `b`).
pub fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// The post-only quote price: a SELL rests `offset_ticks` ticks above the
/// reference, a BUY as far below it but never under one tick. Returns 0.0
/// when no quote is possible (non-positive or non-finite reference, or a
/// non-finite result).
pub fn maker_price(reference: f64, tick: f64, offset_ticks: f64, sell: bool) -> f64 {
    if !(reference > 0.0) || reference == f64::INFINITY {
        return 0.0;
    }
    let tick = if tick <= 0.0 {
        reference * FALLBACK_TICK_FRACTION
    } else {
        tick
    };
    let offset = offset_ticks * tick;
    let price = if sell {
        reference + offset
    } else {
        py_max(tick, reference - offset)
    };
    if price.is_finite() {
        price
    } else {
        0.0
    }
}

/// Whether the order side is SELL, given the action and position side.
pub fn sells(exit: bool, long: bool) -> bool {
    exit == long
}

/// Python's `round(x, 3)`: correctly rounded to three decimals, ties to even
/// on the exact binary value.
pub fn round3(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.3}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TickTable {
        TickTable::new([("BTCUSDT", 0.1), ("ETHUSDT", 0.01)])
    }

    #[test]
    fn lookups_are_case_insensitive_for_ascii() {
        let t = table();
        assert_eq!(t.get_ascii("btcusdt"), 0.1);
        assert_eq!(t.get_ascii("BTCUSDT"), 0.1);
        assert_eq!(t.get("btcusdt"), 0.0);
        assert_eq!(t.get_ascii("FOO"), 0.0);
    }

    #[test]
    fn overrides_win() {
        let t = TickTable::new([("BTCUSDT", 0.1), ("BTCUSDT", 0.5)]);
        assert_eq!(t.get("BTCUSDT"), 0.5);
    }

    #[test]
    fn maker_price_rests_on_our_side() {
        assert_eq!(maker_price(65000.0, 0.1, 1.0, true), 65000.1);
        assert_eq!(maker_price(65000.0, 0.1, 1.0, false), 65000.0 - 0.1);
        assert_eq!(maker_price(65000.0, 0.1, 0.0, false), 65000.0);
    }

    #[test]
    fn maker_price_floors_a_buy_at_one_tick() {
        assert_eq!(maker_price(0.15, 0.1, 1.0, false), 0.1);
        assert_eq!(maker_price(0.05, 0.1, 1.0, false), 0.1);
    }

    #[test]
    fn unknown_tick_falls_back_to_a_fraction_of_the_price() {
        let px = maker_price(200.0, 0.0, 1.0, true);
        assert_eq!(px, 200.0 + 200.0 * FALLBACK_TICK_FRACTION);
    }

    #[test]
    fn no_quote_for_bad_references() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(maker_price(r, 0.1, 1.0, true), 0.0);
            assert_eq!(maker_price(r, 0.1, 1.0, false), 0.0);
        }
        assert_eq!(maker_price(f64::MAX, 0.1, 1e300, true), 0.0);
    }

    #[test]
    fn py_max_keeps_the_first_argument_on_nan() {
        assert_eq!(py_max(0.5, f64::NAN), 0.5);
        assert!(py_max(f64::NAN, 0.5).is_nan());
        assert_eq!(py_max(0.5, 8.0), 8.0);
    }

    #[test]
    fn sides() {
        assert!(sells(true, true)); // exit long
        assert!(!sells(true, false)); // exit short
        assert!(!sells(false, true)); // enter long
        assert!(sells(false, false)); // enter short
    }

    #[test]
    fn round3_matches_python() {
        assert_eq!(round3(0.0625), 0.062);
        assert_eq!(round3(0.0015), 0.002);
        assert_eq!(round3(2.675), 2.675);
        assert_eq!(round3(1.0005), 1.0);
        assert!(round3(-0.0004).is_sign_negative());
        assert!(round3(f64::NAN).is_nan());
        assert_eq!(round3(1e300), 1e300);
    }
}
