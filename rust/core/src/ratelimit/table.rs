//! Many keys under one limit, in memory: the memory driver's store and the local
//! fallback. Not synchronised itself; the glue wraps it in a mutex.
//!
//! Laid out for the cold key: a table of many keys is mostly out of cache, so each slot
//! holds the key (inline when short), its state and a short sliding-window log (see
//! `log.rs`) in one 128-byte block of an open-addressed table (`slots.rs`); a decision on
//! a known key then reads that block and nothing else.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::key::{new_seed, Probe};
use super::slots::Slots;
use super::{check_now, Decision, Grant, KeyState, RateConfig};
use crate::error::CoreError;
use crate::names::validate_name;

/// FxHash (rustc's hasher), for the lease pool's map: keys are short names, hashed on
/// every spend. (`RateTable` hashes with `key.rs`.)
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.hash = (self.hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
        }
        for &b in chunks.remainder() {
            self.hash = (self.hash.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxMap<V> = HashMap<String, V, BuildHasherDefault<FxHasher>>;

/// A key as the table's methods take it: its text, hashed with the table's own seed, or a
/// [`HashedKey`], hashed by the caller. Every key of one table must be hashed one way.
pub trait TableKey<'k>: Copy {
    fn text(self) -> &'k str;
    /// None: hash with the table's seed.
    fn hash(self) -> Option<u64>;
}

impl<'k> TableKey<'k> for &'k str {
    fn text(self) -> &'k str {
        self
    }
    fn hash(self) -> Option<u64> {
        None
    }
}

/// A key with the caller's hash: equal texts must come with equal hashes.
#[derive(Clone, Copy, Debug)]
pub struct HashedKey<'k> {
    pub text: &'k str,
    pub hash: u64,
}

impl<'k> TableKey<'k> for HashedKey<'k> {
    fn text(self) -> &'k str {
        self.text
    }
    fn hash(self) -> Option<u64> {
        Some(self.hash)
    }
}

/// Where a key's state was found: good for [`RateTable::admit_at`] and
/// [`RateTable::acquire_at`] until a key is removed or the table grows (the table's
/// generation changes), which those calls check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    index: usize,
    generation: u64,
}

#[derive(Debug)]
pub struct RateTable {
    cfg: RateConfig,
    /// hashes keys given as plain text (see `key.rs`)
    seed: u64,
    slots: Slots,
    /// writes since idle keys were last dropped; a sweep runs when this passes the size
    writes: usize,
}

impl RateTable {
    pub fn new(cfg: RateConfig) -> Self {
        RateTable { cfg, seed: new_seed(), slots: Slots::new(), writes: 0 }
    }

    pub fn config(&self) -> &RateConfig {
        &self.cfg
    }

