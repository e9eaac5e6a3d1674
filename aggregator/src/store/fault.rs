//! Test doubles: any store whose writes fail on demand, as on a full disk, or whose
//! commits wait until let through, as a slow fsync (for tests of the engine and of the
//! server; built with the `test-support` feature).

use super::StoreError;
use super::positions::SourceCheckpoint;
use super::record::Record;
use super::{Batch, Checkpoint, EventStore, LogPosition, PartBytes, PartWriter, RunId};
use crate::domain::derived::Derived;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

/// The switch of a [`FullDisk`]: while set, commits and recovery fail with `ENOSPC`.
#[derive(Clone, Default)]
pub struct DiskSwitch(Arc<AtomicBool>);

impl DiskSwitch {
    pub fn fill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn free(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.0.load(Ordering::SeqCst) {
            Err(StoreError::io(
                std::path::Path::new("events.log"),
                std::io::Error::from_raw_os_error(28), // ENOSPC
            ))
        } else {
            Ok(())
        }
    }
}

/// The gate of a [`HeldCommits`]: while closed, commits wait in it.
#[derive(Clone, Default)]
pub struct CommitGate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Default)]
struct GateState {
    closed: bool,
    waiting: usize,
}

impl CommitGate {
    pub fn close(&self) {
        self.0
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
    }

    pub fn open(&self) {
        self.0
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = false;
        self.0.1.notify_all();
    }

    /// How many commits wait in the gate now.
    pub fn waiting(&self) -> usize {
        self.0
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
    }

    fn pass(&self) {
        let (state, opened) = &*self.0;
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        s.waiting += 1;
        while s.closed {
            s = opened.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.waiting -= 1;
    }
}

/// What a [`Faulty`] store does before it lets a write through.
pub trait Fault: Send {
    /// Before each commit: an error fails it, a wait holds it back.
    fn before_commit(&self) -> Result<(), StoreError>;
    /// Before each recovery.
    fn before_recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `inner`, every call passed through, but its commits (and recoveries) first meet the
/// `fault`.
pub struct Faulty<S, F> {
    pub inner: S,
    pub fault: F,
}

/// A store on a disk that fills and frees at the [`DiskSwitch`]'s word.
pub type FullDisk<S> = Faulty<S, DiskSwitch>;

/// A store whose commits wait in a [`CommitGate`] while it is closed (a slow fsync).
pub type HeldCommits<S> = Faulty<S, CommitGate>;

impl Fault for DiskSwitch {
    fn before_commit(&self) -> Result<(), StoreError> {
        self.check()
    }
    fn before_recover(&self) -> Result<(), StoreError> {
        self.check()
    }
}

impl Fault for CommitGate {
    fn before_commit(&self) -> Result<(), StoreError> {
        self.pass();
        Ok(())
    }
}

impl<S: EventStore, F: Fault> EventStore for Faulty<S, F> {
    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError> {
        self.inner.replay(from, visit)
    }

    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
        self.fault.before_commit()?;
        self.inner.commit(batch)
    }

    fn checkpoints(&self) -> bool {
        self.inner.checkpoints()
    }

    fn derives(&self) -> bool {
        self.inner.derives()
    }

    fn commit_derived(
        &mut self,
        batch: &Batch,
        derived: &Derived,
    ) -> Result<LogPosition, StoreError> {
        self.fault.before_commit()?;
        self.inner.commit_derived(batch, derived)
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        self.fault.before_recover()?;
        self.inner.recover()
    }

    fn load_checkpoint(&mut self, with_fold: bool) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.load_checkpoint(with_fold)
    }

    fn save_checkpoint(
        &mut self,
        position: LogPosition,
        query: PartWriter<'_>,
        fold: PartWriter<'_>,
        runs: &[(RunId, PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        self.inner.save_checkpoint(position, query, fold, runs)
    }

    fn load_run(&mut self, id: RunId, verify: bool) -> Result<Option<PartBytes>, StoreError> {
        self.inner.load_run(id, verify)
    }

    fn verify_runs(&mut self, ids: &[RunId]) -> Result<bool, StoreError> {
        self.inner.verify_runs(ids)
    }

    fn save_positions(
        &mut self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        self.inner.save_positions(at, positions)
    }

    fn load_positions(&mut self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        self.inner.load_positions()
    }

    fn retain_runs(&mut self, keep: &[RunId]) -> Result<(), StoreError> {
        self.inner.retain_runs(keep)
    }
}
