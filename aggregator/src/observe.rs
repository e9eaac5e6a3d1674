//! What netwait lets its operators observe, one struct per event (the vector model):
//! each event knows its log line and the metrics it moves, and is emitted through
//! [`emit`], the one facade. Counters live in [`METRICS`] (process-wide, lock-free), ready
//! to be exposed (e.g. as Prometheus text by [`Metrics::render`]).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// An observable event.
pub trait Observable {
    /// Writes the event's log line.
    fn log(&self);
    /// Moves the event's metrics.
    fn record(&self, metrics: &Metrics);
}

/// Logs `event` and moves its metrics.
pub fn emit(event: impl Observable) {
    event.log();
    event.record(&METRICS);
}

/// The process's counters (monotonic) and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    pub commits: AtomicU64,
    pub committed_records: AtomicU64,
    pub committed_bytes: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    pub torn_tails_cut: AtomicU64,
    pub pushes_committed: AtomicU64,
    pub pushed_accepted: AtomicU64,
    pub pushed_duplicate: AtomicU64,
    pub pushed_rejected: AtomicU64,
    pub store_failures: AtomicU64,
    pub store_recoveries: AtomicU64,
    /// 1 while the store takes writes, 0 while it is failing.
    pub store_available: AtomicU64,
    /// Store commit (write + fsync) durations.
    pub commit_seconds: Histogram,
    /// Rejected inputs by reason code (few codes: a small map).
    pub rejects: Mutex<BTreeMap<Box<str>, u64>>,
    /// Pushed events accepted, by source kind (`grpc`, `http`, ...).
    pub accepted_by_source: Mutex<BTreeMap<&'static str, u64>>,
    /// Dead letters in the store now (each refused input kept once, for triage).
    pub dead_letters: AtomicU64,
    /// Live alerts raised and cleared, by rule.
    pub alerts_raised: Mutex<BTreeMap<&'static str, u64>>,
    pub alerts_cleared: Mutex<BTreeMap<&'static str, u64>>,
    /// The Kafka consumer's lag by partition (`topic/partition`): messages on the broker
    /// after the group's committed offset, i.e. not yet durable here.
    pub kafka_lag: Mutex<BTreeMap<Box<str>, u64>>,
}

/// Metrics another part of the server keeps (the live queue state's gauges per line,
/// the Kafka consumer's lag): registered once, written at each scrape after the
/// counters, in the Prometheus text format (HELP, TYPE, then samples).
pub trait MetricSource: Send + Sync {
    fn render(&self, out: &mut String);
}

static SOURCES: Mutex<Vec<std::sync::Arc<dyn MetricSource>>> = Mutex::new(Vec::new());

/// Adds `source` to what [`Metrics::render`] writes.
pub fn register(source: std::sync::Arc<dyn MetricSource>) {
    SOURCES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(source);
}

/// Upper bounds of [`Histogram`]'s buckets, seconds.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram over [`COMMIT_BUCKETS`] (lock-free).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; COMMIT_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        // Each bucket counts the observations at or under its bound (cumulative).
        for (b, bound) in self.buckets.iter().zip(COMMIT_BUCKETS) {
            if seconds <= bound {
                add(b, 1);
            }
        }
        add(&self.count, 1);
        add(&self.sum_us, (seconds * 1e6) as u64);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (b, bound) in self.buckets.iter().zip(COMMIT_BUCKETS) {
            let v = b.load(Ordering::Relaxed);
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {v}\n"));
        }
        let count = self.count.load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!("{name}_sum {sum}\n{name}_count {count}\n"));
    }
}

/// Renders one labelled family (`kind`: counter or gauge).
fn render_family<K: AsRef<str>>(
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    values: &Mutex<BTreeMap<K, u64>>,
    out: &mut String,
) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    let values = values.lock().unwrap_or_else(|p| p.into_inner());
    for (k, v) in values.iter() {
        let k = escape_label(k.as_ref());
        out.push_str(&format!("{name}{{{label}=\"{k}\"}} {v}\n"));
    }
}

