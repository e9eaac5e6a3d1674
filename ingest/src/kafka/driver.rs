//! The aggregator's loop, on the positioned-source seam of the engine: chunks from the
//! consumer are staged in windows bounded by size and time, each chunk carrying its
//! positions (`kafka:<topic>/<partition>` → next offset), which the store commits in the
//! same fsync as the events. A chunk's refused items are confirmed delivered to the
//! dead-letter topic before the chunk is staged (the store resumes a partition from its
//! own position, so a copy not made then would never be made); once a window is durable
//! the store's positions are committed to Kafka as offsets (the source's
//! acknowledgement). A rebalance ends the window in hand first: an assignment is
//! answered with the STORE's position of each partition (Kafka's committed offset may lag
//! it, after a crash between the two), a revocation only once everything read from the
//! revoked partitions is durable and committed.
//!
//! Aggregators that share the partitions of their group ([`Writers::PerPartition`]) keep
//! an engine per partition they hold, each the writer of its partition's shard of the
//! store: opened on assignment (its stored position answers it), fed the chunks of its
//! partition only, checkpointed and closed on revocation (its writer lease handed over
//! to the member the partition moves to).
//!
//! The seam's `Source` trait hands raw bytes to the file driver; a Kafka message needs
//! its own offset as the position of its dead letters, its partition as their source and
//! may be protobuf, so this source hands the engine encoded chunks with their delta
//! (`EncodedChunk::set_delta`, `Engine::stage_stream`), and resumes per assignment
//! rather than once at the start.

use super::consumer::{Consumer, Delivery, Fetched};
use super::dead_letter_topic::DeadLetterTopic;
use super::{KafkaError, TopicPartition};
use netwait_aggregator::engine::{CheckpointMoment, Engine, IngestSummary};
use netwait_aggregator::store::StoreError;
use netwait_aggregator::store::positions::{CheckpointDelta, Position};
use rdkafka::consumer::CommitMode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// How long the dead-letter records of a chunk may take to be delivered (the broker's
/// retries included) before the aggregator stops rather than go on without them.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of [`DriverOptions::restart_unsettled`]: longer than a broker restart and
/// the rejoin after it take.
pub const RESTART_UNSETTLED: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct DriverOptions {
    /// End a window once this many encoded bytes are in it...
    pub window_bytes: usize,
    /// ... or once it has been open this long.
    pub window_wait: Duration,
    /// Commit size inside a window (the engine's writer commits behind the folding).
    pub commit_bytes: usize,
    /// A group member not settled for this long is replaced by a new one (it rejoins,
    /// resumes from the store's positions).
    pub restart_unsettled: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            window_bytes: 8 << 20,
            window_wait: Duration::from_millis(200),
            commit_bytes: 1 << 19,
            restart_unsettled: RESTART_UNSETTLED,
        }
    }
}

/// What the aggregator did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages: u64,
    pub summary: IngestSummary,
    /// Windows made durable (each followed by an offset commit).
    pub windows: u64,
    /// Rebalances seen (assignments and revocations), and the partitions assigned now.
    pub rebalances: u64,
    pub assigned: usize,
    /// From the first message received to the last window made durable.
    pub busy: Option<(Instant, Instant)>,
    /// Lag of each message, its timestamp to its window durable.
    pub lag: Lag,
}

/// A histogram of lags, by millisecond up to a minute (longer ones count as a minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    counts: Vec<u64>,
}

impl Default for Lag {
    fn default() -> Self {
        Self {
            counts: vec![0; 60_001],
        }
    }
}

impl Lag {
    fn add(&mut self, ms: i64) {
        let at = usize::try_from(ms.max(0))
            .unwrap_or(usize::MAX)
            .min(self.counts.len() - 1);
        self.counts[at] += 1;
    }

    /// The lag (ms) at quantile `q` (0 to 1), `None` before any message.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        self.counts
            .iter()
            .position(|&n| {
                seen += n;
                seen >= rank
            })
            .map(|ms| ms as u64)
    }
}

/// Called after each durable window, with the totals so far.
pub type Report<'a> = &'a mut dyn FnMut(&Totals);

/// Opens the engine of a partition's shard (waiting for the member it was taken from to
/// hand it over, or to be found dead). The partitions of one assignment are opened at
/// once, each on a thread of its own: each open waits on its own lease.
pub type OpenPartition<'a> = &'a (dyn Fn(&TopicPartition) -> Result<Engine, DriverError> + Sync);

