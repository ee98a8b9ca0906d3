//! Many keys under one limit, in memory: the memory driver's store and the local
//! fallback. Not synchronised itself; the glue wraps it in a mutex.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{check_now, Decision, Grant, KeyState, RateConfig};
use crate::error::CoreError;
use crate::names::validate_name;

/// FxHash (rustc's hasher): keys are short names, hashed on every decision, and
/// SipHash's flooding resistance buys nothing for keys the caller chose itself.
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

#[derive(Debug)]
pub struct RateTable {
    cfg: RateConfig,
    states: FxMap<KeyState>,
    /// writes since idle keys were last dropped; a sweep runs when this passes the size
    writes: usize,
}

impl RateTable {
    pub fn new(cfg: RateConfig) -> Self {
        RateTable { cfg, states: FxMap::default(), writes: 0 }
    }

    pub fn config(&self) -> &RateConfig {
        &self.cfg
    }

    /// The key's state, created (after checking the key is a valid name) when new.
    fn state(&mut self, key: &str, now: i64) -> Result<&mut KeyState, CoreError> {
        self.writes += 1;
        if self.writes > 1024 && self.writes > 2 * self.states.len() {
            self.states.retain(|_, s| s.ttl_us(now) > 0);
            self.writes = 0;
        }
        if !self.states.contains_key(key) {
            validate_name(key, "rate-limit key")?;
        }
        let cfg = self.cfg;
        Ok(self.states.entry(key.to_owned()).or_insert_with(|| KeyState::new(&cfg)))
    }

    /// Once `cost` and `now` are checked, `step` on the key's state (created when new).
    #[inline]
    fn spend<T>(
        &mut self,
        key: &str,
        cost: u64,
        now: i64,
        step: impl FnOnce(&mut KeyState, &RateConfig) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let cfg = self.cfg;
        cfg.check_cost(cost)?;
        check_now(now)?;
        if let Some(state) = self.states.get_mut(key) {
            return step(state, &cfg);
        }
        step(self.state(key, now)?, &cfg)
    }

    #[inline]
    pub fn acquire(&mut self, key: &str, cost: u64, now: i64) -> Result<Decision, CoreError> {
        self.spend(key, cost, now, |state, cfg| state.acquire(cfg, cost, now))
    }

    /// `acquire(key, cost, now)?.allowed`, the same change of state, no `Decision` built.
    #[inline]
    pub fn admit(&mut self, key: &str, cost: u64, now: i64) -> Result<bool, CoreError> {
        self.spend(key, cost, now, |state, cfg| state.admit(cfg, cost, now))
    }

    pub fn peek(&self, key: &str, now: i64) -> Result<Decision, CoreError> {
        match self.states.get(key) {
            Some(state) => state.peek(&self.cfg, now),
            None => {
                validate_name(key, "rate-limit key")?;
                KeyState::new(&self.cfg).peek(&self.cfg, now)
            }
        }
    }

    /// Forget the key; returns whether it held live state.
    pub fn reset(&mut self, key: &str, now: i64) -> Result<bool, CoreError> {
        check_now(now)?;
        validate_name(key, "rate-limit key")?;
        Ok(self.states.remove(key).is_some_and(|s| s.ttl_us(now) > 0))
    }

    pub fn lease(
        &mut self,
        key: &str,
        min_units: u64,
        max_units: u64,
        lease_us: u64,
        now: i64,
    ) -> Result<Grant, CoreError> {
        let cfg = self.cfg;
        check_now(now)?;
        self.state(key, now)?.lease(&cfg, min_units, max_units, lease_us, now)
    }

    pub fn refund(&mut self, key: &str, token: i64, units: u64, now: i64) -> Result<u64, CoreError> {
        let cfg = self.cfg;
        check_now(now)?;
        match self.states.get_mut(key) {
            Some(state) => state.refund(&cfg, token, units, now),
            None => validate_name(key, "rate-limit key").map(|()| 0),
        }
    }

    /// Keys with live state at `now`.
    pub fn live_keys(&self, now: i64) -> usize {
        self.states.values().filter(|s| s.ttl_us(now) > 0).count()
    }
}
