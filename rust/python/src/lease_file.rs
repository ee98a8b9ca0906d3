//! `LeaseRecordFile`: the file driver's hot path, one lease operation in one call.
//!
//! The file driver keeps each resource's lease state in a record file changed under
//! `flock` (see `python/lockstep/drivers/sqlite_lease_records.py`). Its Python code does
//! every operation; this does the three that make up an uncontended acquire and release
//! (and renewals) without leaving Rust: try the lock (`LOCK_EX | LOCK_NB`), check the file
//! is still linked, read the record, apply the `LeaseTable` rules, write the record back if
//! it changed, unlock. `None` means "not done here": another process is inside the critical
//! section, the file was unlinked, or (for a grant) the resource is busy; the caller then
//! takes its general path, which waits, queues and frees what dead processes hold.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::time::{SystemTime, UNIX_EPOCH};

use lockstep_core::error::CoreError;
use lockstep_core::leases::{self, Acquire, AcquireRequest, Resource};
use pyo3::prelude::*;

use crate::errors;

const READ_SIZE: usize = 4096;

/// One resource's record file, opened once and kept by a lease store.
#[pyclass(module = "lockstep._core", name = "LeaseRecordFile")]
pub struct LeaseRecordFile {
    file: File,
    resource: String,
    boot: String,
    base_fence: u64,
}

/// Unlocks the file when dropped, whatever happened in between.
struct Locked<'a>(&'a File);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl LeaseRecordFile {
    fn read(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; READ_SIZE];
        let n = self.file.read_at(&mut buf, 0)?;
        buf.truncate(n);
        if let Some(size) = leases::record_size(&buf).filter(|&size| size > n) {
            buf.resize(size, 0);
            let n = self.file.read_at(&mut buf, 0)?;
            buf.truncate(n);
        }
        Ok(buf)
    }

    /// Run `op` on the record inside the critical section; None if it is busy or the
    /// file was unlinked. `op` says whether to write the record back.
    fn with_record<R>(
        &self,
        op: impl FnOnce(&mut leases::LeaseTable, f64) -> Result<(R, bool), CoreError>,
    ) -> PyResult<Option<R>> {
        match self.file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(err)) => return Err(err.into()),
        }
        let _locked = Locked(&self.file);
        if self.file.metadata()?.nlink() == 0 {
            return Ok(None); // unlinked under us: the caller opens what the name is now
        }
        let raw = self.read()?;
        let state = leases::decode_record(&raw, &self.boot, &self.resource).unwrap_or_else(|| Resource {
            slots: 1,
            fence: self.base_fence,
            holders: Vec::new(),
            queue: Vec::new(),
        });
        let mut table = leases::LeaseTable::new();
        table.load(&self.resource, state).map_err(errors::to_py)?;
        let (out, write) = op(&mut table, wall_clock()).map_err(errors::to_py)?;
        if write {
            if let Some(state) = table.dump(&self.resource) {
                let bytes = leases::encode_record(state, &self.boot, &self.resource).map_err(errors::to_py)?;
                if !raw.starts_with(&bytes) {
                    self.file.write_at(&bytes, 0)?;
                }
            }
        }
        Ok(Some(out))
    }
}

#[pymethods]
impl LeaseRecordFile {
    /// Open (creating it 0600) the record file at `path` for `resource`; a record of
    /// another boot, or none, starts at `base_fence`.
    #[new]
    fn new(path: &str, resource: String, boot: String, base_fence: u64) -> PyResult<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        Ok(LeaseRecordFile { file, resource, boot, base_fence })
    }

    /// Grant the resource to `token` if it may take a slot now: `(fence, raised)`
    /// (`raised`: the counter was below `floor`). None: busy, nothing written.
    #[allow(clippy::too_many_arguments)]
    fn try_grant(
        &self,
        token: String,
        owner: String,
        session: String,
        slots: u32,
        ttl: f64,
        floor: u64,
    ) -> PyResult<Option<(u64, bool)>> {
        let req = AcquireRequest {
            token,
            owner,
            session,
            resources: vec![self.resource.clone()],
            slots,
            ttl,
            queue_ttl: None,
            floors: vec![floor],
        };
        let granted = self.with_record(|table, now| {
            Ok(match table.acquire(&req, now)? {
                Acquire::Granted { fences, raised } => (fences.first().map(|&f| (f, !raised.is_empty())), true),
                Acquire::Busy { .. } => (None, false),
            })
        })?;
        Ok(granted.flatten())
    }

    /// Release `token`: `(it held the resource unexpired, tickets to wake)`; None: not done.
    fn release(&self, token: &str) -> PyResult<Option<(bool, Vec<String>)>> {
        let resources = [self.resource.clone()];
        self.with_record(|table, now| {
            let out = table.release(token, &resources, now)?;
            Ok(((out.held, out.wake), true))
        })
    }

    /// Extend `token`'s hold to `ttl` from now: whether it still held it; None: not done.
    fn renew(&self, token: &str, ttl: f64) -> PyResult<Option<bool>> {
        let resources = [self.resource.clone()];
        self.with_record(|table, now| {
            let held = table.renew(token, &resources, ttl, now)?;
            Ok((held, held))
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LeaseRecordFile>()
}
