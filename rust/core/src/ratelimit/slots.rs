//! The rate table's hash table, laid out like CPython's dict: a compact index of
//! `(hash tag, entry number)` pairs, open-addressed with linear probing, over a dense
//! array of 128-byte entries (key, inline when short, its hash and its state), in the
//! order the keys came.
//!
//! Why: a table of many keys is mostly out of cache. The index is small (8 bytes a bucket,
//! at most three quarters full: 128 KiB for 10 000 keys) and stays in the CPU's cache where the
//! entries cannot, so a cold lookup misses once, on the key's own entry (two adjacent
//! lines, fetched together); keys asked in the order they came (a sweep over users, say)
//! find their entries in a stream the hardware prefetches. A general-purpose map would
//! keep each key and each log on the heap apart from its entry, one miss each.
//!
//! An entry keeps its number until an entry is removed (the last one moves into the
//! hole) or idle ones are swept; both bump `generation`, so a number handed out with the
//! generation it was read at can be checked before reuse (see `SlotRef`). Growing moves
//! no entry numbers. Each entry keeps its hash, so nothing is hashed again (the hash may
//! be the caller's, see `key.rs`).

use super::key::{KeyText, Probe};
use super::KeyState;

#[derive(Debug)]
#[repr(align(128))]
pub struct Slot {
    pub hash: u64,
    pub key: KeyText,
    pub state: KeyState,
}

/// An index bucket: `entry + 1` (0: empty) and the hash's high half, compared before the
/// entry is read so a collision costs no trip to the entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    entry: u32,
    tag: u32,
}

fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[derive(Debug)]
pub struct Slots {
    /// a power of two long (or empty), at most three quarters full (the tags keep
    /// collisions off the entries, so a fuller index costs little and caches better)
    index: Vec<Bucket>,
    entries: Vec<Slot>,
    /// bumped whenever an entry's number changes or an entry goes
    generation: u64,
}

