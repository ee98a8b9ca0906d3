//! A sliding window's log: `(expiry, units)` entries, in expiry order, one per expiry.
//!
//! Most keys are asked a few times per period, so their log is short: it lives inline,
//! in the key's own slot of the table, and a decision on a key that has gone cold touches
//! no other memory (a map node would be one more cache miss). A longer log moves to a
//! `BTreeMap`, so inserts and removals stay O(log n) in whatever order expiries arrive
//! (leases and callers' own `now` can log out of order); an emptied map moves back inline.
//! Either way the log means the same: the representation is invisible outside this file.

use std::collections::btree_map::{self, BTreeMap};

/// Entries kept inline (what fits in a 128-byte table slot); a seventh moves the log to a
/// map, and so does an entry of more than `u32::MAX` units (none, under any valid limit).
pub const INLINE: usize = 6;

#[derive(Clone, Debug)]
pub enum Log {
    /// `expiry[..len]` increasing, `units[..len]` beside them; the rest is unused.
    Inline {
        len: u8,
        expiry: [i64; INLINE],
        units: [u32; INLINE],
    },
    Tree(BTreeMap<i64, u64>),
}

impl Default for Log {
    fn default() -> Self {
        Log::Inline { len: 0, expiry: [0; INLINE], units: [0; INLINE] }
    }
}

impl PartialEq for Log {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Log {}

/// Entries in expiry order.
pub enum Iter<'a> {
    Inline(std::iter::Zip<std::slice::Iter<'a, i64>, std::slice::Iter<'a, u32>>),
    Tree(btree_map::Range<'a, i64, u64>),
}

impl Iterator for Iter<'_> {
    type Item = (i64, u64);

    #[inline]
    fn next(&mut self) -> Option<(i64, u64)> {
        match self {
            Iter::Inline(it) => it.next().map(|(&e, &u)| (e, u64::from(u))),
            Iter::Tree(it) => it.next().map(|(&e, &u)| (e, u)),
        }
    }
}

impl Log {
    pub fn len(&self) -> usize {
        match self {
            Log::Inline { len, .. } => usize::from(*len),
            Log::Tree(map) => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Iter<'_> {
        self.after(i64::MIN)
    }

    /// Entries expiring strictly after `at`.
    pub fn after(&self, at: i64) -> Iter<'_> {
        match self {
            Log::Inline { len, expiry, units } => {
                let n = usize::from(*len);
                let from = expiry[..n].partition_point(|&e| e <= at);
                Iter::Inline(expiry[from..n].iter().zip(units[from..n].iter()))
            }
            Log::Tree(map) => Iter::Tree(map.range((std::ops::Bound::Excluded(at), std::ops::Bound::Unbounded))),
        }
    }

    /// Units of the entries expiring at or before `at`.
    pub fn units_through(&self, at: i64) -> u64 {
        match self {
            Log::Inline { len, expiry, units } => {
                let n = usize::from(*len);
                let upto = expiry[..n].partition_point(|&e| e <= at);
                units[..upto].iter().map(|&u| u64::from(u)).sum()
            }
            Log::Tree(map) => map.range(..=at).map(|(_, &u)| u).sum(),
        }
    }

    #[inline]
    pub fn first_expiry(&self) -> Option<i64> {
        match self {
            Log::Inline { len, expiry, .. } => (*len > 0).then(|| expiry[0]),
            Log::Tree(map) => map.first_key_value().map(|(&e, _)| e),
        }
    }

    pub fn last_expiry(&self) -> Option<i64> {
        match self {
            Log::Inline { len, expiry, .. } => usize::from(*len).checked_sub(1).map(|i| expiry[i]),
            Log::Tree(map) => map.last_key_value().map(|(&e, _)| e),
        }
    }

    /// Drop the entries expiring at or before `at`; returns their units.
    #[inline]
    pub fn purge_through(&mut self, at: i64) -> u64 {
        match self {
            Log::Inline { len, expiry, units } => {
                let n = usize::from(*len);
                let gone = expiry[..n].partition_point(|&e| e <= at);
                if gone == 0 {
                    return 0;
                }
                let freed = units[..gone].iter().map(|&u| u64::from(u)).sum();
                expiry.copy_within(gone..n, 0);
                units.copy_within(gone..n, 0);
                *len -= gone as u8; // gone <= n <= INLINE
                freed
            }
            Log::Tree(map) => {
                if map.first_key_value().is_none_or(|(&first, _)| first > at) {
                    return 0; // the common case (a busy key, nothing expired): read only
                }
                let mut freed = 0u64;
                while let Some(entry) = map.first_entry() {
                    if *entry.key() > at {
                        break;
                    }
                    freed = freed.saturating_add(entry.remove());
                }
                if map.is_empty() {
                    *self = Log::default();
                }
                freed
            }
        }
    }

