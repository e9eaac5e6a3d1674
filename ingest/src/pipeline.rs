//! The import pipeline: a reader thread cuts the source into chunks, worker threads
//! validate and encode them in parallel, and the calling thread folds the results into
//! the engine in input order (so "first received wins" holds), committing in large
//! batches. Channels are bounded: a slow disk slows the reader, memory stays flat.

use crate::parse::encode_chunk_into;
use crate::source::Source;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::{EncodedChunk, Engine, IngestSummary};
use netwait_aggregator::store::StoreError;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
        /// What was durably committed before the failure.
        committed: IngestSummary,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Parsing threads.
    pub workers: usize,
    /// Commit when this many encoded bytes are staged. Small enough that the writer
    /// thread writes and fsyncs while parsing goes on (a single commit at the end would
    /// put the whole log's write and fsync after the last line), that the last commit
    /// is short, and that few batch buffers are in flight (each is fresh memory the
    /// first time, which costs more here than the extra fsyncs: 64 for the seed year's
    /// 33 MB log, on the writer thread).
    pub commit_bytes: usize,
    /// Write a checkpoint at the end (encoded while the last batch is made durable).
    pub checkpoint: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            commit_bytes: 1 << 19,
            checkpoint: false,
        }
    }
}

/// Spent encoded chunks kept for reuse: about those in flight between the workers and
/// the writer.
const SPARES: usize = 16;

/// How far an import has gone, reported as each chunk is staged (once a chunk, never a
/// line): bytes of the source and its lines so far, and the valid events among those
/// lines (the others were rejected; which events are duplicates is known only as they
/// are committed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Staged {
    pub bytes: u64,
    pub lines: u64,
    pub events: u64,
}

/// Progress callback, with what is staged so far.
pub type Progress<'a> = &'a mut dyn FnMut(Staged);

struct Parsed {
    seq: u64,
    encoded: EncodedChunk,
    end_offset: u64,
}

/// Imports everything from `source`; returns once all of it is durably committed.
pub fn import(
    source: &mut dyn Source,
    engine: &mut Engine,
    pseudo: &Pseudonymizer,
    opts: PipelineOptions,
    progress: Progress<'_>,
) -> Result<IngestSummary, PipelineError> {
    let name = source.name().to_owned();
    let workers = opts.workers.max(1);
    let (chunk_tx, chunk_rx) = sync_channel(workers * 2);
    // Room for the workers to parse ahead while the folding threads start (they first
    // clear their tables' fresh memory).
    let (parsed_tx, parsed_rx) = sync_channel::<Parsed>(workers * 8);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    // Chunk buffers go back to the reader once parsed; encoded chunks' buffers come back
    // from the engine once applied and committed.
    let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(workers * 2);
    let (spares, spent) = sync_channel::<EncodedChunk>(SPARES);
    let spent = Mutex::new(spent);
    let hasher = engine.key_hasher();
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> std::io::Result<()> {
            let mut seq = 0u64;
            loop {
                while let Ok(bytes) = recycle_rx.try_recv() {
                    source.recycle(bytes);
                }
                let Some(chunk) = source.next_chunk()? else {
                    break;
                };
                if chunk_tx.send((seq, chunk)).is_err() {
                    break; // the folding side stopped
                }
                seq += 1;
            }
            Ok(())
        });
        for _ in 0..workers {
            let rx = Arc::clone(&chunk_rx);
            let tx = parsed_tx.clone();
            let recycle = recycle_tx.clone();
            let spent = &spent;
            let name = name.as_str();
            let hasher = &hasher;
            s.spawn(move || {
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok((seq, chunk))) = next else { break };
                    let reused = spent.lock().ok().and_then(|s| s.try_recv().ok());
                    let mut encoded = reused.unwrap_or_default();
                    encoded.clear();
                    encode_chunk_into(&mut encoded, &chunk, name, pseudo, hasher);
                    let p = Parsed {
                        seq,
                        encoded,
                        end_offset: chunk.end_offset,
                    };
                    if let Some(bytes) = chunk.bytes.release() {
                        let _ = recycle.try_send(bytes);
                    }
                    if tx.send(p).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers hold these now: when they stop, the reader's sends fail
        // instead of blocking (folding may stop early, on an error).
        drop(chunk_rx);
        drop(parsed_tx);
        drop(recycle_tx);
        let mut in_order = InOrder {
            rx: &parsed_rx,
            pending: BTreeMap::new(),
            next: 0,
            staged: Staged::default(),
            reported: true,
            progress,
        };
        let folded = engine.stage_stream(
            std::iter::from_fn(|| in_order.next_chunk()),
            opts.commit_bytes,
            opts.checkpoint,
            Some(spares),
        );
        // Unblock the reader and workers if folding stopped early.
        drop(in_order);
        drop(parsed_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked")));
        let summary = folded?;
        match read {
            Ok(()) => Ok(summary),
            Err(error) => Err(PipelineError::Read {
                source_name: name.clone(),
                error,
                committed: summary,
            }),
        }
    })
}

