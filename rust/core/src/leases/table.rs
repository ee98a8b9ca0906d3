//! The authoritative lease state of the local drivers: holders, fences and FIFO queues.
//!
//! Rules (the Redis Lua scripts follow the same ones):
//! * A resource has `slots` (1 for a lock, n for a semaphore; the latest request's count
//!   is used), live holders, a fence counter that only grows, and a FIFO queue of waiters.
//!   Holders and queue entries carry an expiry; expired ones are pruned whenever the
//!   resource is touched.
//! * With `free = slots - holders`, a request is eligible on a resource when the number of
//!   live waiters ahead of it is below `free`: a waiter at queue position `p` when
//!   `p < free`, a newcomer when `queue.len() < free`. So waiters are served first come,
//!   first served, and a newcomer never jumps the queue.
//! * A request for several resources is granted all or nothing. When it must wait it is
//!   appended to the queue of every one of its resources in one step (and moved to the
//!   tail of all of them if any entry had expired), so any two waiters are in the same
//!   order in every queue they share and no two can block each other for good.
//! * Acquire is idempotent by token: a token that already holds a resource keeps it (its
//!   expiry is refreshed, its fence returned). Release removes the token's holder and
//!   queue entries; it is idempotent too.

use std::collections::HashMap;

/// Seconds after which a request blocked only by waiters ahead of it (a slot is free)
/// should look again: they are taking the slot, and its holder's expiry is then known.
pub const HANDOFF_RECHECK: f64 = 0.05;

use super::{check_resources, check_time, check_token, check_ttl, invalid};
use crate::error::CoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub token: String,
    /// Who holds it, for error messages (the coordinator's member name).
    pub owner: String,
    /// The holder's coordinator instance, to free its leases when it closes or dies.
    pub session: String,
    pub fence: u64,
    pub expires_at: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Waiter {
    pub ticket: String,
    pub owner: String,
    pub session: String,
    pub expires_at: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub slots: u32,
    /// The last fence granted; the next grant gets `fence + 1`.
    pub fence: u64,
    pub holders: Vec<Holder>,
    /// Waiters, first come first.
    pub queue: Vec<Waiter>,
}

impl Resource {
    fn new(slots: u32) -> Self {
        Resource { slots, ..Resource::default() }
    }

    /// Drop expired holders and queue entries; true if any went.
    fn prune(&mut self, now: f64) -> bool {
        let before = self.holders.len() + self.queue.len();
        self.holders.retain(|h| h.expires_at > now);
        self.queue.retain(|w| w.expires_at > now);
        before != self.holders.len() + self.queue.len()
    }

    fn holder(&self, token: &str) -> Option<&Holder> {
        self.holders.iter().find(|h| h.token == token)
    }

    fn position(&self, ticket: &str) -> Option<usize> {
        self.queue.iter().position(|w| w.ticket == ticket)
    }

    fn free(&self) -> usize {
        (self.slots as usize).saturating_sub(self.holders.len())
    }

    /// Waiters ahead of `token`, or None when it may take a slot now (or holds one).
    fn ahead_of(&self, token: &str) -> Option<usize> {
        if self.holder(token).is_some() {
            return None;
        }
        let ahead = self.position(token).unwrap_or(self.queue.len());
        if ahead < self.free() {
            None
        } else {
            Some(ahead)
        }
    }

    /// Tickets of the waiters now able to take a slot (the first `free` of the queue).
    fn wake(&self) -> impl Iterator<Item = &String> {
        self.queue.iter().take(self.free()).map(|w| &w.ticket)
    }
}

/// One acquire (or wait-in-line) request.
#[derive(Debug, Clone, PartialEq)]
pub struct AcquireRequest {
    pub token: String,
    pub owner: String,
    pub session: String,
    pub resources: Vec<String>,
    pub slots: u32,
    pub ttl: f64,
    /// When busy: join (or stay in) the queues with entries living this long; None: try once.
    pub queue_ttl: Option<f64>,
    /// Per resource, a fence the counter is first raised to if below (0: none); empty: none.
    pub floors: Vec<u64>,
}