impl Slots {
    pub fn new() -> Self {
        Slots { index: Vec::new(), entries: Vec::new(), generation: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    /// The bucket where `hash`'s probe run holds `entry`, or ends (an empty bucket).
    #[inline]
    fn bucket_of(&self, hash: u64, mut is_it: impl FnMut(usize) -> bool) -> Option<usize> {
        let mask = self.mask();
        let mut i = (hash as usize) & mask;
        // the index is never full: an empty bucket ends every probe run
        for _ in 0..self.index.len() {
            let b = *self.index.get(i)?;
            if b.entry == 0 || (b.tag == tag(hash) && is_it(b.entry as usize - 1)) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The number of the probed key's entry.
    #[inline]
    pub fn find(&self, probe: &Probe<'_>) -> Option<usize> {
        let entries = &self.entries;
        let matches = |e: usize| entries.get(e).is_some_and(|slot| probe.matches(&slot.key));
        let b = self.bucket_of(probe.hash, matches)?;
        self.index.get(b).and_then(|b| (b.entry as usize).checked_sub(1))
    }

    #[inline]
    pub fn get(&self, entry: usize) -> Option<&Slot> {
        self.entries.get(entry)
    }

    #[inline]
    pub fn get_mut(&mut self, entry: usize) -> Option<&mut Slot> {
        self.entries.get_mut(entry)
    }

    /// The probed key's entry, stored (with the state `make` gives) when absent.
    pub fn find_or_insert<E>(
        &mut self,
        probe: &Probe<'_>,
        make: impl FnOnce() -> Result<KeyState, E>,
    ) -> Result<(usize, &mut Slot), E> {
        if let Some(e) = self.find(probe) {
            return Ok((e, &mut self.entries[e]));
        }
        let state = make()?;
        if (self.entries.len() + 1) * 4 > self.index.len() * 3 {
            self.reindex((self.index.len() * 2).max(16));
        }
        let e = self.entries.len();
        self.entries.push(Slot { hash: probe.hash, key: probe.to_key(), state });
        self.link(e);
        Ok((e, &mut self.entries[e]))
    }

    /// Enter entry `e` in the index (its key is not there yet).
    fn link(&mut self, e: usize) {
        let hash = self.entries[e].hash;
        if let Some(b) = self.bucket_of(hash, |_| false) {
            self.index[b] = Bucket { entry: e as u32 + 1, tag: tag(hash) };
        }
    }

    /// A fresh index of `size` buckets over the entries.
    fn reindex(&mut self, size: usize) {
        self.index.clear();
        self.index.resize(size, Bucket::default());
        for e in 0..self.entries.len() {
            self.link(e);
        }
    }

    /// Remove entry `e`: the last entry takes its number, and the index closes the gap
    /// by shifting later buckets of its probe run back (no tombstones).
    pub fn remove(&mut self, e: usize) -> Option<Slot> {
        let hash = self.entries.get(e)?.hash;
        let b = self.bucket_of(hash, |x| x == e)?;
        self.unlink(b);
        let last = self.entries.len() - 1;
        if e != last {
            let moved_hash = self.entries[last].hash;
            if let Some(mb) = self.bucket_of(moved_hash, |x| x == last) {
                self.index[mb].entry = e as u32 + 1;
            }
        }
        self.generation += 1;
        Some(self.entries.swap_remove(e))
    }

    fn unlink(&mut self, mut hole: usize) {
        let mask = self.mask();
        self.index[hole] = Bucket::default();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let b = self.index[j];
            if b.entry == 0 {
                break;
            }
            let home = (self.entries[b.entry as usize - 1].hash as usize) & mask;
            // the bucket at j may fill the hole when the hole lies on its way from home to j
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.index[hole] = b;
                self.index[j] = Bucket::default();
                hole = j;
            }
        }
    }

    /// Keep only the entries `keep` approves.
    pub fn retain(&mut self, keep: impl FnMut(&Slot) -> bool) {
        self.entries.retain(keep);
        self.generation += 1;
        let size = self.index.len();
        self.reindex(size);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::new_seed;
    use super::super::{Algorithm, RateConfig};
    use super::*;
    use crate::ratelimit::tests::Rng;
    use std::collections::HashMap;

    #[test]
    fn a_slot_is_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Slot>(), 128);
    }

    /// Inserts, removals and sweeps in random order agree with a map; indices hold still
    /// while the generation does.
    #[test]
    fn behaves_as_a_map() {
        let cfg = match RateConfig::new(Algorithm::Gcra, 10, 1_000_000, None) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        let mut rng = Rng(5);
        // a weak hash too: a few values at the table's end, so runs collide and wrap around
        for weak in [false, true] {
            let seed = new_seed();
            fn probe_of(key: &str, seed: u64, weak: bool) -> Probe<'_> {
                let hash = Probe::new(key, seed).hash;
                Probe::hashed(key, if weak { u64::MAX - hash % 3 } else { hash })
            }
            let (mut slots, mut model) = (Slots::new(), HashMap::<String, i64>::new());
            let mut held: Vec<(String, usize, u64)> = vec![];
            for step in 0..20_000 {
                let key = format!(
                    "key-{}{}",
                    rng.below(300),
                    if rng.below(8) == 0 { "-long-enough-for-the-heap" } else { "" }
                );
                let probe = probe_of(&key, seed, weak);
                match rng.below(10) {
                    0..=5 => match slots.find(&probe) {
                        Some(i) => {
                            let tat = match slots.get(i).map(|s| &s.state) {
                                Some(KeyState::Gcra(g)) => g.tat,
                                _ => unreachable!(),
                            };
                            assert_eq!(model.get(&key), Some(&tat), "{key}");
                            held.push((key, i, slots.generation()));
                        }
                        None => {
                            assert!(!model.contains_key(&key), "{key} lost");
                            let mut state = KeyState::new(&cfg);
                            if let KeyState::Gcra(g) = &mut state {
                                g.tat = step;
                            }
                            let Ok((i, _)) = slots.find_or_insert(&probe, || Ok::<_, ()>(state)) else {
                                unreachable!()
                            };
                            model.insert(key.clone(), step);
                            held.push((key, i, slots.generation()));
                        }
                    },
                    6..=8 => {
                        let removed = slots.find(&probe).and_then(|i| slots.remove(i)).map(|s| s.key);
                        assert_eq!(removed.is_some(), model.remove(&key).is_some(), "{key}");
                    }
                    _ => {
                        slots.retain(|s| matches!(&s.state, KeyState::Gcra(g) if g.tat % 3 != 0));
                        model.retain(|_, tat| *tat % 3 != 0);
                    }
                }
                assert_eq!(slots.len(), model.len());
                held.retain(|(_, _, generation)| *generation == slots.generation());
                for (key, i, _) in &held {
                    assert!(slots.get(*i).is_some_and(|s| probe_of(key, seed, weak).matches(&s.key)), "{key} moved");
                }
            }
            assert_eq!(slots.iter().count(), model.len());
        }
    }
}
