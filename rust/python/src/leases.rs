//! `HeldLeases` (a client's held leases, for the renewer) and `LeaseTable` (the lease
//! state of the local drivers), over `lockstep_core::leases`. Results are plain tuples;
//! their shapes are documented in `_core.pyi`.

use lockstep_core::leases::{self, Acquire, AcquireRequest, Holder, Resource, Waiter};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

use crate::errors;

type HolderRow = (String, String, String, u64, f64);
type WaiterRow = (String, String, String, f64);

fn holder_row(h: &Holder) -> HolderRow {
    (h.token.clone(), h.owner.clone(), h.session.clone(), h.fence, h.expires_at)
}

fn waiter_row(w: &Waiter) -> WaiterRow {
    (w.ticket.clone(), w.owner.clone(), w.session.clone(), w.expires_at)
}

/// The leases one client holds: deadlines, renewal schedule, highest fence per resource.
#[pyclass(module = "lockstep._core", name = "HeldLeases")]
pub struct HeldLeases {
    inner: leases::HeldLeases,
}

#[pymethods]
impl HeldLeases {
    #[new]
    #[pyo3(signature = (seed = 0))]
    fn new(seed: u64) -> Self {
        HeldLeases { inner: leases::HeldLeases::new(seed) }
    }

    fn insert(
        &mut self,
        token: &str,
        resources: Vec<String>,
        fences: Vec<u64>,
        ttl: f64,
        sent_at: f64,
    ) -> PyResult<f64> {
        self.inner.insert(token, resources, fences, ttl, sent_at).map_err(errors::to_py)
    }

    #[pyo3(signature = (token, sent_at, ttl = None))]
    fn renewed(&mut self, token: &str, sent_at: f64, ttl: Option<f64>) -> PyResult<Option<f64>> {
        self.inner.renewed(token, sent_at, ttl).map_err(errors::to_py)
    }

    fn renewal_failed(&mut self, token: &str, now: f64) -> PyResult<Option<f64>> {
        self.inner.renewal_failed(token, now).map_err(errors::to_py)
    }

    fn due(&self, now: f64) -> Vec<String> {
        self.inner.due(now)
    }

    fn expired(&mut self, now: f64) -> Vec<String> {
        self.inner.expired(now)
    }

    fn remove(&mut self, token: &str) -> bool {
        self.inner.remove(token)
    }

    fn next_wakeup(&self) -> Option<f64> {
        self.inner.next_wakeup()
    }

    #[pyo3(signature = (resource, fence, floor = None))]
    fn observe_fence(&mut self, resource: &str, fence: u64, floor: Option<u64>) -> PyResult<()> {
        self.inner.observe_fence(resource, fence, floor).map_err(errors::to_py)
    }

    fn highest_fence(&self, resource: &str) -> Option<u64> {
        self.inner.highest_fence(resource)
    }

    fn deadline(&self, token: &str) -> Option<f64> {
        self.inner.get(token).map(|l| l.deadline)
    }

    fn tokens(&self) -> Vec<String> {
        self.inner.tokens()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, token: &str) -> bool {
        self.inner.get(token).is_some()
    }
}

/// Authoritative lease state: holders, fence counters and FIFO queues per resource.
#[pyclass(module = "lockstep._core", name = "LeaseTable")]
pub struct LeaseTable {
    inner: leases::LeaseTable,
}

#[pymethods]
impl LeaseTable {
    #[new]
    fn new() -> Self {
        LeaseTable { inner: leases::LeaseTable::new() }
    }

