//! The working-order index: expiry by deadline and the working entries, by
//! registration position. Pure Rust; the registry pairs it with a dict.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Positions are sequential integers of our own: one multiply spreads them
/// (SipHash would cost more than the rest of a lookup).
#[derive(Default, Clone, Copy)]
struct PosHasher(u64);

impl Hasher for PosHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An order-preserving integer image of a non-NaN deadline (-0.0 == 0.0).
fn key(deadline: f64) -> Option<u64> {
    if deadline.is_nan() {
        return None;
    }
    let bits = if deadline == 0.0 {
        0
    } else {
        deadline.to_bits()
    };
    Some(if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    })
}

/// Sorted inline up to this many keys; a B-tree past it.
const SMALL: usize = 16;

/// An ordered set of keys: a sorted vector while small (most registries
/// hold a few orders, and a one-key B-tree costs more than the rest of a
/// registration), a B-tree once it grows, back to the vector when emptied.
enum Keys<K> {
    Small(Vec<K>),
    Large(BTreeSet<K>),
}

impl<K: Ord + Copy> Default for Keys<K> {
    fn default() -> Self {
        Keys::Small(Vec::new())
    }
}

impl<K: Ord + Copy> Keys<K> {
    fn insert(&mut self, key: K) {
        match self {
            Keys::Small(v) => {
                // Keys mostly arrive in order: try the end first.
                let at = match v.last() {
                    Some(last) if *last < key => v.len(),
                    _ => match v.binary_search(&key) {
                        Ok(_) => return,
                        Err(at) => at,
                    },
                };
                if at == v.len() && at < SMALL {
                    v.push(key);
                } else if v.len() < SMALL {
                    v.insert(at, key);
                } else {
                    let mut set: BTreeSet<K> = v.drain(..).collect();
                    set.insert(key);
                    *self = Keys::Large(set);
                }
            }
            Keys::Large(set) => {
                set.insert(key);
            }
        }
    }

    fn remove(&mut self, key: &K) {
        match self {
            Keys::Small(v) => {
                if v.last() == Some(key) {
                    v.pop();
                } else if let Ok(at) = v.binary_search(key) {
                    v.remove(at);
                }
            }
            Keys::Large(set) => {
                set.remove(key);
                if set.is_empty() {
                    *self = Keys::default();
                }
            }
        }
    }

    /// Add `keys`, sorted and distinct: built at once into an empty set.
    fn extend_sorted(&mut self, keys: Vec<K>) {
        if !self.is_empty() {
            keys.into_iter().for_each(|k| self.insert(k));
        } else if keys.len() <= SMALL {
            *self = Keys::Small(keys);
        } else {
            *self = Keys::Large(keys.into_iter().collect());
        }
    }

    fn first(&self) -> Option<&K> {
        match self {
            Keys::Small(v) => v.first(),
            Keys::Large(set) => set.first(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Keys::Small(v) => v.is_empty(),
            Keys::Large(set) => set.is_empty(),
        }
    }

    /// Each key up to `limit` (inclusive), in order.
    fn each_up_to(&self, limit: K, mut f: impl FnMut(K)) {
        match self {
            Keys::Small(v) => v.iter().take_while(|k| **k <= limit).for_each(|k| f(*k)),
            Keys::Large(set) => set.range(..=limit).for_each(|k| f(*k)),
        }
    }
}

struct Slot<T> {
    item: T,
    deadline: Option<u64>,
    enter: bool,
}

/// Items by position (first-registration order), with an expiry index and
/// the set of working entries.
pub struct Index<T> {
    next_pos: u64,
    slots: HashMap<u64, Slot<T>, BuildHasherDefault<PosHasher>>,
    by_deadline: Keys<(u64, u64)>,
    entries: Keys<u64>,
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Self {
            next_pos: 0,
            slots: HashMap::default(),
            by_deadline: Keys::default(),
            entries: Keys::default(),
        }
    }
}

impl<T> Index<T> {
    /// A position after every position handed out so far.
    pub fn new_pos(&mut self) -> u64 {
        let pos = self.next_pos;
        self.next_pos += 1;
        pos
    }

    /// The position `new_pos` hands out next.
    pub fn next_pos(&self) -> u64 {
        self.next_pos
    }

    /// Put `item` at `pos`; returns the item it displaces.
    pub fn insert(&mut self, pos: u64, item: T, deadline: f64, enter: bool) -> Option<T> {
        let deadline = key(deadline);
        let slot = Slot {
            item,
            deadline,
            enter,
        };
        // One hash lookup: the displaced slot's keys go before the new ones.
        let old = self.slots.insert(pos, slot).map(|old| {
            self.unindex(pos, &old);
            old.item
        });
        if let Some(k) = deadline {
            self.by_deadline.insert((k, pos));
        }
        if enter {
            self.entries.insert(pos);
        }
        old
    }