/// What the consumed events are written by.
pub enum Writers<'a> {
    /// One engine for every partition assigned (a member of a group whose store has one
    /// writer: the others stand by).
    One(&'a mut Engine),
    /// An engine per partition held, opened when it is assigned.
    PerPartition {
        open: OpenPartition<'a>,
        engines: BTreeMap<TopicPartition, Engine>,
    },
}

impl Writers<'_> {
    /// Opens the engines of the partitions of `assigned` not open yet, all at once (the
    /// first failure is returned; the engines opened beside it are kept).
    fn assigned(&mut self, assigned: &[TopicPartition]) -> Result<(), DriverError> {
        let Self::PerPartition { open, engines } = self else {
            return Ok(());
        };
        let new: Vec<&TopicPartition> = assigned
            .iter()
            .filter(|tp| !engines.contains_key(tp))
            .collect();
        let opened: Vec<_> = std::thread::scope(|s| {
            let open = *open;
            let threads: Vec<_> = new
                .iter()
                .map(|&tp| s.spawn(move || (tp, open(tp))))
                .collect();
            threads.into_iter().map(|t| t.join()).collect()
        });
        let mut failed = None;
        for joined in opened {
            match joined {
                Ok((tp, Ok(engine))) => {
                    tracing::info!(partition = %tp.name(), "writing the shard of the partition");
                    engines.insert(tp.clone(), engine);
                }
                Ok((_, Err(e))) => {
                    failed.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// The engine that writes `tp` (assigned before its chunks come).
    fn of(&mut self, tp: &TopicPartition) -> Result<&mut Engine, DriverError> {
        match self {
            Self::One(engine) => Ok(engine),
            Self::PerPartition { engines, .. } => engines.get_mut(tp).ok_or_else(|| {
                DriverError::Kafka(KafkaError::Other(format!(
                    "a message of {}, which is not assigned here",
                    tp.name()
                )))
            }),
        }
    }

    /// The partition a chunk must hold alone, when engines are per partition.
    fn only(&self, tp: &TopicPartition) -> Option<TopicPartition> {
        matches!(self, Self::PerPartition { .. }).then(|| tp.clone())
    }

    /// Checkpoints and closes the engines of `partitions` (their leases handed over).
    fn close(&mut self, partitions: &[TopicPartition]) {
        if let Self::PerPartition { engines, .. } = self {
            for tp in partitions {
                if let Some(engine) = engines.remove(tp) {
                    hand_over(tp, engine);
                }
            }
        }
    }

    /// Every engine open now.
    fn each(&mut self) -> Vec<&mut Engine> {
        match self {
            Self::One(engine) => vec![&mut **engine],
            Self::PerPartition { engines, .. } => engines.values_mut().collect(),
        }
    }

    /// Closes every engine of a [`Self::PerPartition`] (a member replaced: its
    /// partitions are assigned again, maybe to another).
    fn close_all(&mut self) {
        if let Self::PerPartition { engines, .. } = self {
            for (tp, engine) in std::mem::take(engines) {
                hand_over(&tp, engine);
            }
        }
    }
}

/// Checkpoints the engine of `tp` and drops it (its store's lease handed over).
fn hand_over(tp: &TopicPartition, mut engine: Engine) {
    engine.checkpoint_at(CheckpointMoment::Stopping);
    drop(engine);
    tracing::info!(partition = %tp.name(), "the shard of the partition handed over");
}

/// Runs until `stop` is set (then finishes the window in hand, commits, leaves the group
/// and returns) or the store fails.
pub fn run(
    mut writers: Writers<'_>,
    consumer: &mut Consumer,
    dead_letters: Option<&DeadLetterTopic>,
    stop: &AtomicBool,
    options: DriverOptions,
    report: Report<'_>,
) -> Result<Totals, DriverError> {
    let mut driver = Driver {
        consumer,
        dead_letters,
        options,
        totals: Totals::default(),
        next_offsets: BTreeMap::new(),
        standing: BTreeMap::new(),
        held: None,
    };
    let mut stopping = false;
    // A member being replaced: stopped, its deliveries answered, then started again.
    let mut restarting = false;
    loop {
        if !stopping && stop.load(Ordering::Relaxed) {
            stopping = true;
            driver.consumer.stop();
        }
        if !stopping
            && !restarting
            && let Some((unsettled, state)) = driver.consumer.unsettled_for()
            && unsettled >= options.restart_unsettled
        {
            tracing::warn!(
                %state,
                seconds = unsettled.as_secs(),
                "kafka consumer group not settled: starting a new member"
            );
            restarting = true;
            driver.consumer.stop();
        }
        let delivery = match driver.held.take() {
            Some(d) => Some(d),
            None => driver.consumer.next(Duration::from_millis(100)),
        };
        match delivery {
            None if stopping && driver.consumer.stopped() => break,
            None if restarting && driver.consumer.stopped() => {
                // What was not revoked is assigned again, answered from the store.
                driver.standing.clear();
                driver.next_offsets.clear();
                writers.close_all();
                driver.consumer.restart()?;
                restarting = false;
                driver.totals.assigned = 0;
                report(&driver.totals);
            }
            None => {}
            Some(Delivery::Chunk(first)) => {
                let Some(tp) = first.offsets.keys().next().cloned() else {
                    continue;
                };
                let only = writers.only(&tp);
                driver.window(writers.of(&tp)?, *first, only)?;
                report(&driver.totals);
            }
            Some(Delivery::Assigned { partitions, reply }) => {
                writers.assigned(&partitions)?;
                let mut at = Vec::with_capacity(partitions.len());
                for tp in &partitions {
                    let position = writers.of(tp)?.source_checkpoint().position(&tp.name());
                    driver.standing.insert(tp.clone(), position.clone());
                    let offset = position.as_offset().and_then(|o| i64::try_from(o).ok());
                    // Kafka's committed offset may lag the store's (a crash between the
                    // two): the store's is committed with the next commit, even when
                    // nothing more comes to read.
                    if let Some(o) = offset {
                        driver.next_offsets.insert(tp.clone(), o);
                    }
                    at.push(offset);
                }
                let _ = reply.send(at);
                driver.totals.rebalances += 1;
                driver.totals.assigned = driver.standing.len();
                report(&driver.totals);
            }
            Some(Delivery::Revoked { partitions, done }) => {
                // Everything before it is durable and committed (each window is); what
                // is still to commit upstream goes now, and waits for the broker (not
                // for a member being replaced: its coordinator may never answer, and the
                // store's positions are what the next assignment resumes from).
                let mode = if restarting {
                    CommitMode::Async
                } else {
                    CommitMode::Sync
                };
                driver.commit_offsets(mode)?;
                for tp in &partitions {
                    driver.next_offsets.remove(tp);
                    driver.standing.remove(tp);
                }
                writers.close(&partitions);
                let _ = done.send(());
                driver.totals.rebalances += 1;
                driver.totals.assigned = driver.standing.len();
                report(&driver.totals);
            }
        }
    }
    // Partitions left without a revocation (the group was not left in time): their
    // offsets are committed here, synchronously.
    driver.commit_offsets(CommitMode::Sync)?;
    for engine in writers.each() {
        engine.checkpoint_at(CheckpointMoment::Stopping);
    }
    // Each chunk's records were confirmed before it was staged: nothing is pending here
    // unless a window failed; said, never dropped silently.
    if let Some(dlt) = dead_letters {
        dlt.flush(DEAD_LETTER_TIMEOUT)?;
    }
    Ok(driver.totals)
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Driver<'a> {
    consumer: &'a mut Consumer,
    dead_letters: Option<&'a DeadLetterTopic>,
    options: DriverOptions,
    totals: Totals,
    /// Next offsets of what is durable but not yet committed to Kafka.
    next_offsets: BTreeMap<TopicPartition, i64>,
    /// Where each assigned partition stands as staged: the next chunk's delta starts
    /// there (its first offset may be further on: offsets have gaps, e.g. transaction
    /// markers and compacted records).
    standing: BTreeMap<TopicPartition, Position>,
    /// A delivery that ended a window, to handle next.
    held: Option<Delivery>,
}

impl Driver<'_> {
    /// Stages `first` and the chunks after it until the window is full, old, a
    /// rebalance comes, or (with `only`) a chunk of another partition; returns once all of
    /// it is durable and its offsets committed.
    fn window(
        &mut self,
        engine: &mut Engine,
        first: Fetched,
        only: Option<TopicPartition>,
    ) -> Result<(), DriverError> {
        let started = Instant::now();
        let mut touched = Vec::new();
        let mut messages = 0;
        let mut bytes = 0;
        let mut dlt_error = None;
        let mut timestamps = Vec::new();
        let mut first = Some(first);
        let (consumer, dead_letters, options) = (&*self.consumer, self.dead_letters, self.options);
        let held = &mut self.held;
        let standing = &mut self.standing;
        let mut delta_error = None;
        let chunks = std::iter::from_fn(|| {
            let fetched = match first.take() {
                Some(f) => f,
                None => {
                    if bytes >= options.window_bytes {
                        return None;
                    }
                    let left = options.window_wait.checked_sub(started.elapsed())?;
                    match consumer.next(left)? {
                        Delivery::Chunk(f)
                            if only
                                .as_ref()
                                .is_none_or(|tp| f.offsets.keys().all(|other| other == tp)) =>
                        {
                            *f
                        }
                        other => {
                            *held = Some(other);
                            return None;
                        }
                    }
                }
            };
            // The copies of its refused items are in the dead-letter topic before the
            // chunk goes to the store; if they cannot be delivered, neither it nor
            // anything after it is staged (the window ends, the driver fails: a restart
            // reads it again).
            if let Some(dlt) = dead_letters
                && !fetched.refused.is_empty()
            {
                let delivered = fetched
                    .refused
                    .iter()
                    .try_for_each(|refused| dlt.send(refused))
                    .and_then(|()| dlt.flush(DEAD_LETTER_TIMEOUT));
                if let Err(e) = delivered {
                    dlt_error = Some(e);
                    return None;
                }
            }
            let mut delta = CheckpointDelta::default();
            for (tp, &(_, next)) in &fetched.offsets {
                let to = Position::offset(u64::try_from(next).unwrap_or(0));
                let from = standing.insert(tp.clone(), to.clone()).unwrap_or_default();
                if let Err(e) = delta.record(tp.name(), from, to) {
                    delta_error.get_or_insert(e);
                }
                touched.push(tp.clone());
            }
            let mut encoded = fetched.encoded;
            encoded.set_delta(delta);
            messages += fetched.messages;
            bytes += encoded.bytes.len();
            timestamps.extend_from_slice(&fetched.timestamps);
            Some(encoded)
        });
        let summary =
            engine.stage_stream(chunks, options.commit_bytes, false, None, &mut |_| {})?;
        tracing::debug!(
            messages,
            bytes,
            open_ms = started.elapsed().as_millis() as u64,
            "window durable"
        );
        self.totals.summary += summary;
        self.totals.messages += messages;
        self.totals.windows += 1;
        let now = Instant::now();
        let wall_ms = wall_ms();
        for ts in timestamps {
            self.totals.lag.add(wall_ms - ts);
        }
        let first_at = self.totals.busy.map_or(started, |(f, _)| f);
        self.totals.busy = Some((first_at, now));
        if let Some(e) = dlt_error {
            return Err(e.into());
        }
        if let Some(e) = delta_error {
            return Err(StoreError::from(e).into());
        }
        // The acknowledgement: what the store now says each partition read stands at.
        let stored = engine.source_checkpoint();
        for tp in touched {
            if let Some(next) = stored.position(&tp.name()).as_offset() {
                self.next_offsets
                    .insert(tp, i64::try_from(next).unwrap_or(i64::MAX));
            }
        }
        engine.checkpoint_at(CheckpointMoment::Committed);
        self.commit_offsets(CommitMode::Async)
    }

    /// Commits the offsets of what is durable (its dead-letter records were confirmed
    /// before it went to the store).
    fn commit_offsets(&mut self, mode: CommitMode) -> Result<(), DriverError> {
        if self.next_offsets.is_empty() {
            return Ok(());
        }
        // The offsets stay in the map until their partition is revoked: an async commit
        // may still be in flight when the group is left (or the process exits), so the
        // revocation's synchronous commit sends them all again and waits for the broker.
        if let Err(e) = self.consumer.commit(&self.next_offsets, mode) {
            // Not fatal: the store has the events; a later commit (or the store's
            // positions on the next assignment) covers them.
            tracing::warn!(error = %e, "kafka offset commit failed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles() {
        let mut lag = Lag::default();
        assert_eq!(lag.quantile(0.5), None);
        for ms in 1..=100 {
            lag.add(ms);
        }
        lag.add(-5); // a clock behind the producer's: no lag
        lag.add(1_000_000);
        assert_eq!(lag.quantile(0.5), Some(50));
        assert_eq!(lag.quantile(0.99), Some(100));
        assert_eq!(lag.quantile(1.0), Some(60_000));
        assert_eq!(lag.quantile(0.0), Some(0));
    }
}