    #[inline(always)]
    fn probe<'k>(&self, key: impl TableKey<'k>) -> Probe<'k> {
        match key.hash() {
            Some(hash) => Probe::hashed(key.text(), hash),
            None => Probe::new(key.text(), self.seed),
        }
    }

    /// The key's slot and state, created (after checking the key is a valid name) when new.
    fn locate(&mut self, probe: &Probe<'_>, now: i64) -> Result<(usize, &mut KeyState), CoreError> {
        self.writes += 1;
        if self.writes > 1024 && self.writes > 2 * self.slots.len() {
            self.slots.retain(|s| s.state.ttl_us(now) > 0);
            self.writes = 0;
        }
        let cfg = self.cfg;
        let new_state = || validate_name(probe.text(), "rate-limit key").map(|()| KeyState::new(&cfg));
        self.slots.find_or_insert(probe, new_state).map(|(index, slot)| (index, &mut slot.state))
    }

    /// Once `cost` and `now` are checked, `step` on the key's state (created when new).
    #[inline]
    fn spend<'k, T>(
        &mut self,
        key: impl TableKey<'k>,
        cost: u64,
        now: i64,
        step: impl FnOnce(&mut KeyState, &RateConfig) -> T,
    ) -> Result<(T, SlotRef), CoreError> {
        let cfg = self.cfg;
        cfg.check_cost(cost)?;
        check_now(now)?;
        let probe = self.probe(key);
        let generation = self.slots.generation();
        if let Some(index) = self.slots.find(&probe) {
            if let Some(slot) = self.slots.get_mut(index) {
                return Ok((step(&mut slot.state, &cfg), SlotRef { index, generation }));
            }
        }
        let (index, state) = self.locate(&probe, now)?;
        let decided = step(state, &cfg);
        Ok((decided, SlotRef { index, generation: self.slots.generation() }))
    }

    /// `step` on the state `at` points to, if it still does (else None).
    #[inline]
    fn spend_at<T>(
        &mut self,
        at: SlotRef,
        cost: u64,
        now: i64,
        step: impl FnOnce(&mut KeyState, &RateConfig) -> T,
    ) -> Option<Result<T, CoreError>> {
        if at.generation != self.slots.generation() {
            return None;
        }
        let cfg = self.cfg;
        let slot = self.slots.get_mut(at.index)?;
        if let Err(e) = cfg.check_cost(cost).and_then(|()| check_now(now)) {
            return Some(Err(e));
        }
        Some(Ok(step(&mut slot.state, &cfg)))
    }

    #[inline]
    pub fn acquire<'k>(&mut self, key: impl TableKey<'k>, cost: u64, now: i64) -> Result<Decision, CoreError> {
        self.acquire_keyed(key, cost, now).map(|(d, _)| d)
    }

    /// `acquire`, and where the key's state is, for [`RateTable::acquire_at`].
    #[inline]
    pub fn acquire_keyed<'k>(
        &mut self,
        key: impl TableKey<'k>,
        cost: u64,
        now: i64,
    ) -> Result<(Decision, SlotRef), CoreError> {
        self.spend(key, cost, now, |state, cfg| state.acquire_checked(cfg, cost, now))
    }

    /// `acquire` on the key `at` points to; None when `at` is out of date (look it up again).
    #[inline]
    pub fn acquire_at(&mut self, at: SlotRef, cost: u64, now: i64) -> Option<Result<Decision, CoreError>> {
        self.spend_at(at, cost, now, |state, cfg| state.acquire_checked(cfg, cost, now))
    }

    /// `acquire(key, cost, now)?.allowed`, the same change of state, no `Decision` built.
    #[inline]
    pub fn admit<'k>(&mut self, key: impl TableKey<'k>, cost: u64, now: i64) -> Result<bool, CoreError> {
        self.admit_keyed(key, cost, now).map(|(d, _)| d)
    }

    #[inline]
    pub fn admit_keyed<'k>(
        &mut self,
        key: impl TableKey<'k>,
        cost: u64,
        now: i64,
    ) -> Result<(bool, SlotRef), CoreError> {
        self.spend(key, cost, now, |state, cfg| state.admit_checked(cfg, cost, now))
    }

    #[inline]
    pub fn admit_at(&mut self, at: SlotRef, cost: u64, now: i64) -> Option<Result<bool, CoreError>> {
        self.spend_at(at, cost, now, |state, cfg| state.admit_checked(cfg, cost, now))
    }

    /// A time before which `admit_at(at, cost, now)` refuses whatever `now` is (see
    /// `KeyState::refused_before`); None when `at` is out of date or no such time is known.
    #[inline]
    pub fn refused_before(&self, at: SlotRef, cost: u64) -> Option<i64> {
        if at.generation != self.slots.generation() {
            return None;
        }
        self.slots.get(at.index)?.state.refused_before(&self.cfg, cost)
    }

    pub fn peek<'k>(&self, key: impl TableKey<'k>, now: i64) -> Result<Decision, CoreError> {
        match self.slots.find(&self.probe(key)).and_then(|i| self.slots.get(i)) {
            Some(slot) => slot.state.peek(&self.cfg, now),
            None => {
                validate_name(key.text(), "rate-limit key")?;
                KeyState::new(&self.cfg).peek(&self.cfg, now)
            }
        }
    }

    /// Forget the key; returns whether it held live state.
    pub fn reset<'k>(&mut self, key: impl TableKey<'k>, now: i64) -> Result<bool, CoreError> {
        check_now(now)?;
        validate_name(key.text(), "rate-limit key")?;
        let removed = self.slots.find(&self.probe(key)).and_then(|i| self.slots.remove(i));
        Ok(removed.is_some_and(|s| s.state.ttl_us(now) > 0))
    }

    pub fn lease<'k>(
        &mut self,
        key: impl TableKey<'k>,
        min_units: u64,
        max_units: u64,
        lease_us: u64,
        now: i64,
    ) -> Result<Grant, CoreError> {
        let cfg = self.cfg;
        check_now(now)?;
        self.locate(&self.probe(key), now)?.1.lease(&cfg, min_units, max_units, lease_us, now)
    }

    pub fn refund<'k>(&mut self, key: impl TableKey<'k>, token: i64, units: u64, now: i64) -> Result<u64, CoreError> {
        let cfg = self.cfg;
        check_now(now)?;
        match self.slots.find(&self.probe(key)).and_then(|i| self.slots.get_mut(i)) {
            Some(slot) => slot.state.refund(&cfg, token, units, now),
            None => validate_name(key.text(), "rate-limit key").map(|()| 0),
        }
    }

    /// Keys with live state at `now`.
    pub fn live_keys(&self, now: i64) -> usize {
        self.slots.iter().filter(|s| s.state.ttl_us(now) > 0).count()
    }
}
