//! The driver of every source: a reader thread polls the source and cuts its input into
//! batches, worker threads validate and encode NDJSON batches in parallel (the formats
//! decoded in order — queue_log, call records — are decoded on the reader thread), and
//! the calling thread folds the results into the engine in input order (so "first
//! received wins" holds), committing in large batches with the source positions they
//! cover. Channels are bounded: a slow disk slows the reader, memory stays flat.
//!
//! A file ends; a followed log or a topic does not: both are driven alike, with a
//! commit cadence by size ([`PipelineOptions::commit_bytes`]) and time
//! ([`PipelineOptions::commit_interval`]), and a clean stop (the batch in hand is
//! finished, committed and acknowledged) when the stop flag is raised.

use crate::decoded::{Decodable, DecodeSettings, decode_inputs, encode_units};
use crate::format::Format;
use crate::parse::encode_chunk_into;
use crate::queue_log::follow::Follow;
use crate::queue_log::rows::read_file_layout;
use crate::source::{CheckpointDelta, Poll, RawBytes, Source, SourceCheckpoint, SourceError};
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::{EncodedChunk, Engine, IngestSummary, Spares};
use netwait_aggregator::store::StoreError;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading {source_name}: {error}")]
    Read {
        source_name: String,
        /// Boxed: the error type stays small on every `Result` path.
        error: Box<SourceError>,
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
    /// Commit what is staged at the latest this long after its first batch was read,
    /// and at once when the source has nothing more for now (a long-running source's
    /// latency). `None`: by size only (a file read in one go).
    pub commit_interval: Option<Duration>,
    /// Write a checkpoint at the end (encoded while the last batch is made durable).
    pub checkpoint: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            commit_bytes: 1 << 19,
            commit_interval: None,
            checkpoint: false,
        }
    }
}

impl PipelineOptions {
    /// For a source that does not end: commits within 200 ms of reading.
    pub fn long_running() -> Self {
        Self {
            commit_interval: Some(Duration::from_millis(200)),
            ..Self::default()
        }
    }
}

/// Spent encoded chunks kept for reuse: room for every chunk that can be in flight with
/// `workers` parse workers (queued for them and parsed ahead, parsing, reordered, in the
/// folding stages). A chunk dropped while the other threads run costs an unmap, with a
/// TLB shootdown on every CPU, and its replacement fresh memory.
fn spares(workers: usize) -> usize {
    workers * 12 + 8
}

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

/// A batch's input for the workers: NDJSON to parse, or records already decoded.
enum Work {
    Ndjson(RawBytes),
    Decoded {
        chunks: Vec<EncodedChunk>,
        lines: u64,
    },
}

/// One batch of the source, as it goes from the reader through a worker.
struct Batch<W> {
    seq: u64,
    work: W,
    delta: CheckpointDelta,
    first_line: Option<u64>,
    end_offset: u64,
    commit_after: bool,
}

struct Parsed {
    chunks: Vec<EncodedChunk>,
    lines: u64,
}

/// Imports everything from `source` (NDJSON, or any format its batches say, decoded
/// with the default settings); returns once all of it is durably committed.
pub fn import(
    source: &mut dyn Source,
    engine: &mut Engine,
    pseudo: &Pseudonymizer,
    opts: PipelineOptions,
    progress: Progress<'_>,
) -> Result<IngestSummary, PipelineError> {
    drive(
        source,
        engine,
        pseudo,
        &DecodeSettings::default(),
        opts,
        None,
        progress,
    )
}

/// Where a driven source's events go: an engine in hand (`import`, `tail`), or one
/// that other work shares (`serve`'s writer thread, which takes them a commit window
/// at a time), or a Kafka topic (the ingest role).
pub trait Target {
    /// Where every source stands in what is durable.
    fn source_checkpoint(&mut self) -> SourceCheckpoint;

    /// The dedupe and call key function the chunks are encoded with.
    fn key_hasher(&self) -> KeyHasher;