/// What stands in a request's way on one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    pub resource: String,
    /// Owners of the live holders.
    pub holders: Vec<String>,
    /// Owners of the waiters ahead of the request.
    pub waiting_ahead: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Acquire {
    /// Held: one fence per resource; `raised` names resources whose counter was below
    /// the floor given (the backend went backwards) and was raised to it first.
    Granted { fences: Vec<u64>, raised: Vec<String> },
    /// Not now. `retry_in`: seconds until a holder or a waiter ahead expires (the latest
    /// a waiter should look again without a wake-up); `queued`: whether it is in line.
    Busy { blockers: Vec<Blocker>, retry_in: Option<f64>, queued: bool },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Released {
    /// Whether the token held any of the resources (unexpired).
    pub held: bool,
    /// Tickets of waiters that can now take a slot: wake them.
    pub wake: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    resources: HashMap<String, Resource>,
}

fn push_unique(into: &mut Vec<String>, items: impl Iterator<Item = String>, except: &str) {
    for item in items {
        if item != except && !into.contains(&item) {
            into.push(item);
        }
    }
}

impl LeaseTable {
    pub fn new() -> Self {
        LeaseTable::default()
    }

    fn check_request(req: &AcquireRequest, now: f64) -> Result<(), CoreError> {
        check_token("token", &req.token)?;
        check_resources(&req.resources)?;
        check_ttl("ttl", req.ttl)?;
        check_time("now", now)?;
        if let Some(q) = req.queue_ttl {
            check_ttl("queue_ttl", q)?;
        }
        if req.slots == 0 {
            return Err(invalid("slots must be at least 1".into()));
        }
        if !req.floors.is_empty() && req.floors.len() != req.resources.len() {
            return Err(invalid(format!(
                "{} floors given for {} resources; give one per resource or none",
                req.floors.len(),
                req.resources.len()
            )));
        }
        Ok(())
    }

    /// Take every resource of `req`, or none of them; see the module rules.
    pub fn acquire(&mut self, req: &AcquireRequest, now: f64) -> Result<Acquire, CoreError> {
        Self::check_request(req, now)?;
        for name in &req.resources {
            let res = self.resources.entry(name.clone()).or_insert_with(|| Resource::new(req.slots));
            res.slots = req.slots;
            res.prune(now);
        }
        let (blockers, _) = self.blockers(req, now);
        if blockers.is_empty() {
            return self.grant(req, now);
        }
        let queued = match req.queue_ttl {
            Some(queue_ttl) => {
                self.enqueue(req, now + queue_ttl);
                true
            }
            None => false,
        };
        let (blockers, retry_in) = self.blockers(req, now);
        Ok(Acquire::Busy { blockers, retry_in, queued })
    }

    fn blockers(&self, req: &AcquireRequest, now: f64) -> (Vec<Blocker>, Option<f64>) {
        let mut blockers = Vec::new();
        let mut soonest = f64::INFINITY;
        let mut recheck = false;
        for name in &req.resources {
            let Some(res) = self.resources.get(name) else { continue };
            let Some(ahead) = res.ahead_of(&req.token) else { continue };
            let ahead = ahead.min(res.queue.len());
            let waiting = res.queue.get(..ahead).unwrap_or_default();
            for t in res.holders.iter().map(|h| h.expires_at).chain(waiting.iter().map(|w| w.expires_at)) {
                soonest = soonest.min(t);
            }
            // A slot is free and the waiters ahead are taking it right now: look again
            // soon, to learn the new holder's expiry rather than sleep on a stale one.
            recheck |= res.free() > 0;
            blockers.push(Blocker {
                resource: name.clone(),
                holders: res.holders.iter().map(|h| h.owner.clone()).collect(),
                waiting_ahead: waiting.iter().map(|w| w.owner.clone()).collect(),
            });
        }
        let mut retry_in = soonest.is_finite().then(|| (soonest - now).max(0.0));
        if recheck {
            retry_in = Some(retry_in.map_or(HANDOFF_RECHECK, |r| r.min(HANDOFF_RECHECK)));
        }
        (blockers, retry_in)
    }

    fn grant(&mut self, req: &AcquireRequest, now: f64) -> Result<Acquire, CoreError> {
        // Check every counter first, so an overflow cannot leave a partial grant.
        for (i, name) in req.resources.iter().enumerate() {
            let floor = req.floors.get(i).copied().unwrap_or(0);
            if let Some(res) = self.resources.get(name) {
                if res.holder(&req.token).is_none() && res.fence.max(floor) == u64::MAX {
                    return Err(invalid(format!("the fence counter of {name:?} is exhausted")));
                }
            }
        }
        let mut fences = Vec::with_capacity(req.resources.len());
        let mut raised = Vec::new();
        for (i, name) in req.resources.iter().enumerate() {
            let res = self.resources.entry(name.clone()).or_insert_with(|| Resource::new(req.slots));
            if let Some(held) = res.holders.iter_mut().find(|h| h.token == req.token) {
                held.expires_at = now + req.ttl;
                fences.push(held.fence);
                continue;
            }
            res.queue.retain(|w| w.ticket != req.token);
            let floor = req.floors.get(i).copied().unwrap_or(0);
            if floor > res.fence {
                res.fence = floor;
                raised.push(name.clone());
            }
            res.fence = res.fence.saturating_add(1);
            res.holders.push(Holder {
                token: req.token.clone(),
                owner: req.owner.clone(),
                session: req.session.clone(),
                fence: res.fence,
                expires_at: now + req.ttl,
            });
            fences.push(res.fence);
        }
        Ok(Acquire::Granted { fences, raised })
    }

    fn enqueue(&mut self, req: &AcquireRequest, expires_at: f64) {
        let in_line = |res: &Resource| res.holder(&req.token).is_some() || res.position(&req.token).is_some();
        let complete = req.resources.iter().all(|n| self.resources.get(n).is_some_and(in_line));
        for name in &req.resources {
            let Some(res) = self.resources.get_mut(name) else { continue };
            if complete {
                for w in res.queue.iter_mut().filter(|w| w.ticket == req.token) {
                    w.expires_at = expires_at;
                }
                continue;
            }
            // An entry went missing (expired): rejoin every queue at the tail together.
            res.queue.retain(|w| w.ticket != req.token);
            if res.holder(&req.token).is_none() {
                res.queue.push(Waiter {
                    ticket: req.token.clone(),
                    owner: req.owner.clone(),
                    session: req.session.clone(),
                    expires_at,
                });
            }
        }
    }

    /// Extend the token's hold on every resource to `now + ttl`; false (nothing changed)
    /// unless it holds all of them unexpired.
    pub fn renew(&mut self, token: &str, resources: &[String], ttl: f64, now: f64) -> Result<bool, CoreError> {
        check_token("token", token)?;
        check_resources(resources)?;
        check_ttl("ttl", ttl)?;
        check_time("now", now)?;
        for name in resources {
            let Some(res) = self.resources.get_mut(name) else { return Ok(false) };
            res.prune(now);
            if res.holder(token).is_none() {
                return Ok(false);
            }
        }
        for name in resources {
            if let Some(res) = self.resources.get_mut(name) {
                for h in res.holders.iter_mut().filter(|h| h.token == token) {
                    h.expires_at = now + ttl;
                }
            }
        }
        Ok(true)
    }

    /// Remove the token's holder and queue entries from these resources.
    pub fn release(&mut self, token: &str, resources: &[String], now: f64) -> Result<Released, CoreError> {
        check_token("token", token)?;
        check_resources(resources)?;
        check_time("now", now)?;
        let mut out = Released::default();
        for name in resources {
            let Some(res) = self.resources.get_mut(name) else { continue };
            let mut changed = res.prune(now);
            let before = res.holders.len();
            res.holders.retain(|h| h.token != token);
            out.held |= before != res.holders.len();
            let queued = res.queue.len();
            res.queue.retain(|w| w.ticket != token);
            changed |= before != res.holders.len() || queued != res.queue.len();
            if changed {
                push_unique(&mut out.wake, res.wake().cloned(), token);
            }
        }
        Ok(out)
    }

    /// Remove every holder and waiter of a session (a coordinator that closed or died).
    pub fn release_session(&mut self, session: &str, now: f64) -> Result<Released, CoreError> {
        check_token("session", session)?;
        check_time("now", now)?;
        let mut out = Released::default();
        for res in self.resources.values_mut() {
            let mut changed = res.prune(now);
            let before = res.holders.len();
            res.holders.retain(|h| h.session != session);
            out.held |= before != res.holders.len();
            let queued = res.queue.len();
            res.queue.retain(|w| w.session != session);
            changed |= before != res.holders.len() || queued != res.queue.len();
            if changed {
                push_unique(&mut out.wake, res.wake().cloned(), "");
            }
        }
        Ok(out)
    }

    /// Prune every resource; returns the tickets of waiters that can now take a slot.
    pub fn expire(&mut self, now: f64) -> Result<Vec<String>, CoreError> {
        check_time("now", now)?;
        let mut wake = Vec::new();
        for res in self.resources.values_mut() {
            if res.prune(now) {
                push_unique(&mut wake, res.wake().cloned(), "");
            }
        }
        Ok(wake)
    }

    /// Whether `token` holds `resource` unexpired with this fence (and, for a lock, the
    /// fence is still the resource's latest): the check behind a fenced write.
    pub fn is_held(&self, token: &str, resource: &str, fence: u64, now: f64) -> bool {
        let Some(res) = self.resources.get(resource) else { return false };
        let latest = res.slots != 1 || res.fence == fence;
        latest && res.holder(token).is_some_and(|h| h.fence == fence && h.expires_at > now)
    }

    pub fn holders(&self, resource: &str, now: f64) -> Vec<Holder> {
        self.resources
            .get(resource)
            .map(|r| r.holders.iter().filter(|h| h.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    pub fn queue(&self, resource: &str, now: f64) -> Vec<Waiter> {
        self.resources
            .get(resource)
            .map(|r| r.queue.iter().filter(|w| w.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// The last fence granted for `resource` (0: never granted).
    pub fn fence(&self, resource: &str) -> u64 {
        self.resources.get(resource).map_or(0, |r| r.fence)
    }

    /// Put a resource's stored state in the table (the SQLite driver loads rows this way).
    pub fn load(&mut self, name: &str, resource: Resource) -> Result<(), CoreError> {
        check_token("resource", name)?;
        if resource.slots == 0 {
            return Err(invalid(format!("resource {name:?}: slots must be at least 1")));
        }
        let times = resource.holders.iter().map(|h| h.expires_at).chain(resource.queue.iter().map(|w| w.expires_at));
        for t in times {
            check_time("expires_at", t)?;
        }
        self.resources.insert(name.to_owned(), resource);
        Ok(())
    }

    /// A resource's state, to store it back.
    pub fn dump(&self, name: &str) -> Option<&Resource> {
        self.resources.get(name)
    }

    pub fn resource_names(&self) -> Vec<String> {
        self.resources.keys().cloned().collect()
    }
}