/// A label value as the Prometheus text format writes it (backslash, double quote and
/// line feed escaped); any text may be one (a line's name, a topic).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Adds `n` to the counter of `key`.
fn bump<K: Ord>(values: &Mutex<BTreeMap<K, u64>>, key: K, n: u64) {
    let mut values = values.lock().unwrap_or_else(|p| p.into_inner());
    *values.entry(key).or_default() += n;
}

pub static METRICS: Metrics = Metrics {
    commits: AtomicU64::new(0),
    committed_records: AtomicU64::new(0),
    committed_bytes: AtomicU64::new(0),
    checkpoint_failures: AtomicU64::new(0),
    torn_tails_cut: AtomicU64::new(0),
    pushes_committed: AtomicU64::new(0),
    pushed_accepted: AtomicU64::new(0),
    pushed_duplicate: AtomicU64::new(0),
    pushed_rejected: AtomicU64::new(0),
    store_failures: AtomicU64::new(0),
    store_recoveries: AtomicU64::new(0),
    store_available: AtomicU64::new(1),
    commit_seconds: Histogram::new(),
    rejects: Mutex::new(BTreeMap::new()),
    accepted_by_source: Mutex::new(BTreeMap::new()),
    dead_letters: AtomicU64::new(0),
    alerts_raised: Mutex::new(BTreeMap::new()),
    alerts_cleared: Mutex::new(BTreeMap::new()),
    kafka_lag: Mutex::new(BTreeMap::new()),
};

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 13] = [
            (
                "netwait_commits_total",
                "counter",
                "durable commits",
                &self.commits,
            ),
            (
                "netwait_committed_records_total",
                "counter",
                "records made durable",
                &self.committed_records,
            ),
            (
                "netwait_committed_bytes_total",
                "counter",
                "bytes made durable",
                &self.committed_bytes,
            ),
            (
                "netwait_checkpoint_failures_total",
                "counter",
                "checkpoints that could not be written (events were durable)",
                &self.checkpoint_failures,
            ),
            (
                "netwait_torn_tails_cut_total",
                "counter",
                "unacknowledged torn commits cut at open",
                &self.torn_tails_cut,
            ),
            (
                "netwait_pushes_committed_total",
                "counter",
                "push streams committed",
                &self.pushes_committed,
            ),
            (
                "netwait_pushed_accepted_total",
                "counter",
                "pushed events accepted",
                &self.pushed_accepted,
            ),
            (
                "netwait_pushed_duplicate_total",
                "counter",
                "pushed events that were duplicates",
                &self.pushed_duplicate,
            ),
            (
                "netwait_pushed_rejected_total",
                "counter",
                "pushed lines or events rejected",
                &self.pushed_rejected,
            ),
            (
                "netwait_store_failures_total",
                "counter",
                "store failures that stopped writes",
                &self.store_failures,
            ),
            (
                "netwait_store_recoveries_total",
                "counter",
                "recoveries from a store failure",
                &self.store_recoveries,
            ),
            (
                "netwait_store_available",
                "gauge",
                "1 while the store takes writes",
                &self.store_available,
            ),
            (
                "netwait_dead_letters",
                "gauge",
                "dead letters in the store (refused inputs, each kept once)",
                &self.dead_letters,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let v = value.load(Ordering::Relaxed);
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        self.commit_seconds.render(
            "netwait_store_commit_seconds",
            "store commits (write and fsync), seconds",
            &mut out,
        );
        render_family(
            "netwait_rejected_total",
            "counter",
            "rejected inputs (dead letters) by reason code",
            "code",
            &self.rejects,
            &mut out,
        );
        render_family(
            "netwait_accepted_events_total",
            "counter",
            "pushed events accepted, by source kind",
            "source",
            &self.accepted_by_source,
            &mut out,
        );
        render_family(
            "netwait_alerts_raised_total",
            "counter",
            "live alerts raised, by rule",
            "rule",
            &self.alerts_raised,
            &mut out,
        );
        render_family(
            "netwait_alerts_cleared_total",
            "counter",
            "live alerts cleared, by rule",
            "rule",
            &self.alerts_cleared,
            &mut out,
        );
        render_family(
            "netwait_kafka_consumer_lag_messages",
            "gauge",
            "Kafka messages after the group's committed offset (not yet durable here), by topic/partition",
            "partition",
            &self.kafka_lag,
            &mut out,
        );
        for source in SOURCES.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            source.render(&mut out);
        }
        out
    }
}

