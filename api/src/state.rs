//! What the services share: the engine behind a lock, the caller pseudonymizer, and
//! whether the server takes work.

use crate::availability::Availability;
use crate::shutdown::Shutdown;
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::Engine;
use netwait_aggregator::store::{StoreError, StoreErrorKind};
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Code, Status};

#[derive(Clone)]
pub struct AppState {
    engine: Arc<Mutex<Engine>>,
    pub pseudo: Arc<Pseudonymizer>,
    /// The engine's dedupe and call key function: push handlers compute keys while
    /// validating, outside the engine's lock.
    pub hasher: Arc<KeyHasher>,
    pub availability: Availability,
    /// Where a stopping server is (stream handlers end when it closes them).
    pub shutdown: Shutdown,
}

impl AppState {
    pub fn new(engine: Engine, pseudo: Pseudonymizer) -> Self {
        Self {
            hasher: Arc::new(engine.key_hasher()),
            engine: Arc::new(Mutex::new(engine)),
            pseudo: Arc::new(pseudo),
            availability: Availability::default(),
            shutdown: Shutdown::default(),
        }
    }

    pub fn lock(&self) -> Result<MutexGuard<'_, Engine>, Status> {
        self.engine
            .lock()
            .map_err(|_| Status::internal("engine lock poisoned by an earlier panic"))
    }

    /// Runs a query off the async workers; refused while the engine is poisoned (its
    /// book may hold events that were never acknowledged).
    pub async fn query<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, Status> {
        self.blocking(move |e| {
            if e.is_poisoned() {
                Err(store_status(&StoreError::Poisoned))
            } else {
                Ok(work(e))
            }
        })
        .await
    }

    /// Runs engine work that writes to the store off the async workers; a transient
    /// store failure makes the server unavailable until the store recovers.
    pub async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        match self.blocking(move |e| Ok(work(e))).await? {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.kind() == StoreErrorKind::Transient {
                    self.availability.store_failed(&e, self).await;
                }
                Err(store_status(&e))
            }
        }
    }

    /// Runs blocking engine work (fsync, full scans) off the async workers.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || {
            let mut guard = engine
                .lock()
                .map_err(|_| Status::internal("engine lock poisoned by an earlier panic"))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| Status::internal(format!("engine task failed: {e}")))?
    }
}

/// Store errors as gRPC statuses a client can act on: the one table from the kind of
/// a store error to its code.
pub fn store_status(e: &StoreError) -> Status {
    let code = match e.kind() {
        // Retry later: the same request can succeed once the store recovers.
        StoreErrorKind::Transient => Code::Unavailable,
        StoreErrorKind::Conflict => Code::FailedPrecondition,
        StoreErrorKind::Fatal => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Wall clock in epoch milliseconds (the core takes the clock as a parameter).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
