//! Whether the server takes work, as `grpc.health.v1` reports it (for "" and every
//! service name): not while the store is failing (a full disk, say) nor while shutting
//! down. A store failure is logged once as an ERROR and starts a background recovery
//! that retries with backoff until the store takes writes again.

use crate::live::grpc::LiveService;
use crate::push::IngestService;
use crate::state::AppState;
use crate::stats::StatsService;
use netwait_aggregator::observe;
use netwait_aggregator::store::StoreError;
use netwait_proto::v1::ingest_server::IngestServer;
use netwait_proto::v1::live_server::LiveServer;
use netwait_proto::v1::stats_server::StatsServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// First wait before a recovery attempt, and the longest one (doubling in between).
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// Every name health is asked for: the server as a whole and each service.
const SERVICES: [&str; 4] = [
    "",
    <StatsServer<StatsService> as NamedService>::NAME,
    <IngestServer<IngestService> as NamedService>::NAME,
    <LiveServer<LiveService> as NamedService>::NAME,
];

#[derive(Clone)]
pub struct Availability {
    inner: Arc<Inner>,
}

struct Inner {
    reporter: HealthReporter,
    /// Held while the statuses are published, so that each publication reads the flags
    /// and sets every name in one go (a stale one never overwrites a newer one).
    publishing: tokio::sync::Mutex<()>,
    store_failed: AtomicBool,
    shutting_down: AtomicBool,
}

impl Default for Availability {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                reporter: HealthReporter::new(),
                publishing: tokio::sync::Mutex::new(()),
                store_failed: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }
}

impl Availability {
    /// The reporter the health service answers from.
    pub fn reporter(&self) -> HealthReporter {
        self.inner.reporter.clone()
    }

    /// Publishes the current status under every name.
    pub async fn publish(&self) {
        let _one_at_a_time = self.inner.publishing.lock().await;
        let serving = !self.inner.store_failed.load(Ordering::SeqCst)
            && !self.inner.shutting_down.load(Ordering::SeqCst);
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in SERVICES {
            self.inner.reporter.set_service_status(name, status).await;
        }
    }

    /// The server stops taking work for good.
    pub async fn shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.publish().await;
    }

    /// A store operation failed with `e`: the first failure is logged, health goes
    /// `NOT_SERVING` and a recovery task starts (one at a time).
    pub(crate) async fn store_failed(&self, e: &StoreError, state: &AppState) {
        if self.inner.store_failed.swap(true, Ordering::SeqCst) {
            return; // already failing: its recovery is running
        }
        observe::emit(observe::StoreUnavailable { error: e });
        self.publish().await;
        tokio::spawn(recover(self.clone(), state.clone()));
    }
}

/// Retries the engine's recovery with backoff until it succeeds, then serves again.
async fn recover(availability: Availability, state: AppState) {
    let mut wait = FIRST_RETRY;
    let mut attempts = 0u64;
    loop {
        tokio::time::sleep(wait).await;
        attempts += 1;
        // The flag is cleared under the engine's lock, in the same step as the recovery:
        // a commit failing right after it then finds it clear and starts a new recovery.
        let inner = Arc::clone(&availability.inner);
        let recovered = state.blocking(move |e| {
            let result = e.recover();
            if result.is_ok() {
                inner.store_failed.store(false, Ordering::SeqCst);
            }
            Ok(result)
        });
        match recovered.await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => tracing::debug!(error = %e, attempts, "store still failing"),
            Err(status) => tracing::debug!(error = %status, attempts, "recovery task failed"),
        }
        wait = (wait * 2).min(LAST_RETRY);
    }
    observe::emit(observe::StoreRecovered { attempts });
    availability.publish().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::TestServer;
    use netwait_aggregator::store::embedded::EmbeddedStore;
    use netwait_aggregator::store::fault::{DiskSwitch, FullDisk};
    use netwait_proto::v1::ingest_client::IngestClient;
    use netwait_proto::v1::stats_client::StatsClient;
    use netwait_proto::v1::{PushRequest, Table1Request};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    const OFFERED: &str = r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#;
    const ABANDONED: &str =
        r#"{"call_id":"a","type":"abandoned","ts":"2019-03-04T09:01:00+01:00"}"#;

    fn push_of(line: &str) -> PushRequest {
        PushRequest {
            ndjson_lines: vec![line.as_bytes().to_vec()],
            source: "t".into(),
            first_position: 1,
            ..Default::default()
        }
    }

    async fn statuses(health: &mut HealthClient<tonic::transport::Channel>) -> Vec<i32> {
        let mut all = Vec::new();
        for service in SERVICES {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health check");
            all.push(r.into_inner().status);
        }
        all
    }

    #[tokio::test]
    async fn a_full_disk_is_unavailable_and_not_serving_until_it_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let switch = DiskSwitch::default();
        let store = FullDisk {
            inner: EmbeddedStore::open(dir.path()).expect("store"),
            fault: switch.clone(),
        };
        let server = TestServer::start(store).await;
        let mut ingest = IngestClient::new(server.channel.clone());
        let mut stats = StatsClient::new(server.channel.clone());
        let mut health = HealthClient::new(server.channel.clone());
        let serving = vec![ServingStatus::Serving as i32; SERVICES.len()];
        let not_serving = vec![ServingStatus::NotServing as i32; SERVICES.len()];
        assert_eq!(statuses(&mut health).await, serving);
        ingest
            .push(tokio_stream::iter([push_of(OFFERED)]))
            .await
            .expect("push");

        switch.fill();
        let err = ingest
            .push(tokio_stream::iter([push_of(ABANDONED)]))
            .await
            .expect_err("the disk is full");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert_eq!(statuses(&mut health).await, not_serving);
        let table1 = Table1Request {
            from: "2019-03-01".into(),
            to: "2019-04-01".into(),
            line: None,
            threshold_s: None,
        };
        let err = stats
            .get_table1(table1.clone())
            .await
            .expect_err("not serving");
        assert_eq!(err.code(), tonic::Code::Unavailable);
        // Still full after several retries.
        tokio::time::sleep(FIRST_RETRY * 4).await;
        assert_eq!(statuses(&mut health).await, not_serving);

        switch.free();
        let deadline = tokio::time::Instant::now() + LAST_RETRY * 3;
        while statuses(&mut health).await != serving {
            assert!(tokio::time::Instant::now() < deadline, "never recovered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The failed push was not kept: pushed again, it counts once.
        let sum = ingest
            .push(tokio_stream::iter([push_of(ABANDONED), push_of(OFFERED)]))
            .await
            .expect("push after recovery")
            .into_inner();
        assert_eq!((sum.accepted, sum.duplicate), (1, 1));
        let t = stats.get_table1(table1).await.expect("table1").into_inner();
        assert_eq!((t.calls_received, t.abandoned), (1, 1));
        server.stop().await;
    }
}
