//! What the services share: the engine's one writer, the snapshot queries read, the
//! caller pseudonymizer, and whether the server takes work.
//!
//! One thread owns the [`Engine`] and runs every piece of work that changes it (a push's
//! commit, a checkpoint, a recovery), one at a time, in the order sent. After each one it
//! publishes a new [`Snapshot`] when the log grew (everything it holds is durable: a
//! commit that failed publishes nothing), then replies, so that a client whose push was
//! acknowledged reads its own events. Queries take the snapshot current when they start
//! and never wait on the writer, nor on an fsync.

use crate::availability::Availability;
use crate::live::{Clock, LiveFeed, LiveHandle, LiveInput, LiveRules};
use crate::shutdown::Shutdown;
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::{EncodedChunk, Engine, IngestSummary, Spares};
use netwait_aggregator::published::Snapshot;
use netwait_aggregator::store::positions::SourceCheckpoint;
use netwait_aggregator::store::{LogPosition, StoreError, StoreErrorKind};
use netwait_clickhouse::answers::SqlAnswers;
use netwait_ingest::kafka::producer::EventProducer;
use netwait_ingest::pipeline::{Target, each_window};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{oneshot, watch};
use tonic::{Code, Status};

/// Work for the writer: runs on the engine, returns what to do once the result is
/// published (send the reply).
type Job = Box<dyn FnOnce(&mut Engine) -> Box<dyn FnOnce() + Send> + Send>;

#[derive(Clone)]
pub struct AppState {
    writer: std::sync::mpsc::Sender<Job>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Set by the writer while the engine is poisoned (a commit failed and it has not
    /// recovered yet): queries are refused meanwhile, as the store is not serving.
    poisoned: Arc<AtomicBool>,
    pub pseudo: Arc<Pseudonymizer>,
    /// The engine's dedupe and call key function: push handlers compute keys while
    /// validating, off the writer.
    pub hasher: Arc<KeyHasher>,
    pub availability: Availability,
    /// Where a stopping server is (stream handlers end when it closes them).
    pub shutdown: Shutdown,
    /// The ingest role (`serve --kafka`): pushes are published to Kafka instead of
    /// committed here, and answered once the broker has them.
    pub forward: Option<Arc<EventProducer>>,
    /// The live queue and its alerts, when the server keeps them.
    pub live: Option<LiveHandle>,
    /// The figures' reports from a ClickHouse database instead of this engine (`serve
    /// --role all --store clickhouse`: pushes go to Kafka, the aggregator fills the
    /// database, the Stats service reads it).
    pub sql_reports: Option<Arc<std::sync::Mutex<SqlAnswers>>>,
}

fn writer_stopped() -> Status {
    Status::internal("the engine's writer stopped (an earlier panic)")
}

impl AppState {
    /// Publishes the engine's first snapshot and starts its writer thread, which ends
    /// once every clone of the state is dropped.
    pub fn new(engine: Engine, pseudo: Pseudonymizer) -> Self {
        Self::start(engine, pseudo, None)
    }

    /// As [`Self::new`], and keeps the live state (see [`crate::live`]): the writer
    /// drains the engine's transitions after each piece of work for the live thread,
    /// whose "now" is `clock`.
    pub fn with_live(
        engine: Engine,
        pseudo: Pseudonymizer,
        rules: LiveRules,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::start(engine, pseudo, Some((rules, clock)))
    }

    fn start(
        mut engine: Engine,
        pseudo: Pseudonymizer,
        live: Option<(LiveRules, Arc<dyn Clock>)>,
    ) -> Self {
        let live = match live.map(|l| engine.watch_transitions().map(|()| l)) {
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read the log for the live state: no live state");
                None
            }
            live => live.and_then(Result::ok),
        };
        let hasher = Arc::new(engine.key_hasher());
        let poisoned = Arc::new(AtomicBool::new(engine.is_poisoned()));
        let (published, snapshot) = watch::channel(Arc::new(engine.publish()));
        let live = live.and_then(|(rules, clock)| {
            match crate::live::runner::start(rules, clock, snapshot.clone(), None) {
                Ok((feed, handle)) => {
                    feed.send(seed_of(&engine));
                    crate::live::metrics::expose(&handle);
                    Some((feed, handle))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the live thread: no live state");
                    None
                }
            }
        });
        let (feed, live) = live.unzip();
        let (writer, jobs) = std::sync::mpsc::channel::<Job>();
        let flag = Arc::clone(&poisoned);
        let spawned = std::thread::Builder::new()
            .name("netwait-writer".into())
            .spawn(move || write_loop(engine, &jobs, &published, &flag, feed.as_ref()));
        if let Err(e) = spawned {
            // Without a writer every write is refused (the jobs' replies are dropped).
            tracing::error!(error = %e, "cannot start the engine's writer thread");
        }
        Self {
            writer,
            snapshot,
            poisoned,
            pseudo: Arc::new(pseudo),
            hasher,
            availability: Availability::default(),
            shutdown: Shutdown::default(),
            forward: None,
            live,
            sql_reports: None,
        }
    }