    #[pyo3(signature = (token, owner, session, resources, slots, ttl, now, queue_ttl = None, floors = None))]
    #[allow(clippy::too_many_arguments)]
    fn acquire<'py>(
        &mut self,
        py: Python<'py>,
        token: String,
        owner: String,
        session: String,
        resources: Vec<String>,
        slots: u32,
        ttl: f64,
        now: f64,
        queue_ttl: Option<f64>,
        floors: Option<Vec<u64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let req = AcquireRequest {
            token,
            owner,
            session,
            resources,
            slots,
            ttl,
            queue_ttl,
            floors: floors.unwrap_or_default(),
        };
        match self.inner.acquire(&req, now).map_err(errors::to_py)? {
            Acquire::Granted { fences, raised } => ("granted", fences, raised).into_bound_py_any(py),
            Acquire::Busy { blockers, retry_in, queued } => {
                let rows: Vec<(String, Vec<String>, Vec<String>)> =
                    blockers.into_iter().map(|b| (b.resource, b.holders, b.waiting_ahead)).collect();
                ("busy", rows, retry_in, queued).into_bound_py_any(py)
            }
        }
    }

    fn renew(&mut self, token: &str, resources: Vec<String>, ttl: f64, now: f64) -> PyResult<bool> {
        self.inner.renew(token, &resources, ttl, now).map_err(errors::to_py)
    }

    fn release(&mut self, token: &str, resources: Vec<String>, now: f64) -> PyResult<(bool, Vec<String>)> {
        let out = self.inner.release(token, &resources, now).map_err(errors::to_py)?;
        Ok((out.held, out.wake))
    }

    fn release_session(&mut self, session: &str, now: f64) -> PyResult<(bool, Vec<String>)> {
        let out = self.inner.release_session(session, now).map_err(errors::to_py)?;
        Ok((out.held, out.wake))
    }

    fn expire(&mut self, now: f64) -> PyResult<Vec<String>> {
        self.inner.expire(now).map_err(errors::to_py)
    }

    fn is_held(&self, token: &str, resource: &str, fence: u64, now: f64) -> bool {
        self.inner.is_held(token, resource, fence, now)
    }

    fn holders(&self, resource: &str, now: f64) -> Vec<HolderRow> {
        self.inner.holders(resource, now).iter().map(holder_row).collect()
    }

    fn queue(&self, resource: &str, now: f64) -> Vec<WaiterRow> {
        self.inner.queue(resource, now).iter().map(waiter_row).collect()
    }

    fn fence(&self, resource: &str) -> u64 {
        self.inner.fence(resource)
    }

    fn load(
        &mut self,
        resource: &str,
        slots: u32,
        fence: u64,
        holders: Vec<HolderRow>,
        queue: Vec<WaiterRow>,
    ) -> PyResult<()> {
        let state = Resource {
            slots,
            fence,
            holders: holders
                .into_iter()
                .map(|(token, owner, session, fence, expires_at)| Holder { token, owner, session, fence, expires_at })
                .collect(),
            queue: queue
                .into_iter()
                .map(|(ticket, owner, session, expires_at)| Waiter { ticket, owner, session, expires_at })
                .collect(),
        };
        self.inner.load(resource, state).map_err(errors::to_py)
    }

    fn dump(&self, resource: &str) -> Option<(u32, u64, Vec<HolderRow>, Vec<WaiterRow>)> {
        self.inner.dump(resource).map(|r| {
            (r.slots, r.fence, r.holders.iter().map(holder_row).collect(), r.queue.iter().map(waiter_row).collect())
        })
    }

    fn resource_names(&self) -> Vec<String> {
        self.inner.resource_names()
    }

    /// Load `resource` from the bytes of its record file: True if they hold a record of
    /// this `boot` and resource; otherwise it starts empty (one slot) at `base_fence`.
    fn load_record(&mut self, resource: &str, data: &[u8], boot: &str, base_fence: u64) -> PyResult<bool> {
        let (state, found) = match leases::decode_record(data, boot, resource) {
            Some(state) => (state, true),
            None => (Resource { slots: 1, fence: base_fence, holders: Vec::new(), queue: Vec::new() }, false),
        };
        self.inner.load(resource, state).map_err(errors::to_py)?;
        Ok(found)
    }

    /// The record-file bytes of `resource` for this `boot` (None: not in the table).
    fn dump_record<'py>(&self, py: Python<'py>, resource: &str, boot: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some(state) = self.inner.dump(resource) else { return Ok(None) };
        let bytes = leases::encode_record(state, boot, resource).map_err(errors::to_py)?;
        Ok(Some(PyBytes::new(py, &bytes)))
    }
}

/// The bytes a lease record needs in all, from the first four of its file (None: fewer).
#[pyfunction]
fn lease_record_size(data: &[u8]) -> Option<usize> {
    leases::record_size(data)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HeldLeases>()?;
    m.add_class::<LeaseTable>()?;
    m.add_function(wrap_pyfunction!(lease_record_size, m)?)?;
    Ok(())
}