    /// Stages `chunks` in order and commits them with their positions, as
    /// [`Engine::stage_stream`] does (a chunk may ask for a commit after it); `durable`
    /// hears where the sources stand after each commit.
    fn stage_stream(
        &mut self,
        chunks: &mut dyn Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        checkpoint: bool,
        spares: Option<Spares>,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError>;
}

/// Cuts `chunks` into commit windows and hands each to `deliver` as it closes, in
/// order: a window ends after a chunk that asks for a commit
/// ([`EncodedChunk::asks_commit`]), once `max_bytes` of encoded records are in it, or
/// with the input. For a [`Target`] that makes one commit of each window elsewhere than
/// in an engine of its own (a writer thread's engine, a broker).
pub fn each_window(
    chunks: &mut dyn Iterator<Item = EncodedChunk>,
    max_bytes: usize,
    deliver: &mut dyn FnMut(Vec<EncodedChunk>) -> Result<IngestSummary, StoreError>,
) -> Result<IngestSummary, StoreError> {
    let mut total = IngestSummary::default();
    loop {
        let (mut window, mut bytes, mut ended) = (Vec::new(), 0, true);
        for chunk in &mut *chunks {
            let last = chunk.asks_commit();
            bytes += chunk.bytes.len();
            window.push(chunk);
            if last || bytes >= max_bytes {
                ended = false;
                break;
            }
        }
        if !window.is_empty() {
            total += deliver(window)?;
        }
        if ended {
            return Ok(total);
        }
    }
}

impl Target for Engine {
    fn source_checkpoint(&mut self) -> SourceCheckpoint {
        Engine::source_checkpoint(self).clone()
    }

    fn key_hasher(&self) -> KeyHasher {
        Engine::key_hasher(self)
    }

