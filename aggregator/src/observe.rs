//! What netwait lets its operators observe, one struct per event (the vector model):
//! each event knows its log line and the metrics it moves, and is emitted through
//! [`emit`], the one facade. Counters live in [`METRICS`] (process-wide, lock-free), ready
//! to be exposed (e.g. as Prometheus text by [`Metrics::render`]).

use std::fmt::Display;
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
};

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 12] = [
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
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let v = value.load(Ordering::Relaxed);
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        }
        out
    }
}

/// Records were made durable in one commit.
pub struct CommitDurable {
    pub records: u64,
    pub bytes: u64,
}

impl Observable for CommitDurable {
    fn log(&self) {
        tracing::trace!(records = self.records, bytes = self.bytes, "commit durable");
    }
    fn record(&self, m: &Metrics) {
        add(&m.commits, 1);
        add(&m.committed_records, self.records);
        add(&m.committed_bytes, self.bytes);
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

/// A push stream was committed whole.
pub struct PushCommitted {
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
        add(&m.pushed_duplicate, self.duplicate);
        add(&m.pushed_rejected, self.rejected);
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
        }
        .record(&m);
        CommitDurable {
            records: 2,
            bytes: 50,
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
        StoreRecovered { attempts: 4 }.record(&m);
        assert!(m.render().contains("netwait_store_available 1\n"));
        assert!(
            m.render()
                .contains("# TYPE netwait_store_failures_total counter\n")
        );
    }
}
