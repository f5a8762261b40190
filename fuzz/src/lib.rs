//! Model checks for the pure-Rust core: `Index<T>` against a `BTreeMap`, and the
//! pricing helpers against their documented contracts. The fuzz targets call these;
//! `cargo test` here replays a deterministic pseudo-random stream on stable.

#![allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0.0)` is the NaN-aware test, as in rust/

#[allow(dead_code)]
#[path = "../../rust/index.rs"]
mod index;
#[allow(dead_code)]
#[path = "../../rust/pricing.rs"]
mod pricing;

use std::collections::BTreeMap;

use arbitrary::Arbitrary;

use index::Index;

/// A deadline: special values often, any bit pattern sometimes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    Special(u8),
    Small(i16),
    Bits(u64),
}

const SPECIALS: [f64; 12] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MIN_POSITIVE,
    5e-324,
    f64::MAX,
    f64::MIN,
    1000.5,
];

impl Num {
    pub fn value(self) -> f64 {
        match self {
            Num::Special(i) => SPECIALS[usize::from(i) % SPECIALS.len()],
            Num::Small(i) => f64::from(i) / 4.0,
            Num::Bits(b) => f64::from_bits(b),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum IndexOp {
    /// Insert a new item at a fresh position.
    Add {
        deadline: Num,
        enter: bool,
    },
    /// Insert over an existing position (or an unknown one): keeps the place.
    Replace {
        which: u8,
        deadline: Num,
        enter: bool,
    },
    Remove {
        which: u8,
    },
    SetDeadline {
        which: u8,
        deadline: Num,
    },
    SetEnter {
        which: u8,
        enter: bool,
    },
    Due {
        now: Num,
    },
    RemoveWhere {
        modulus: u8,
    },
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    item: u64,
    deadline: f64,
    enter: bool,
}

/// `pos` of the `which`-th live slot, or a position that never existed.
fn pick(model: &BTreeMap<u64, Slot>, which: u8, next: u64) -> u64 {
    if model.is_empty() || which == u8::MAX {
        return next + u64::from(which);
    }
    let i = usize::from(which) % model.len();
    model.keys().nth(i).copied().unwrap_or(next)
}

fn due_in_model(model: &BTreeMap<u64, Slot>, now: f64) -> Vec<u64> {
    model
        .values()
        .filter(|s| !now.is_nan() && !s.deadline.is_nan() && s.deadline <= now)
        .map(|s| s.item)
        .collect()
}

/// Run `ops` on an `Index<u64>` and a `BTreeMap` model; panics on any disagreement.
pub fn check_index(ops: &[IndexOp]) {
    let mut ix: Index<u64> = Index::default();
    let mut model: BTreeMap<u64, Slot> = BTreeMap::new();
    let mut next_item = 0u64;
    let mut next_pos = 0u64;
    for op in ops {
        match *op {
            IndexOp::Add { deadline, enter } => {
                let pos = ix.new_pos();
                assert_eq!(pos, next_pos, "positions are handed out in order");
                next_pos += 1;
                next_item += 1;
                let d = deadline.value();
                assert_eq!(ix.insert(pos, next_item, d, enter), None);
                model.insert(
                    pos,
                    Slot {
                        item: next_item,
                        deadline: d,
                        enter,
                    },
                );
            }
            IndexOp::Replace {
                which,
                deadline,
                enter,
            } => {
                // The registry only re-inserts at positions it was handed: live or dead.
                let mut pos = pick(&model, which, next_pos);
                if pos >= next_pos {
                    match (0..next_pos).rev().find(|p| !model.contains_key(p)) {
                        Some(dead) => pos = dead,
                        None => continue,
                    }
                }
                next_item += 1;
                let d = deadline.value();
                let old = ix.insert(pos, next_item, d, enter);
                let expected = model.insert(
                    pos,
                    Slot {
                        item: next_item,
                        deadline: d,
                        enter,
                    },
                );
                assert_eq!(old, expected.map(|s| s.item));
            }
            IndexOp::Remove { which } => {
                let pos = pick(&model, which, next_pos);
                assert_eq!(ix.remove(pos), model.remove(&pos).map(|s| s.item));
            }
            IndexOp::SetDeadline { which, deadline } => {
                let pos = pick(&model, which, next_pos);
                let d = deadline.value();
                ix.set_deadline(pos, d);
                if let Some(s) = model.get_mut(&pos) {
                    s.deadline = d;
                }
            }
            IndexOp::SetEnter { which, enter } => {
                let pos = pick(&model, which, next_pos);
                ix.set_enter(pos, enter);
                if let Some(s) = model.get_mut(&pos) {
                    s.enter = enter;
                }
            }
            IndexOp::Due { now } => {
                let now = now.value();
                let got: Vec<u64> = ix.due(now).into_iter().copied().collect();
                assert_eq!(got, due_in_model(&model, now), "due({now:?})");
            }
            IndexOp::RemoveWhere { modulus } => {
                let m = u64::from(modulus.max(1));
                let mut removed: Vec<(u64, u64)> = ix.remove_where(|item| item % m == 0);
                removed.sort_unstable();
                let doomed: Vec<u64> = model
                    .iter()
                    .filter(|(_, s)| s.item % m == 0)
                    .map(|(p, _)| *p)
                    .collect();
                let expected: Vec<(u64, u64)> = doomed
                    .iter()
                    .filter_map(|p| model.remove(p).map(|s| (*p, s.item)))
                    .collect();
                assert_eq!(removed, expected);
            }
        }
        // Invariants after every step.
        let first = model.values().find(|s| s.enter).map(|s| s.item);
        assert_eq!(ix.first_entry().copied(), first, "first_entry");
        assert_eq!(ix.has_entry(), first.is_some(), "has_entry");
        assert_eq!(ix.items().count(), model.len(), "items");
        for (pos, s) in &model {
            assert_eq!(ix.get(*pos), Some(&s.item));
        }
        assert_eq!(ix.get(next_pos + 1), None);
        assert_eq!(
            ix.due(f64::INFINITY)
                .into_iter()
                .copied()
                .collect::<Vec<_>>(),
            due_in_model(&model, f64::INFINITY)
        );
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub struct PriceCase {
    pub reference: Num,
    pub tick: Num,
    pub offset_ticks: Num,
    pub sell: bool,
    pub x: Num,
    pub ticks: Vec<(String, Num)>,
    pub symbol: String,
}

/// `maker_price`, `py_max`, `round3` and `TickTable` against their doc comments.
pub fn check_pricing(case: &PriceCase) {
    let reference = case.reference.value();
    let tick = case.tick.value();
    let offset = case.offset_ticks.value();
    let price = pricing::maker_price(reference, tick, offset, case.sell);
    // Finite or 0.0, and 0.0 whenever the reference is unusable.
    assert!(
        price.is_finite(),
        "maker_price({reference}, {tick}, {offset}) = {price}"
    );
    if !(reference > 0.0) || reference.is_infinite() {
        assert_eq!(
            price.to_bits(),
            0.0f64.to_bits(),
            "no quote for {reference}"
        );
    }
    // On our side of the touch, for a non-negative offset and a usable tick.
    if price != 0.0 && offset >= 0.0 && tick.is_finite() {
        let effective = if tick <= 0.0 {
            reference * pricing::FALLBACK_TICK_FRACTION
        } else {
            tick
        };
        if case.sell {
            assert!(price >= reference, "SELL {price} under {reference}");
        } else {
            assert!(
                price <= reference || price == effective,
                "BUY {price} over {reference}"
            );
            assert!(price >= effective, "BUY {price} under one tick {effective}");
        }
    }
    // py_max: the first argument unless the second is greater.
    let (a, b) = (reference, tick);
    let m = pricing::py_max(a, b);
    assert_eq!(m.to_bits(), if b > a { b } else { a }.to_bits());
    // round3: finite in, finite out, within half a unit of the third decimal, idempotent.
    let x = case.x.value();
    let r = pricing::round3(x);
    if x.is_finite() {
        assert!(r.is_finite());
        if x.abs() < 1e12 {
            assert!(
                (r - x).abs() <= 0.0005 + x.abs() * 1e-15,
                "round3({x}) = {r}"
            );
        }
        assert_eq!(
            pricing::round3(r).to_bits(),
            r.to_bits(),
            "round3 not idempotent at {x}"
        );
    } else {
        assert_eq!(r.to_bits(), x.to_bits());
    }
    // TickTable: the last entry wins; ASCII lookups ignore case.
    let entries: Vec<(String, f64)> = case
        .ticks
        .iter()
        .map(|(s, t)| (s.to_ascii_uppercase(), t.value()))
        .collect();
    let table = pricing::TickTable::new(entries.clone());
    let mut model: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for (s, t) in entries {
        model.insert(s, t);
    }
    for (s, t) in &model {
        assert_eq!(table.get(s).to_bits(), t.to_bits());
    }
    let sym = &case.symbol;
    let expected = model.get(&sym.to_ascii_uppercase()).copied().unwrap_or(0.0);
    if sym.is_ascii() {
        assert_eq!(table.get_ascii(sym).to_bits(), expected.to_bits());
    }
    // sells: exit == long.
    assert!(pricing::sells(true, true) && pricing::sells(false, false));
    assert!(!pricing::sells(true, false) && !pricing::sells(false, true));
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::Unstructured;

    /// A deterministic byte stream (xorshift64*), so stable `cargo test` replays many cases.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn index_matches_the_model() {
        for seed in 0..20_000 {
            let data = bytes(seed, 512);
            let mut u = Unstructured::new(&data);
            if let Ok(ops) = Vec::<IndexOp>::arbitrary(&mut u) {
                check_index(&ops);
            }
        }
    }

    #[test]
    fn pricing_meets_its_contract() {
        for seed in 0..20000 {
            let data = bytes(seed, 128);
            let mut u = Unstructured::new(&data);
            if let Ok(case) = PriceCase::arbitrary(&mut u) {
                check_pricing(&case);
            }
        }
    }
}