/// Hands out parsed chunks in input order, whatever order the workers finish in.
struct InOrder<'r, 'p> {
    rx: &'r Receiver<Parsed>,
    pending: BTreeMap<u64, Parsed>,
    next: u64,
    /// What the chunks handed out so far hold.
    staged: Staged,
    /// Whether `staged` was reported (it is once the chunk handed out last is staged).
    reported: bool,
    progress: Progress<'p>,
}

impl InOrder<'_, '_> {
    /// The next chunk in order; reports progress for the one before (now staged).
    fn next_chunk(&mut self) -> Option<EncodedChunk> {
        if !self.reported {
            self.reported = true;
            (self.progress)(self.staged);
        }
        let parsed = loop {
            if let Some(p) = self.pending.remove(&self.next) {
                break p;
            }
            let p = self.rx.recv().ok()?;
            self.pending.insert(p.seq, p);
        };
        self.next += 1;
        let mut encoded = parsed.encoded;
        encoded.rebase_positions(self.staged.lines);
        self.staged = Staged {
            bytes: parsed.end_offset,
            lines: self.staged.lines + encoded.lines(),
            events: self.staged.events + encoded.events() as u64,
        };
        self.reported = false;
        Some(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ReaderSource;
    use netwait_aggregator::domain::config::MetricsConfig;
    use netwait_aggregator::domain::time::parse_date;
    use netwait_aggregator::published::Answers;
    use netwait_aggregator::store::embedded::EmbeddedStore;

    /// Imports `input`, cut into chunks of `chunk_bytes`, into a fresh embedded store.
    fn import_fresh(
        input: &str,
        chunk_bytes: usize,
        opts: PipelineOptions,
    ) -> (tempfile::TempDir, Engine, IngestSummary) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let mut engine =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        let mut src = ReaderSource::with_chunk_bytes("t", input.as_bytes(), None, chunk_bytes);
        let p = Pseudonymizer::new([0; 32]);
        let sum = import(&mut src, &mut engine, &p, opts, &mut |_| {}).expect("import");
        (dir, engine, sum)
    }

    #[test]
    fn parallel_import_keeps_first_received_and_counts() {
        // Many small chunks over several workers: the later duplicate line must lose.
        let mut input = String::new();
        for i in 0..2_000 {
            input.push_str(&format!(
                "{{\"event_id\":\"o{i}\",\"call_id\":\"c{i}\",\"type\":\"offered\",\"ts\":\"2019-03-04T09:00:00+01:00\",\"line\":\"first\"}}\n"
            ));
        }
        input.push_str("{\"event_id\":\"o5\",\"call_id\":\"c5\",\"type\":\"offered\",\"ts\":0,\"line\":\"second\"}\n");
        input.push_str("garbage\n");
        for i in 0..2_000 {
            input.push_str(&format!(
                "{{\"call_id\":\"c{i}\",\"type\":\"abandoned\",\"ts\":\"2019-03-04T09:01:00+01:00\"}}\n"
            ));
        }
        // Small chunks over several workers exercise the reordering.
        let opts = PipelineOptions {
            workers: 3,
            commit_bytes: 10_000,
            checkpoint: true,
        };
        let (_dir, engine, sum) = import_fresh(&input, 1_000, opts);
        assert_eq!(
            sum,
            IngestSummary {
                accepted: 4_000,
                duplicate: 1,
                rejected: 1
            }
        );
        let d = |s| parse_date(s).expect("date");
        let t = engine.table1(
            0,
            d("2019-03-04"),
            d("2019-03-05"),
            Some("first".into()),
            None,
        );
        assert_eq!(t.figures.abandoned, 2_000);
    }
    /// Workers number lines within their chunk; dead letters must still carry the line
    /// of the stream, whatever the chunking and the order the workers finish in.
    #[test]
    fn dead_letters_carry_their_line_of_the_stream() {
        let mut input = String::new();
        let mut bad = Vec::new();
        for n in 1..=3_000u64 {
            if n % 97 == 0 || n == 1 || n == 3_000 {
                input.push_str("not json\n");
                bad.push(n);
            } else if n % 89 == 0 {
                input.push('\n'); // an empty line counts and is rejected
                bad.push(n);
            } else {
                input.push_str(&format!(
                    "{{\"call_id\":\"c{n}\",\"type\":\"offered\",\"ts\":{n}}}\r\n"
                ));
            }
        }
        for chunk_bytes in [64, 1_000, 1 << 20] {
            let opts = PipelineOptions {
                workers: 3,
                ..PipelineOptions::default()
            };
            let (_dir, mut engine, sum) = import_fresh(&input, chunk_bytes, opts);
            assert_eq!(sum.rejected, bad.len() as u64);
            let mut got = Vec::new();
            engine
                .dead_letters(&mut |d| got.push(d.position))
                .expect("dead letters");
            assert_eq!(got, bad, "chunks of {chunk_bytes} bytes");
        }
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use crate::source::ReaderSource;
    use netwait_aggregator::domain::config::MetricsConfig;
    use netwait_aggregator::store::codec::Record;
    use netwait_aggregator::store::{
        Batch, Checkpoint, EventStore, LogPosition, PartWriter, RunId,
    };

    /// A store whose disk fills up after the first commit.
    struct FullDisk {
        commits: u32,
    }

    impl EventStore for FullDisk {
        fn replay(
            &mut self,
            _from: LogPosition,
            _visit: &mut dyn FnMut(Record<'_>),
        ) -> Result<LogPosition, StoreError> {
            Ok(0)
        }

        fn commit(&mut self, _batch: &Batch) -> Result<LogPosition, StoreError> {
            self.commits += 1;
            if self.commits > 1 {
                return Err(StoreError::Io {
                    path: "events.log".into(),
                    source: std::io::Error::other("no space left on device"),
                });
            }
            Ok(u64::from(self.commits))
        }

        fn recover(&mut self) -> Result<(), StoreError> {
            Err(StoreError::Io {
                path: "events.log".into(),
                source: std::io::Error::other("no space left on device"),
            })
        }

        fn load_checkpoint(&mut self, _with_fold: bool) -> Result<Option<Checkpoint>, StoreError> {
            Ok(None)
        }

        fn save_checkpoint(
            &mut self,
            _position: LogPosition,
            _query: PartWriter<'_>,
            _fold: PartWriter<'_>,
            _runs: &[(RunId, PartWriter<'_>)],
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn progress_comes_once_a_chunk_and_ends_with_the_whole_input() {
        let mut input = String::new();
        for i in 0..12_000 {
            input.push_str(&format!(
                "{{\"call_id\":\"c{}\",\"type\":\"offered\",\"ts\":0}}\n",
                i % 8_000
            ));
            if i % 100 == 0 {
                input.push_str("not json\n");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            netwait_aggregator::store::embedded::EmbeddedStore::open(dir.path()).expect("store");
        let mut engine =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        let mut src = ReaderSource::with_chunk_bytes("t", input.as_bytes(), None, 4_000);
        let opts = PipelineOptions {
            workers: 3,
            commit_bytes: 10_000,
            checkpoint: false,
        };
        let mut seen = Vec::new();
        let p = Pseudonymizer::new([0; 32]);
        let sum = import(&mut src, &mut engine, &p, opts, &mut |s| seen.push(s)).expect("import");
        // Chunks hold at least a longest line (64 KiB): some 8 of them.
        assert!(seen.len() > 4, "one report a chunk: {}", seen.len());
        assert!(seen.windows(2).all(|w| w[0].bytes < w[1].bytes
            && w[0].lines < w[1].lines
            && w[0].events <= w[1].events));
        let last = seen.last().copied().expect("reports");
        assert_eq!(
            last,
            Staged {
                bytes: input.len() as u64,
                lines: 12_120,
                events: sum.accepted + sum.duplicate,
            }
        );
        assert_eq!((sum.duplicate, sum.rejected), (4_000, 120));
    }

    #[test]
    fn a_failing_store_stops_the_import_with_its_error_and_nothing_hangs() {
        let mut input = String::new();
        for i in 0..20_000 {
            input.push_str(&format!(
                "{{\"call_id\":\"c{i}\",\"type\":\"offered\",\"ts\":{i}}}\n"
            ));
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let store = Box::new(FullDisk { commits: 0 });
            let mut engine =
                Engine::open(store, [1; 16], MetricsConfig::default()).expect("engine");
            // Tiny chunks and commits: the input is far from read when the store fails.
            let mut src = ReaderSource::with_chunk_bytes("t", input.as_bytes(), None, 500);
            let opts = PipelineOptions {
                workers: 2,
                commit_bytes: 1_000,
                checkpoint: true,
            };
            let p = Pseudonymizer::new([0; 32]);
            let result = import(&mut src, &mut engine, &p, opts, &mut |_| {});
            let _ = done_tx.send((result.map_err(|e| e.to_string()), engine.is_poisoned()));
        });
        let (result, poisoned) = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the import returns instead of hanging");
        let err = result.expect_err("the store's error is reported");
        assert!(err.contains("no space left"), "{err}");
        assert!(
            poisoned,
            "the engine refuses further work after a failed commit"
        );
    }
}