    fn stage_stream(
        &mut self,
        chunks: &mut dyn Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        checkpoint: bool,
        spares: Option<Spares>,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        Engine::stage_stream(self, chunks, commit_bytes, checkpoint, spares, durable)
    }
}

/// Drives `source` into `engine` until it ends or `stop` is raised: resumes it from
/// the store's positions, commits its batches with their positions, tells it what is
/// durable. Returns once everything read is durably committed (and acknowledged).
pub fn drive(
    source: &mut dyn Source,
    engine: &mut dyn Target,
    pseudo: &Pseudonymizer,
    settings: &DecodeSettings,
    opts: PipelineOptions,
    stop: Option<&AtomicBool>,
    progress: Progress<'_>,
) -> Result<IngestSummary, PipelineError> {
    let name = source.name().to_owned();
    let read_error = |error: SourceError, committed| PipelineError::Read {
        source_name: name.clone(),
        error: Box::new(error),
        committed,
    };
    source
        .resume(&engine.source_checkpoint())
        .map_err(|e| read_error(e, IngestSummary::default()))?;
    let workers = opts.workers.max(1);
    let (chunk_tx, chunk_rx) = sync_channel::<Batch<Work>>(workers * 2);
    // Room for the workers to parse ahead while the folding threads start (they first
    // clear their tables' fresh memory).
    let (parsed_tx, parsed_rx) = sync_channel::<Batch<Parsed>>(workers * 8);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    // Encoded chunks' buffers come back from the engine once applied and committed.
    let (spares, spent) = sync_channel::<EncodedChunk>(spares(workers));
    let spent = Mutex::new(spent);
    // What is durable, from the engine's writer to the reader (which owns the source).
    let (durable_tx, durable_rx) = std::sync::mpsc::channel::<SourceCheckpoint>();
    let hasher = engine.key_hasher();
    let src = &mut *source;
    let result = std::thread::scope(|s| {
        let hasher_ref = &hasher;
        let source_name = name.as_str();
        let reader = s.spawn(move || -> Result<(), SourceError> {
            let mut seq = 0u64;
            let mut follow = Follow::default();
            // When the first batch not yet asked to be committed was read.
            let mut unflushed: Option<Instant> = None;
            loop {
                if let Some(cp) = durable_rx.try_iter().last() {
                    src.on_durable(&cp);
                }
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    break;
                }
                let batch = match src.poll()? {
                    Poll::End => break,
                    Poll::Context { bytes, format } => {
                        if format == Format::QueueLog {
                            follow.learn(&read_file_layout(&bytes), &settings.queue_log);
                        }
                        continue;
                    }
                    Poll::Idle => {
                        if unflushed.take().is_none() {
                            continue;
                        }
                        // Nothing more for now: commit what is staged.
                        let work = Work::Decoded {
                            chunks: Vec::new(),
                            lines: 0,
                        };
                        Batch {
                            seq,
                            work,
                            delta: CheckpointDelta::default(),
                            first_line: None,
                            end_offset: 0,
                            commit_after: true,
                        }
                    }
                    Poll::Batch(b) => {
                        let first = *unflushed.get_or_insert_with(Instant::now);
                        let commit_after =
                            opts.commit_interval.is_some_and(|i| first.elapsed() >= i);
                        if commit_after {
                            unflushed = None;
                        }
                        let work = decode_in_order(
                            b.format,
                            b.bytes,
                            source_name,
                            settings,
                            &mut follow,
                            pseudo,
                            hasher_ref,
                        );
                        Batch {
                            seq,
                            work,
                            delta: b.delta,
                            first_line: b.first_line,
                            end_offset: b.end_offset,
                            commit_after,
                        }
                    }
                };
                if chunk_tx.send(batch).is_err() {
                    break; // the folding side stopped
                }
                seq += 1;
            }
            Ok(())
        });
        for _ in 0..workers {
            let rx = Arc::clone(&chunk_rx);
            let tx = parsed_tx.clone();
            let spent = &spent;
            s.spawn(move || {
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(batch)) = next else { break };
                    let parsed = match batch.work {
                        Work::Ndjson(bytes) => {
                            let reused = spent.lock().ok().and_then(|s| s.try_recv().ok());
                            let mut encoded = reused.unwrap_or_default();
                            encoded.clear();
                            encode_chunk_into(
                                &mut encoded,
                                &bytes,
                                source_name,
                                pseudo,
                                hasher_ref,
                            );
                            // Its buffer goes back to the source, its pages released.
                            drop(bytes);
                            let lines = encoded.lines();
                            Parsed {
                                chunks: vec![encoded],
                                lines,
                            }
                        }
                        Work::Decoded { chunks, lines } => Parsed { chunks, lines },
                    };
                    let p = Batch {
                        seq: batch.seq,
                        work: parsed,
                        delta: batch.delta,
                        first_line: batch.first_line,
                        end_offset: batch.end_offset,
                        commit_after: batch.commit_after,
                    };
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
        let mut in_order = InOrder {
            rx: &parsed_rx,
            pending: BTreeMap::new(),
            ready: VecDeque::new(),
            next: 0,
            staged: Staged::default(),
            reported: true,
            progress,
        };
        let folded = engine.stage_stream(
            &mut std::iter::from_fn(|| in_order.next_chunk()),
            opts.commit_bytes,
            opts.checkpoint,
            Some(spares),
            &mut |cp| {
                let _ = durable_tx.send(cp.clone());
            },
        );
        // Unblock the reader and workers if folding stopped early.
        drop(in_order);
        drop(parsed_rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked").into()));
        (folded, read)
    });
    let (folded, read) = result;
    // Everything committed is durable now: the source hears where the store stands.
    source.on_durable(&engine.source_checkpoint());
    let summary = folded?;
    read.map_err(|e| read_error(e, summary))?;
    Ok(summary)
}

/// The work of one batch: NDJSON goes to the workers as it is; the other formats are
/// decoded here, in input order (their rules look across rows), and encoded.
fn decode_in_order(
    format: Format,
    bytes: RawBytes,
    source: &str,
    settings: &DecodeSettings,
    follow: &mut Follow,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) -> Work {
    let chunks = match format {
        Format::Ndjson => return Work::Ndjson(bytes),
        Format::QueueLog => {
            let units = follow.decode(read_file_layout(&bytes), &settings.queue_log, pseudo);
            encode_units(&units, &bytes, source, pseudo, hasher)
        }
        Format::QueueLogCsv | Format::Cdr => {
            let input = Decodable {
                name: source.to_owned(),
                format,
                bytes: bytes.to_vec(),
            };
            decode_inputs(std::slice::from_ref(&input), settings, pseudo, hasher)
                .into_iter()
                .flatten()
                .collect()
        }
    };
    // (Counted only here: the NDJSON workers count their lines as they split them.)
    let lines = bytecount_lines(&bytes);
    Work::Decoded { chunks, lines }
}

/// Lines of whole-line input (a last line without its end counts).
fn bytecount_lines(bytes: &[u8]) -> u64 {
    let ends = memchr::memchr_iter(b'\n', bytes).count() as u64;
    ends + u64::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

/// Hands out parsed chunks in input order, whatever order the workers finish in.
struct InOrder<'r, 'p> {
    rx: &'r Receiver<Batch<Parsed>>,
    pending: BTreeMap<u64, Batch<Parsed>>,
    /// The chunks of the batch being handed out.
    ready: VecDeque<EncodedChunk>,
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
        if self.ready.is_empty() {
            self.next_batch()?;
        }
        let chunk = self.ready.pop_front()?;
        self.staged.events += chunk.events() as u64;
        self.reported = false;
        Some(chunk)
    }

    /// Takes the next batch in order into `ready` (at least one chunk, which carries
    /// the batch's positions and commit request).
    fn next_batch(&mut self) -> Option<()> {
        let batch = loop {
            if let Some(p) = self.pending.remove(&self.next) {
                break p;
            }
            let p = self.rx.recv().ok()?;
            self.pending.insert(p.seq, p);
        };
        self.next += 1;
        let mut chunks = batch.work.chunks;
        if chunks.is_empty() {
            chunks.push(EncodedChunk::default());
        }
        // Lines are numbered within the batch: they become the partition's lines when
        // the source knows where the batch starts, else the stream's.
        let base = batch
            .first_line
            .map_or(self.staged.lines, |first| first.saturating_sub(1));
        for c in &mut chunks {
            c.rebase_positions(base);
        }
        if let Some(last) = chunks.last_mut() {
            last.set_delta(batch.delta);
            if batch.commit_after {
                last.commit_after();
            }
        }
        self.staged.lines += batch.work.lines;
        self.staged.bytes = self.staged.bytes.max(batch.end_offset);
        self.ready.extend(chunks);
        Some(())
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
    fn windows_close_after_a_chunk_asking_for_a_commit_or_at_the_byte_bound() {
        let chunk = |bytes: usize, commit: bool| {
            let mut c = EncodedChunk::default();
            c.bytes = vec![0; bytes];
            if commit {
                c.commit_after();
            }
            c
        };
        let input = [
            chunk(10, false),
            chunk(10, true), // a source's cadence closes the window
            chunk(60, false),
            chunk(50, false), // 110 >= 100: closed at the bound
            chunk(5, false),  // the input's end closes the last one
        ];
        let mut sizes = Vec::new();
        let sum = each_window(&mut input.into_iter(), 100, &mut |w| {
            sizes.push(w.iter().map(|c| c.bytes.len()).collect::<Vec<_>>());
            Ok(IngestSummary {
                accepted: w.len() as u64,
                ..IngestSummary::default()
            })
        })
        .expect("windows");
        assert_eq!(sizes, [vec![10, 10], vec![60, 50], vec![5]]);
        assert_eq!(sum.accepted, 5, "the windows' summaries add up");
        let mut none = std::iter::empty();
        let mut calls = 0;
        each_window(&mut none, 100, &mut |_| {
            calls += 1;
            Ok(IngestSummary::default())
        })
        .expect("no input");
        assert_eq!(calls, 0, "no input, no window");
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
            ..PipelineOptions::default()
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
    use netwait_aggregator::store::record::Record;
    use netwait_aggregator::store::{Batch, EventStore, LogPosition};

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
            ..PipelineOptions::default()
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
                ..PipelineOptions::default()
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