    /// Log `more` units expiring at `at` (merged with an entry of the same expiry).
    #[inline]
    pub fn add(&mut self, at: i64, more: u64) {
        match self {
            Log::Inline { len, expiry, units } => {
                let n = usize::from(*len);
                let i = expiry[..n].partition_point(|&e| e < at);
                let merged = if i < n && expiry[i] == at { u64::from(units[i]) + more } else { more };
                match u32::try_from(merged) {
                    Ok(fits) if i < n && expiry[i] == at => units[i] = fits,
                    Ok(fits) if n < INLINE => {
                        if i < n {
                            // out of order (a lease, a caller's own `now`): make room
                            expiry.copy_within(i..n, i + 1);
                            units.copy_within(i..n, i + 1);
                        }
                        (expiry[i], units[i]) = (at, fits);
                        *len += 1;
                    }
                    _ => {
                        let mut map: BTreeMap<i64, u64> = self.iter().collect();
                        *map.entry(at).or_insert(0) += more;
                        *self = Log::Tree(map);
                    }
                }
            }
            Log::Tree(map) => *map.entry(at).or_insert(0) += more,
        }
    }

    /// Take up to `want` units from the entry expiring at `at` (removed when emptied);
    /// returns how many were taken (0: no such entry).
    pub fn take(&mut self, at: i64, want: u64) -> u64 {
        match self {
            Log::Inline { len, expiry, units } => {
                let n = usize::from(*len);
                let i = expiry[..n].partition_point(|&e| e < at);
                if i == n || expiry[i] != at {
                    return 0;
                }
                let back = u32::try_from(want).unwrap_or(u32::MAX).min(units[i]);
                units[i] -= back;
                if units[i] == 0 {
                    expiry.copy_within(i + 1..n, i);
                    units.copy_within(i + 1..n, i);
                    *len -= 1;
                }
                u64::from(back)
            }
            Log::Tree(map) => {
                let Some(cost) = map.get_mut(&at) else { return 0 };
                let back = want.min(*cost);
                *cost -= back;
                if *cost == 0 {
                    map.remove(&at);
                    if map.is_empty() {
                        *self = Log::default();
                    }
                }
                back
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::tests::Rng;

    /// Every operation, in random order and at random expiries, agrees with a plain map.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut rng = Rng(99);
        for round in 0..200 {
            let (mut log, mut map) = (Log::default(), BTreeMap::<i64, u64>::new());
            let spread = [3, 8, 40, 1000][round % 4];
            for _ in 0..300 {
                let at = i64::try_from(rng.below(spread)).unwrap_or(0);
                match rng.below(5) {
                    0 | 1 => {
                        let units = if rng.below(50) == 0 { u64::from(u32::MAX) } else { 1 + rng.below(3) };
                        log.add(at, units);
                        *map.entry(at).or_insert(0) += units;
                    }
                    2 => {
                        let units = 1 + rng.below(4);
                        let want = map.get(&at).map_or(0, |&c| c.min(units));
                        if want > 0 {
                            *map.entry(at).or_insert(0) -= want;
                            map.retain(|_, c| *c > 0);
                        }
                        assert_eq!(log.take(at, units), want);
                    }
                    3 => {
                        let want: u64 = map.range(..=at).map(|(_, &u)| u).sum();
                        map.retain(|&e, _| e > at);
                        assert_eq!(log.purge_through(at), want);
                    }
                    _ => {
                        assert_eq!(log.units_through(at), map.range(..=at).map(|(_, &u)| u).sum::<u64>());
                        assert!(log.after(at).eq(map.range(at + 1..).map(|(&e, &u)| (e, u))));
                        assert_eq!(log.first_expiry(), map.first_key_value().map(|(&e, _)| e));
                    }
                }
                assert!(log.iter().eq(map.iter().map(|(&e, &u)| (e, u))));
                assert_eq!((log.len(), log.last_expiry()), (map.len(), map.last_key_value().map(|(&e, _)| e)));
            }
        }
    }
}