    /// Pushes go to Kafka through `producer` (the ingest role).
    pub fn forwarding_to(self, producer: Arc<EventProducer>) -> Self {
        Self {
            forward: Some(producer),
            ..self
        }
    }

    /// The Stats service answers from `answers` (a ClickHouse database) instead of the
    /// engine's snapshot.
    pub fn answering_from(self, answers: SqlAnswers) -> Self {
        Self {
            sql_reports: Some(Arc::new(std::sync::Mutex::new(answers))),
            ..self
        }
    }

    /// For a process that only queries (`stats --data`): the engine is handed over as
    /// its one snapshot (nothing copied), no writer runs, and writes are refused.
    pub fn for_queries(engine: Engine, pseudo: Pseudonymizer) -> Self {
        let hasher = Arc::new(engine.key_hasher());
        let poisoned = Arc::new(AtomicBool::new(engine.is_poisoned()));
        let (_, snapshot) = watch::channel(Arc::new(engine.into_snapshot()));
        // No writer: the receiving end is gone, so every job is refused at once.
        let (writer, _) = std::sync::mpsc::channel::<Job>();
        Self {
            writer,
            snapshot,
            poisoned,
            pseudo: Arc::new(pseudo),
            hasher,
            availability: Availability::default(),
            shutdown: Shutdown::default(),
            forward: None,
            live: None,
            sql_reports: None,
        }
    }

    /// The snapshot queries read now; refused while the engine is poisoned (the store
    /// is failing: the server is not serving).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(store_status(&StoreError::Poisoned));
        }
        Ok(Arc::clone(&self.snapshot.borrow()))
    }

    /// Runs a query on the current snapshot, off the async workers.
    pub async fn query<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Snapshot) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let snapshot = self.snapshot()?;
        tokio::task::spawn_blocking(move || work(&snapshot))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))
    }

    /// Runs engine work that writes to the store on the writer; a transient store
    /// failure makes the server unavailable until the store recovers.
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

    /// Runs work on the engine on its writer (after the work sent before it); the
    /// result comes once what it committed is published.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |engine: &mut Engine| {
            let out = work(engine);
            Box::new(move || {
                let _ = reply.send(out); // the caller may have gone: nothing to tell
            })
        });
        self.writer.send(job).map_err(|_| writer_stopped())?;
        result.await.map_err(|_| writer_stopped())?
    }
}

impl AppState {
    /// Runs engine work on the writer from a thread outside the runtime (a source the
    /// server drives), waiting for its result (published first, as for every job).
    pub fn write_waiting<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move |engine: &mut Engine| {
            let out = work(engine);
            Box::new(move || {
                let _ = reply.send(out);
            })
        });
        let stopped = || StoreError::Io {
            path: "the engine's writer".into(),
            source: std::io::Error::other("stopped (an earlier panic)"),
        };
        self.writer.send(job).map_err(|_| stopped())?;
        result.recv().map_err(|_| stopped())?
    }
}

/// A source driven inside the server (`[[sources]]` of `serve`): its chunks go to the
/// writer a commit window at a time (the chunk asking for a commit ends one), between
/// the pushes' work; each window is published like any push.
impl Target for AppState {
    fn source_checkpoint(&mut self) -> SourceCheckpoint {
        self.write_waiting(|e| Ok(e.source_checkpoint().clone()))
            .unwrap_or_default()
    }

    fn key_hasher(&self) -> KeyHasher {
        (*self.hasher).clone()
    }

    fn stage_stream(
        &mut self,
        chunks: &mut dyn Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        _checkpoint: bool,
        _spares: Option<Spares>,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        // The engine cuts its commits at `commit_bytes` itself: a window is a job.
        each_window(chunks, usize::MAX, &mut |window| {
            let (sum, at) = self.write_waiting(move |e| {
                let sum =
                    e.stage_stream(window.into_iter(), commit_bytes, false, None, &mut |_| {})?;
                Ok((sum, e.source_checkpoint().clone()))
            })?;
            durable(&at);
            Ok(sum)
        })
    }
}

/// The writer: runs each job, publishes what it made durable, then replies.
fn write_loop(
    mut engine: Engine,
    jobs: &std::sync::mpsc::Receiver<Job>,
    published: &watch::Sender<Arc<Snapshot>>,
    poisoned: &AtomicBool,
    live: Option<&LiveFeed>,
) {
    let dead_letters = |engine: &Engine| {
        netwait_aggregator::observe::emit(netwait_aggregator::observe::DeadLetters {
            stored: engine.book().dead_letter_count(),
        });
    };
    dead_letters(&engine);
    for job in jobs {
        let before = engine.position();
        let reply = job(&mut engine);
        let failed = engine.is_poisoned();
        poisoned.store(failed, Ordering::SeqCst);
        // A poisoned book may hold events the log does not: never published. The last
        // snapshot, of what was durable before, stands.
        if !failed && engine.position() != published.borrow().position() {
            published.send_replace(Arc::new(engine.publish()));
            dead_letters(&engine);
        }
        if let Some(feed) = live {
            feed_live(&mut engine, feed, failed, before);
        }
        reply();
    }
}

