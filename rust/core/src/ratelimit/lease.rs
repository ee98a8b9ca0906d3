//! The local side of leases: blocks of units a process holds, spent without a round trip.
//!
//! Times here are the process's own clock (monotonic microseconds). A grant carries
//! offsets from the store's `now`; the store decided at some instant between sending
//! the request (`sent_at`) and receiving the reply (`received_at`), so each offset is
//! mapped the safe way: a start (GCRA's first slot) from `received_at`, the latest, and
//! an end (the lease's lifetime, the GCRA block's end) from `sent_at`, the earliest.
//!
//! * Sliding window: a block is `units` spendable until its deadline. Left-over units
//!   of a block past its deadline (or of every block, on `drain`) are queued as refunds.
//! * GCRA (burst 1): a block is a run of slots; a spend at `now` needs `now >= next`
//!   and `max(next, now) + T <= end`, then `next = max(next, now) + T`. Unspent whole
//!   slots at the end of the block are refundable on `drain`.

use super::table::FxMap;
use super::{check_now, non_negative, to_i64, Algorithm, Decision, RateConfig};
use crate::error::CoreError;
use crate::names::validate_name;

/// What the pool answers for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// Decided locally: admitted, or (GCRA) refused until the next slot of the block.
    Decided(Decision),
    /// The pool cannot decide: lease at least `min_units` more from the store.
    NeedBlock { min_units: u64 },
}

/// Units to hand back to the store: `units` of the block named `token` under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub key: String,
    pub token: i64,
    pub units: u64,
}

#[derive(Clone, Copy, Debug)]
struct WindowBlock {
    units: u64,
    deadline: i64,
    token: i64,
}

#[derive(Clone, Copy, Debug)]
struct GcraBlock {
    next: i64,
    end: i64,
    token: i64,
}

#[derive(Debug)]
enum KeyPool {
    Window(Vec<WindowBlock>),
    Gcra(GcraBlock),
}

#[derive(Debug)]
pub struct LeasePool {
    cfg: RateConfig,
    keys: FxMap<KeyPool>,
    refunds: Vec<Refund>,
}

impl GcraBlock {
    /// Whole slots left that could still be spent (and so may be handed back).
    fn slots_left(&self, t: i64, now: i64) -> u64 {
        non_negative((self.end - self.next.max(now)) / t)
    }
}

impl LeasePool {
    pub fn new(cfg: RateConfig) -> Self {
        LeasePool { cfg, keys: FxMap::default(), refunds: Vec::new() }
    }

    fn interval(&self) -> i64 {
        to_i64(self.cfg.emission_us())
    }

    /// Spend `cost` units of `key` at `now`, if the pool can decide alone.
    pub fn spend(&mut self, key: &str, cost: u64, now: i64) -> Result<Spend, CoreError> {
        self.cfg.check_cost(cost)?;
        check_now(now)?;
        let t = self.interval();
        let Some(pool) = self.keys.get_mut(key) else { return Ok(Spend::NeedBlock { min_units: cost }) };
        match pool {
            KeyPool::Window(blocks) => {
                let refunds = &mut self.refunds;
                blocks.retain(|b| {
                    if b.deadline > now {
                        return true;
                    }
                    if b.units > 0 {
                        refunds.push(Refund { key: key.to_owned(), token: b.token, units: b.units });
                    }
                    false
                });
                let total: u64 = blocks.iter().map(|b| b.units).sum();
                if total < cost {
                    return Ok(Spend::NeedBlock { min_units: cost - total });
                }
                let mut owed = cost;
                for block in blocks.iter_mut() {
                    let take = owed.min(block.units);
                    block.units -= take;
                    owed -= take;
                    if owed == 0 {
                        break;
                    }
                }
                blocks.retain(|b| b.units > 0);
                let reset = blocks.iter().map(|b| b.deadline).max().map_or(0, |d| non_negative(d - now));
                Ok(Spend::Decided(Decision {
                    allowed: true,
                    retry_after_us: 0,
                    remaining: total - cost,
                    reset_after_us: reset,
                }))
            }
            KeyPool::Gcra(block) => {
                let start = block.next.max(now);
                if start.saturating_add(t) > block.end {
                    self.keys.remove(key); // spent or aged out: nothing left to hand back
                    return Ok(Spend::NeedBlock { min_units: 1 });
                }
                if now < block.next {
                    return Ok(Spend::Decided(Decision {
                        allowed: false,
                        retry_after_us: non_negative(block.next - now),
                        remaining: block.slots_left(t, now),
                        reset_after_us: non_negative(block.end - now),
                    }));
                }
                block.next = start + t;
                Ok(Spend::Decided(Decision {
                    allowed: true,
                    retry_after_us: 0,
                    remaining: block.slots_left(t, now),
                    reset_after_us: non_negative(block.end - now),
                }))
            }
        }
    }

