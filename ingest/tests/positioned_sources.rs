//! A source of several partitions, driven into a real embedded store, "killed" between a
//! commit and its acknowledgement (the process stops after the commit is durable but
//! before the source hears of it; nothing is checkpointed), then resumed from what the
//! store says: the figures equal those of one clean run, every event is read exactly
//! once (no duplicate, none skipped), with the positions read back from the log or from
//! the checkpoint's positions file.

use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::time::parse_date;
use netwait_aggregator::engine::{Engine, IngestSummary};
use netwait_aggregator::published::Answers;
use netwait_aggregator::store::embedded::EmbeddedStore;
use netwait_ingest::decoded::DecodeSettings;
use netwait_ingest::format::Format;
use netwait_ingest::pipeline::{PipelineOptions, drive};
use netwait_ingest::source::{
    CheckpointDelta, Poll, Position, RawBatch, Source, SourceCheckpoint, SourceError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// xorshift64*: reproducible batches without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Partitions of NDJSON lines, read in random batches from random partitions, with an
/// idle poll now and then; positions are line offsets.
struct TestSource {
    partitions: Vec<(String, Vec<String>)>,
    next: Vec<usize>,
    rng: Rng,
    /// What was acknowledged upstream (as Kafka's committed offsets would be).
    acked: SourceCheckpoint,
    /// Acknowledgements seen; the `crash_at`-th is never made: the process "dies".
    acks: usize,
    crash_at: Option<usize>,
    crashed: Arc<AtomicBool>,
    /// A batch was handed out and no acknowledgement covers it yet: the source waits
    /// (idle) for it, so that acknowledgements come one per batch, whatever the speed
    /// of the machine (otherwise a fast reader hears of a few coalesced commits only).
    unacked: bool,
}

impl TestSource {
    fn new(partitions: Vec<(String, Vec<String>)>, seed: u64, crash_at: Option<usize>) -> Self {
        let next = vec![0; partitions.len()];
        Self {
            partitions,
            next,
            rng: Rng(seed | 1),
            acked: SourceCheckpoint::default(),
            acks: 0,
            crash_at,
            crashed: Arc::new(AtomicBool::new(false)),
            unacked: false,
        }
    }
}

impl Source for TestSource {
    fn name(&self) -> &str {
        "test"
    }

    fn resume(&mut self, checkpoint: &SourceCheckpoint) -> Result<(), SourceError> {
        for (i, (p, _)) in self.partitions.iter().enumerate() {
            let at = checkpoint.position(p).as_offset().unwrap_or(0);
            self.next[i] = usize::try_from(at).unwrap_or(usize::MAX);
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        let open: Vec<usize> = (0..self.partitions.len())
            .filter(|&i| self.next[i] < self.partitions[i].1.len())
            .collect();
        if open.is_empty() {
            return Ok(Poll::End);
        }
        if self.unacked {
            std::thread::sleep(std::time::Duration::from_micros(200));
            return Ok(Poll::Idle);
        }
        if self.rng.below(10) == 0 {
            return Ok(Poll::Idle);
        }
        let mut delta = CheckpointDelta::default();
        let mut bytes = Vec::new();
        // One to three partitions in a batch.
        for _ in 0..=self.rng.below(3) {
            let i = open[self.rng.below(open.len() as u64) as usize];
            let (name, lines) = &self.partitions[i];
            let from = self.next[i];
            let to = (from + 1 + self.rng.below(300) as usize).min(lines.len());
            for line in &lines[from..to] {
                bytes.extend_from_slice(line.as_bytes());
                bytes.push(b'\n');
            }
            delta.record(
                name.clone(),
                Position::offset(from as u64),
                Position::offset(to as u64),
            )?;
            self.next[i] = to;
        }
        self.unacked = true;
        Ok(Poll::Batch(RawBatch {
            bytes: bytes.into(),
            format: Format::Ndjson,
            delta,
            first_line: None,
            end_offset: 0,
        }))
    }

    fn on_durable(&mut self, checkpoint: &SourceCheckpoint) {
        if self.crashed.load(Ordering::SeqCst) {
            return;
        }
        self.acks += 1;
        if Some(self.acks) == self.crash_at {
            // Durable, never acknowledged: the process stops here.
            self.crashed.store(true, Ordering::SeqCst);
            return;
        }
        self.acked = checkpoint.clone();
        let covered = self
            .partitions
            .iter()
            .zip(&self.next)
            .all(|((p, _), &next)| {
                next == 0 || self.acked.position(p) >= Position::offset(next as u64)
            });
        if covered {
            self.unacked = false;
        }
    }
}

/// Three partitions of calls: offered, then answered or abandoned.
fn partitions() -> Vec<(String, Vec<String>)> {
    (0..3)
        .map(|p| {
            let mut lines = Vec::new();
            for i in 0..1_500 {
                let ts = 1_551_686_400_000i64 + (p * 100_000 + i) * 1_000;
                lines.push(format!(
                    r#"{{"event_id":"o{p}-{i}","call_id":"c{p}-{i}","type":"offered","ts":{ts},"line":"l{p}"}}"#
                ));
                let end = if i % 3 == 0 {
                    format!(r#""type":"abandoned","ts":{}"#, ts + 30_000)
                } else {
                    format!(r#""type":"answered","ts":{},"agent":"a""#, ts + 50_000)
                };
                lines.push(format!(r#"{{"event_id":"e{p}-{i}","call_id":"c{p}-{i}",{end}}}"#));
            }
            (format!("kafka:t/{p}"), lines)
        })
        .collect()
}

fn open(dir: &std::path::Path) -> Engine {
    let store = EmbeddedStore::open(dir).expect("store");
    Engine::open(Box::new(store), [7; 16], MetricsConfig::default()).expect("engine")
}

fn run(engine: &mut Engine, source: &mut TestSource) -> IngestSummary {
    let opts = PipelineOptions {
        workers: 2,
        commit_bytes: 8_000,
        commit_interval: Some(std::time::Duration::from_millis(1)),
        checkpoint: false,
    };
    let crashed = Arc::clone(&source.crashed);
    drive(
        source,
        engine,
        &Pseudonymizer::new([2; 32]),
        &DecodeSettings::default(),
        opts,
        Some(&crashed),
        &mut |_| {},
    )
    .expect("drive")
}

fn figures(engine: &Engine) -> String {
    let d = |s| parse_date(s).expect("date");
    let t = engine.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
    format!("{:?}", t.figures)
}

#[test]
fn positions_survive_a_kill_between_commit_and_acknowledgement() {
    let clean_dir = tempfile::tempdir().expect("tempdir");
    let mut clean = open(clean_dir.path());
    let all = run(&mut clean, &mut TestSource::new(partitions(), 1, None));
    let events: u64 = partitions().iter().map(|(_, l)| l.len() as u64).sum();
    assert_eq!((all.accepted, all.duplicate), (events, 0));
    let want = figures(&clean);
    for (seed, crash_at, checkpointed) in
        [(3, 2, false), (5, 7, true), (9, 4, false), (11, 12, true)]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut engine = open(dir.path());
        let mut first = TestSource::new(partitions(), seed, Some(crash_at));
        let before = run(&mut engine, &mut first);
        assert!(first.crashed.load(Ordering::SeqCst), "seed {seed}: crashed");
        let durable = engine.source_checkpoint().clone();
        // The store is ahead of what the source acknowledged: resuming from the
        // acknowledgements would read committed input again.
        assert!(
            durable.iter().any(|(p, at)| first.acked.position(p) < *at),
            "seed {seed}: a commit was left unacknowledged"
        );
        if checkpointed {
            engine.checkpoint().expect("checkpoint");
        }
        // kill -9: nothing more is written; the lock goes with the engine.
        drop(engine);
        let mut engine = open(dir.path());
        assert_eq!(
            engine.source_checkpoint(),
            &durable,
            "seed {seed}: positions reopened"
        );
        let mut second = TestSource::new(partitions(), seed + 100, None);
        let after = run(&mut engine, &mut second);
        assert_eq!(
            (
                before.accepted + after.accepted,
                before.duplicate + after.duplicate
            ),
            (events, 0),
            "seed {seed}: every event read exactly once"
        );
        assert_eq!(figures(&engine), want, "seed {seed}");
        // Each partition ends at its last line, acknowledged.
        for (p, lines) in partitions() {
            let end = Position::offset(lines.len() as u64);
            assert_eq!(engine.source_checkpoint().position(&p), end);
            assert_eq!(second.acked.position(&p), end);
        }
    }
}

#[test]
fn a_source_that_skips_input_is_refused() {
    struct Skipper(u64);
    impl Source for Skipper {
        fn name(&self) -> &str {
            "skipper"
        }
        fn poll(&mut self) -> Result<Poll, SourceError> {
            self.0 += 1;
            if self.0 > 2 {
                return Ok(Poll::End);
            }
            // The second batch starts past where the first ended.
            let from = (self.0 - 1) * 10;
            let delta =
                CheckpointDelta::single("p", Position::offset(from), Position::offset(from + 5))?;
            let line = format!(
                r#"{{"call_id":"s{}","type":"offered","ts":1551686400000}}"#,
                self.0
            );
            Ok(Poll::Batch(RawBatch {
                bytes: format!("{line}\n").into_bytes().into(),
                format: Format::Ndjson,
                delta,
                first_line: None,
                end_offset: 0,
            }))
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open(dir.path());
    let err = drive(
        &mut Skipper(0),
        &mut engine,
        &Pseudonymizer::new([2; 32]),
        &DecodeSettings::default(),
        PipelineOptions::default(),
        None,
        &mut |_| {},
    )
    .expect_err("a gap is refused");
    assert!(err.to_string().contains("missing"), "{err}");
    // The batch before the gap is durable, the one after it is not staged.
    assert_eq!(
        engine.source_checkpoint().position("p"),
        Position::offset(5)
    );
    assert!(!engine.is_poisoned());
}
