//! The live state's "now": the wall clock in `serve`, a clock a test or benchmark moves.

use netwait_aggregator::domain::time::Millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the live state reads the time (the domain itself takes `now` as a parameter).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> Millis {
        crate::state::wall_ms()
    }
}

/// A clock that moves only when told (tests, benchmarks).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now: Millis) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    pub fn set(&self, now: Millis) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Millis) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}