/// The calls open now, for the live side to start from.
pub(crate) fn seed_of(engine: &Engine) -> LiveInput {
    let lines: Vec<String> = engine.book().line_names().map(str::to_owned).collect();
    let open = lines
        .iter()
        .filter_map(|name| Some((engine.book().line_id(name)?, name)))
        .flat_map(|(id, name)| engine.open_calls(name).map(move |c| (id, c)))
        .collect();
    LiveInput::Seed {
        lines,
        open,
        agents: engine.presence(),
    }
}

/// Hands what the work drained to the live side (a failed commit's transitions never:
/// the recovery's reset starts the live side again from what is durable).
pub(crate) fn feed_live(engine: &mut Engine, feed: &LiveFeed, failed: bool, before: LogPosition) {
    let now = wall_ms();
    if engine.next_timeout().is_some_and(|t| t <= now) {
        engine.handle_timeout(now);
    }
    let Some(batch) = engine.drain_transitions() else {
        return;
    };
    if failed {
        return;
    }
    if batch.reset {
        feed.send(seed_of(engine));
    }
    if !batch.calls.is_empty() || !batch.agents.is_empty() || engine.position() != before {
        let lines = engine.book().line_names().map(str::to_owned).collect();
        feed.send(LiveInput::Batch { lines, batch });
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

#[cfg(test)]
mod tests {
    use crate::test_server::TestServer;
    use netwait_aggregator::store::embedded::EmbeddedStore;
    use netwait_aggregator::store::fault::{CommitGate, HeldCommits};
    use netwait_proto::v1::ingest_client::IngestClient;
    use netwait_proto::v1::stats_client::StatsClient;
    use netwait_proto::v1::{PushRequest, Table1Request};
    use std::time::Duration;
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    const OFFERED: &str = r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#;
    const ABANDONED: &str =
        r#"{"call_id":"a","type":"abandoned","ts":"2019-03-04T09:01:00+01:00"}"#;

    /// The same lines for call `b`.
    fn of_b(line: &str) -> String {
        line.replace(r#""a""#, r#""b""#)
    }

    fn push_of(lines: &[&str]) -> PushRequest {
        PushRequest {
            ndjson_lines: lines.iter().map(|l| l.as_bytes().to_vec()).collect(),
            source: "t".into(),
            first_position: 1,
            ..Default::default()
        }
    }

    /// Far longer than any answer: only a query stuck behind the commit reaches it.
    const STUCK: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn queries_answer_from_the_last_durable_snapshot_while_a_commit_waits_on_its_fsync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = CommitGate::default();
        let store = HeldCommits {
            inner: EmbeddedStore::open(dir.path()).expect("store"),
            fault: gate.clone(),
        };
        let server = TestServer::start(store).await;
        let mut ingest = IngestClient::new(server.channel.clone());
        let mut stats = StatsClient::new(server.channel.clone());
        let mut health = HealthClient::new(server.channel.clone());
        ingest
            .push(tokio_stream::iter([push_of(&[OFFERED, ABANDONED])]))
            .await
            .expect("push");
        let month = Table1Request {
            from: "2019-03-01".into(),
            to: "2019-04-01".into(),
            line: None,
            threshold_s: None,
        };

        gate.close();
        let mut held = ingest.clone();
        let push = tokio::spawn(async move {
            let b = [of_b(OFFERED), of_b(ABANDONED)];
            held.push(tokio_stream::iter([push_of(&[&b[0], &b[1]])]))
                .await
                .map(tonic::Response::into_inner)
        });
        let deadline = tokio::time::Instant::now() + STUCK;
        while gate.waiting() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the push never committed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The commit waits in its fsync: queries and health still answer, from what
        // was durable before it (call b is not acknowledged yet).
        for _ in 0..3 {
            let t = tokio::time::timeout(STUCK, stats.get_table1(month.clone()))
                .await
                .expect("a query waited on the commit")
                .expect("table1")
                .into_inner();
            assert_eq!((t.calls_received, t.abandoned), (1, 1));
        }
        let h = tokio::time::timeout(STUCK, health.check(HealthCheckRequest::default()))
            .await
            .expect("health waited on the commit")
            .expect("health");
        assert_eq!(h.into_inner().status, ServingStatus::Serving as i32);
        assert!(!push.is_finished(), "acknowledged before it was durable");

        gate.open();
        let sum = push.await.expect("push task").expect("push");
        assert_eq!(sum.accepted, 2);
        // Acknowledged: the next query sees it.
        let t = stats.get_table1(month).await.expect("table1").into_inner();
        assert_eq!((t.calls_received, t.abandoned), (2, 2));
        server.stop().await;
    }
}