/// Records were made durable in one commit.
pub struct CommitDurable {
    pub records: u64,
    pub bytes: u64,
    /// How long the commit (write and fsync) took.
    pub seconds: f64,
}

impl Observable for CommitDurable {
    fn log(&self) {
        tracing::trace!(records = self.records, bytes = self.bytes, "commit durable");
    }
    fn record(&self, m: &Metrics) {
        add(&m.commits, 1);
        add(&m.committed_records, self.records);
        add(&m.committed_bytes, self.bytes);
        m.commit_seconds.observe(self.seconds);
    }
}

/// Events were durable, but the checkpoint after them could not be written: only the next
/// open replays more of the log. The same warning wherever it happens.
pub struct CheckpointFailed<'a> {
    /// What had committed: `import`, `push`, `shutdown`…
    pub after: &'static str,
    pub error: &'a dyn Display,
}

impl Observable for CheckpointFailed<'_> {
    fn log(&self) {
        tracing::warn!(
            after = self.after,
            error = %self.error,
            "events committed, but the checkpoint could not be written; the next open replays the log"
        );
    }
    fn record(&self, m: &Metrics) {
        add(&m.checkpoint_failures, 1);
    }
}

/// An unacknowledged torn commit was cut off the end of the log at open.
pub struct TornTailCut<'a> {
    pub path: &'a dyn Display,
    pub at: u64,
    pub bytes: u64,
}

impl Observable for TornTailCut<'_> {
    fn log(&self) {
        tracing::warn!(
            path = %self.path,
            at = self.at,
            bytes = self.bytes,
            "cut an unacknowledged torn commit off the end of the log"
        );
    }
    fn record(&self, m: &Metrics) {
        add(&m.torn_tails_cut, 1);
    }
}

/// An input was rejected (it becomes a dead letter).
pub struct Rejected<'a> {
    pub code: &'a str,
}

impl Observable for Rejected<'_> {
    fn log(&self) {
        tracing::trace!(code = self.code, "input rejected");
    }
    fn record(&self, m: &Metrics) {
        bump(&m.rejects, self.code.into(), 1);
    }
}

/// A push stream was committed whole.
pub struct PushCommitted {
    /// The kind of source: `grpc`, `http`.
    pub source: &'static str,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub messages: u64,
}

impl Observable for PushCommitted {
    fn log(&self) {
        tracing::info!(
            accepted = self.accepted,
            duplicate = self.duplicate,
            rejected = self.rejected,
            messages = self.messages,
            "push committed"
        );
    }
    fn record(&self, m: &Metrics) {
        add(&m.pushes_committed, 1);
        add(&m.pushed_accepted, self.accepted);
        bump(&m.accepted_by_source, self.source, self.accepted);
        add(&m.pushed_duplicate, self.duplicate);
        add(&m.pushed_rejected, self.rejected);
    }
}

/// The store holds this many dead letters (after a commit, at open).
pub struct DeadLetters {
    pub stored: u64,
}

impl Observable for DeadLetters {
    fn log(&self) {}
    fn record(&self, m: &Metrics) {
        m.dead_letters.store(self.stored, Ordering::Relaxed);
    }
}

/// A live alert was raised or cleared.
pub struct AlertChanged<'a> {
    pub id: &'a str,
    pub rule: &'static str,
    pub severity: &'static str,
    pub line: Option<&'a str>,
    pub raised: bool,
    pub message: &'a str,
}

impl Observable for AlertChanged<'_> {
    fn log(&self) {
        let (id, rule, severity, line) = (self.id, self.rule, self.severity, self.line);
        if self.raised {
            tracing::warn!(id, rule, severity, line, "alert raised: {}", self.message);
        } else {
            tracing::info!(id, rule, severity, line, "alert cleared: {}", self.message);
        }
    }
    fn record(&self, m: &Metrics) {
        let family = if self.raised {
            &m.alerts_raised
        } else {
            &m.alerts_cleared
        };
        bump(family, self.rule, 1);
    }
}