    /// Take in a block granted by the store (offsets in microseconds from the store's now).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        key: &str,
        granted: u64,
        token: i64,
        start_us: u64,
        end_us: u64,
        sent_at: i64,
        received_at: i64,
    ) -> Result<(), CoreError> {
        validate_name(key, "rate-limit key")?;
        check_now(sent_at)?;
        check_now(received_at)?;
        if granted == 0 {
            return Ok(());
        }
        let t = self.interval();
        let (start, end) = (received_at.saturating_add(to_i64(start_us)), sent_at.saturating_add(to_i64(end_us)));
        match self.cfg.algorithm {
            Algorithm::SlidingWindow => {
                let block = WindowBlock { units: granted, deadline: end, token };
                match self.keys.entry(key.to_owned()).or_insert_with(|| KeyPool::Window(Vec::new())) {
                    KeyPool::Window(blocks) => {
                        blocks.push(block);
                        blocks.sort_by_key(|b| b.deadline);
                    }
                    other => *other = KeyPool::Window(vec![block]),
                }
            }
            Algorithm::Gcra => {
                let block = GcraBlock { next: start, end, token };
                if let Some(KeyPool::Gcra(old)) = self.keys.insert(key.to_owned(), KeyPool::Gcra(block)) {
                    let units = old.slots_left(t, received_at);
                    if units > 0 {
                        self.refunds.push(Refund { key: key.to_owned(), token: old.token, units });
                    }
                }
            }
        }
        Ok(())
    }

    /// Units of `key` the pool could still spend at `now`.
    pub fn available(&self, key: &str, now: i64) -> u64 {
        let t = self.interval();
        match self.keys.get(key) {
            None => 0,
            Some(KeyPool::Window(blocks)) => blocks.iter().filter(|b| b.deadline > now).map(|b| b.units).sum(),
            Some(KeyPool::Gcra(block)) => block.slots_left(t, now),
        }
    }

    /// Age out blocks past their deadline; returns every refund queued so far.
    pub fn take_refunds(&mut self, now: i64) -> Vec<Refund> {
        let t = self.interval();
        let refunds = &mut self.refunds;
        self.keys.retain(|key, pool| match pool {
            KeyPool::Window(blocks) => {
                blocks.retain(|b| {
                    if b.deadline > now {
                        return true;
                    }
                    if b.units > 0 {
                        refunds.push(Refund { key: key.clone(), token: b.token, units: b.units });
                    }
                    false
                });
                !blocks.is_empty()
            }
            KeyPool::Gcra(block) => block.slots_left(t, now) > 0,
        });
        std::mem::take(&mut self.refunds)
    }

    /// Stop spending: every unit still held becomes a refund (on close).
    pub fn drain(&mut self, now: i64) -> Vec<Refund> {
        let t = self.interval();
        let mut out = std::mem::take(&mut self.refunds);
        for (key, pool) in self.keys.drain() {
            match pool {
                KeyPool::Window(blocks) => out.extend(blocks.into_iter().filter(|b| b.units > 0).map(|b| Refund {
                    key: key.clone(),
                    token: b.token,
                    units: b.units,
                })),
                KeyPool::Gcra(block) => {
                    let units = block.slots_left(t, now);
                    if units > 0 {
                        out.push(Refund { key, token: block.token, units });
                    }
                }
            }
        }
        out
    }
}