    /// Put each `(item, deadline, enter)` at a new position, in order (one
    /// sort, not a tree insert each); returns the positions, and the items
    /// displaced (none: the positions are new) for the caller to drop.
    pub fn extend(
        &mut self,
        items: impl ExactSizeIterator<Item = (T, f64, bool)>,
    ) -> (Vec<u64>, Vec<T>) {
        let n = items.len();
        let mut positions = Vec::with_capacity(n);
        let mut deadlines = Vec::with_capacity(n);
        let mut entries = Vec::new();
        let mut displaced = Vec::new();
        self.slots.reserve(n);
        for (item, deadline, enter) in items {
            let pos = self.new_pos();
            let deadline = key(deadline);
            if let Some(k) = deadline {
                deadlines.push((k, pos));
            }
            if enter {
                entries.push(pos);
            }
            let slot = Slot {
                item,
                deadline,
                enter,
            };
            if let Some(old) = self.slots.insert(pos, slot) {
                self.unindex(pos, &old);
                displaced.push(old.item);
            }
            positions.push(pos);
        }
        deadlines.sort_unstable();
        self.by_deadline.extend_sorted(deadlines);
        self.entries.extend_sorted(entries);
        (positions, displaced)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn unindex(&mut self, pos: u64, slot: &Slot<T>) {
        if let Some(k) = slot.deadline {
            self.by_deadline.remove(&(k, pos));
        }
        if slot.enter {
            self.entries.remove(&pos);
        }
    }

    pub fn remove(&mut self, pos: u64) -> Option<T> {
        let slot = self.slots.remove(&pos)?;
        self.unindex(pos, &slot);
        Some(slot.item)
    }

    pub fn set_deadline(&mut self, pos: u64, deadline: f64) {
        if let Some(slot) = self.slots.get_mut(&pos) {
            if let Some(k) = slot.deadline {
                self.by_deadline.remove(&(k, pos));
            }
            slot.deadline = key(deadline);
            if let Some(k) = slot.deadline {
                self.by_deadline.insert((k, pos));
            }
        }
    }

    pub fn set_enter(&mut self, pos: u64, enter: bool) {
        if let Some(slot) = self.slots.get_mut(&pos) {
            slot.enter = enter;
            if enter {
                self.entries.insert(pos);
            } else {
                self.entries.remove(&pos);
            }
        }
    }

    /// Items whose deadline is at or before `now`, in position order:
    /// O(k log n) for k due items.
    pub fn due(&self, now: f64) -> Vec<&T> {
        let Some(limit) = key(now) else {
            return Vec::new();
        };
        let mut due: Vec<u64> = Vec::new();
        self.by_deadline
            .each_up_to((limit, u64::MAX), |(_, pos)| due.push(pos));
        due.sort_unstable();
        due.iter().filter_map(|pos| self.get(*pos)).collect()
    }

    /// Remove every item matching `pred`; returns them with their positions.
    pub fn remove_where(&mut self, pred: impl Fn(&T) -> bool) -> Vec<(u64, T)> {
        let doomed: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, s)| pred(&s.item))
            .map(|(p, _)| *p)
            .collect();
        doomed
            .into_iter()
            .filter_map(|p| self.remove(p).map(|t| (p, t)))
            .collect()
    }

    pub fn get(&self, pos: u64) -> Option<&T> {
        self.slots.get(&pos).map(|s| &s.item)
    }

    /// The first-registered working entry.
    pub fn first_entry(&self) -> Option<&T> {
        self.entries.first().and_then(|pos| self.get(*pos))
    }

    pub fn has_entry(&self) -> bool {
        !self.entries.is_empty()
    }

    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.slots.values().map(|s| &s.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(deadlines: &[f64]) -> Index<usize> {
        let mut ix = Index::default();
        for (i, d) in deadlines.iter().enumerate() {
            let pos = ix.new_pos();
            ix.insert(pos, i, *d, i % 2 == 0);
        }
        ix
    }

    #[test]
    fn due_lists_in_position_order_not_deadline_order() {
        let ix = index(&[5.0, 1.0, 3.0, 9.0]);
        assert_eq!(ix.due(5.0), vec![&0, &1, &2]);
        assert_eq!(ix.due(0.5), Vec::<&usize>::new());
        assert_eq!(ix.due(f64::INFINITY).len(), 4);
    }

    #[test]
    fn due_is_inclusive_and_nan_is_never_due() {
        let ix = index(&[1.0, f64::NAN]);
        assert_eq!(ix.due(1.0), vec![&0]);
        assert_eq!(ix.due(f64::NAN), Vec::<&usize>::new());
        assert_eq!(ix.due(f64::INFINITY), vec![&0]);
    }

    #[test]
    fn signed_zeros_compare_equal() {
        let ix = index(&[0.0, -0.0]);
        assert_eq!(ix.due(-0.0), vec![&0, &1]);
        let neg = index(&[-1.0, -2.0]);
        assert_eq!(neg.due(-1.5), vec![&1]);
    }

    #[test]
    fn moving_a_deadline_reindexes() {
        let mut ix = index(&[10.0, 20.0]);
        ix.set_deadline(1, 1.0);
        assert_eq!(ix.due(5.0), vec![&1]);
        ix.set_deadline(1, f64::NAN);
        assert!(ix.due(100.0).iter().all(|i| **i != 1));
    }

    #[test]
    fn entries_follow_registration_and_action_changes() {
        let mut ix = index(&[1.0, 1.0, 1.0]); // 0 and 2 are entries
        assert_eq!(ix.first_entry(), Some(&0));
        ix.set_enter(0, false);
        assert_eq!(ix.first_entry(), Some(&2));
        ix.remove(2);
        assert!(!ix.has_entry());
        ix.set_enter(1, true);
        assert_eq!(ix.first_entry(), Some(&1));
    }

    #[test]
    fn keys_spill_to_a_tree_and_come_back() {
        let mut keys = Keys::default();
        let order = |keys: &Keys<u64>| {
            let mut seen = Vec::new();
            keys.each_up_to(u64::MAX, |k| seen.push(k));
            seen
        };
        for k in (0..40).rev().chain(0..40) {
            keys.insert(k * 3 % 41);
        }
        assert!(matches!(keys, Keys::Large(_)));
        let mut expected: Vec<u64> = (0..40).map(|k| k * 3 % 41).collect();
        expected.sort_unstable();
        assert_eq!(order(&keys), expected);
        assert_eq!(keys.first(), expected.first());
        for k in 0..41 {
            keys.remove(&k);
        }
        assert!(keys.is_empty() && matches!(keys, Keys::Small(_)));
        for k in [5, 1, 3, 3] {
            keys.insert(k);
        }
        keys.remove(&9);
        assert_eq!(order(&keys), vec![1, 3, 5]);
    }

    #[test]
    fn due_and_entries_past_the_small_size() {
        let deadlines: Vec<f64> = (0..50).map(|i| f64::from((i * 7) % 50)).collect();
        let mut ix = index(&deadlines);
        let due: Vec<usize> = ix.due(9.0).into_iter().copied().collect();
        let expected: Vec<usize> = (0..50).filter(|i| (i * 7) % 50 <= 9).collect();
        assert_eq!(due, expected);
        for pos in 0..49 {
            ix.remove(pos);
        }
        assert!(!ix.has_entry());
        assert_eq!(ix.due(100.0), vec![&49]);
    }

    #[test]
    fn extend_matches_inserting_one_by_one() {
        for n in [0_usize, 3, SMALL, SMALL + 1, 100] {
            let items: Vec<(usize, f64, bool)> = (0..n)
                .map(|i| (i, f64::from(((i * 37) % 11) as u32) - 3.0, i % 3 == 0))
                .collect();
            for start in [0_usize, 2, 40] {
                let mut one = index(&vec![7.0; start]);
                let mut bulk = index(&vec![7.0; start]);
                for (i, d, e) in &items {
                    let pos = one.new_pos();
                    one.insert(pos, *i + 1000, *d, *e);
                }
                let (positions, displaced) =
                    bulk.extend(items.iter().map(|(i, d, e)| (*i + 1000, *d, *e)));
                assert!(displaced.is_empty());
                assert_eq!(
                    positions,
                    (start as u64..(start + n) as u64).collect::<Vec<_>>()
                );
                for now in [-10.0, -1.0, 0.0, 2.5, 7.0, 100.0] {
                    assert_eq!(one.due(now), bulk.due(now));
                }
                assert_eq!(one.first_entry(), bulk.first_entry());
                assert_eq!(one.has_entry(), bulk.has_entry());
                let p = bulk.new_pos();
                assert_eq!(p, one.new_pos());
            }
        }
    }

    #[test]
    fn replacing_keeps_the_position() {
        let mut ix = index(&[1.0, 2.0]);
        let old = ix.insert(0, 7, 3.0, false);
        assert_eq!(old, Some(0));
        assert_eq!(ix.due(3.0), vec![&7, &1]);
        assert_eq!(ix.items().count(), 2);
        assert!(ix.remove(9).is_none());
    }
}