/// The Kafka consumer's lag of one partition, as its client last reported it.
pub struct KafkaLag<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub messages: u64,
}

impl Observable for KafkaLag<'_> {
    fn log(&self) {
        tracing::trace!(
            topic = self.topic,
            partition = self.partition,
            messages = self.messages,
            "kafka consumer lag"
        );
    }
    fn record(&self, m: &Metrics) {
        let key: Box<str> = format!("{}/{}", self.topic, self.partition).into();
        let mut lag = m.kafka_lag.lock().unwrap_or_else(|p| p.into_inner());
        lag.insert(key, self.messages);
    }
}

/// The store failed to persist a commit: writes stop until it recovers.
pub struct StoreUnavailable<'a> {
    pub error: &'a dyn Display,
}

impl Observable for StoreUnavailable<'_> {
    fn log(&self) {
        tracing::error!(error = %self.error, "the store failed to persist a commit; not serving until it recovers");
    }
    fn record(&self, m: &Metrics) {
        add(&m.store_failures, 1);
        m.store_available.store(0, Ordering::Relaxed);
    }
}

/// The store takes writes again after a failure.
pub struct StoreRecovered {
    pub attempts: u64,
}

impl Observable for StoreRecovered {
    fn log(&self) {
        tracing::info!(
            attempts = self.attempts,
            "the store recovered; serving again"
        );
    }
    fn record(&self, m: &Metrics) {
        add(&m.store_recoveries, 1);
        m.store_available.store(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_move_their_metrics_and_render_as_prometheus_text() {
        let m = Metrics::default();
        CommitDurable {
            records: 3,
            bytes: 100,
            seconds: 0.003,
        }
        .record(&m);
        CommitDurable {
            records: 2,
            bytes: 50,
            seconds: 2.0,
        }
        .record(&m);
        Rejected { code: "bad_time" }.record(&m);
        Rejected { code: "bad_time" }.record(&m);
        PushCommitted {
            source: "http",
            accepted: 7,
            duplicate: 0,
            rejected: 0,
            messages: 1,
        }
        .record(&m);
        StoreUnavailable {
            error: &"disk full",
        }
        .record(&m);
        let text = m.render();
        assert!(text.contains("netwait_commits_total 2\n"), "{text}");
        assert!(
            text.contains("netwait_committed_records_total 5\n"),
            "{text}"
        );
        assert!(text.contains("netwait_store_available 0\n"), "{text}");
        assert!(
            text.contains("netwait_store_commit_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("netwait_store_commit_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netwait_store_commit_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netwait_rejected_total{code=\"bad_time\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netwait_accepted_events_total{source=\"http\"} 7\n"),
            "{text}"
        );
        DeadLetters { stored: 3 }.record(&m);
        assert!(m.render().contains("netwait_dead_letters 3\n"));
        for raised in [true, true, false] {
            AlertChanged {
                id: "a1",
                rule: "long_wait",
                severity: "warning",
                line: Some("cup"),
                raised,
                message: "m",
            }
            .record(&m);
        }
        KafkaLag {
            topic: "t\"x",
            partition: 2,
            messages: 5,
        }
        .record(&m);
        KafkaLag {
            topic: "t\"x",
            partition: 2,
            messages: 4,
        }
        .record(&m);
        let text = m.render();
        assert!(
            text.contains("netwait_alerts_raised_total{rule=\"long_wait\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netwait_alerts_cleared_total{rule=\"long_wait\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("netwait_kafka_consumer_lag_messages{partition=\"t\\\"x/2\"} 4\n"),
            "{text}"
        );
        StoreRecovered { attempts: 4 }.record(&m);
        assert!(m.render().contains("netwait_store_available 1\n"));
        assert!(
            m.render()
                .contains("# TYPE netwait_store_failures_total counter\n")
        );
    }
}
