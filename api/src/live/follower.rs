//! The live side of the api role (`netwait serve --clickhouse URL --kafka BROKERS --topic
//! T`): a follower of the topic that feeds the same live runner as the embedded server.
//!
//! It reads every partition with a consumer of its own, outside any group (it commits
//! nothing: each api replica has its own view, and the aggregators' group is untouched),
//! from the message timestamp of local midnight less the unresolved-call window (6 h: a
//! call offered before midnight and still open is in the book), and folds the events
//! into an engine on a [`MemoryStore`]: the same validation, dedupe, call book, cells and
//! transitions as every other mode, so no figure has a second definition. Until it has
//! read what the topic held when it started, nothing is handed to the live side (a
//! backlog's calls would seem to wait for hours, and raise alerts for nothing); then it
//! starts the live side from the book (its open calls and operators' presence), as the
//! embedded server starts from its store, and hands over the transitions of each chunk.
//!
//! Memory stays bounded: at each local midnight the engine is replaced by a new one
//! caught up from the new start (old calls leave with the old book). Today's figures are
//! the book's; the days before are the store's (see [`super::past`]). While no broker
//! answers, the live side is told (`source_unreachable`); the client reconnects on its own.

use super::clock::Clock;
use super::runner::{LiveFeed, LiveInput};
use crate::state::{feed_live, seed_of};
use netwait_aggregator::domain::call::UNRESOLVED_AFTER;
use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::time::{Millis, RomeClock, local_date, rome_midnight};
use netwait_aggregator::engine::Engine;
use netwait_aggregator::published::Snapshot;
use netwait_aggregator::random::random_bytes;
use netwait_aggregator::store::memory::MemoryStore;
use netwait_ingest::kafka::TopicPartition;
use netwait_ingest::kafka::consumer::{Consumer, Delivery, Fetched};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Where the follower reads.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub brokers: String,
    pub topic: String,
    /// How long brokers may take to answer a metadata or offsets request.
    pub timeout: Duration,
    pub config: MetricsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{0}")]
    Kafka(#[from] netwait_ingest::kafka::KafkaError),
    #[error("the live book: {0}")]
    Store(#[from] netwait_aggregator::store::StoreError),
    #[error("reading /dev/urandom: {0}")]
    Random(#[from] std::io::Error),
}

/// How long a poll for the next chunk waits (the timeouts and the day are checked as
/// often).
const POLL: Duration = Duration::from_millis(200);

/// The start of the look-back for the local day of `now`: its midnight less the
/// unresolved-call window.
pub fn look_back_from(now: Millis) -> Millis {
    let (day, _) = RomeClock::default().local_day(now);
    rome_midnight(local_date(day)) - UNRESOLVED_AFTER
}

/// The follower's thread: publishes the live book's snapshots and hands its transitions
/// to the live runner, until dropped.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A follower whose brokers answered, not yet reading: the live runner is started on its
/// snapshots first, then [`Opened::start`] hands it the runner's feed.
pub struct Opened {
    live: LiveBook,
    published: watch::Sender<Arc<Snapshot>>,
    options: FollowOptions,
    clock: Arc<dyn Clock>,
}

impl Follower {
    /// Checks that the brokers have the topic (an error otherwise, as the ingest role
    /// does) and assigns its partitions; returns the snapshots' receiver (the first one
    /// empty) for the live runner.
    pub fn open(
        options: FollowOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<(Opened, watch::Receiver<Arc<Snapshot>>), FollowError> {
        let mut live = LiveBook::new(&options, clock.now_ms())?;
        let (published, snapshots) = watch::channel(Arc::new(live.engine.publish()));
        let opened = Opened {
            live,
            published,
            options,
            clock,
        };
        Ok((opened, snapshots))
    }
}

impl Opened {
    /// Follows the topic on a thread of its own, feeding `feed`.
    pub fn start(self, feed: LiveFeed) -> std::io::Result<Follower> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("netwait-live-follow".into())
                .spawn(move || {
                    let Self {
                        live,
                        published,
                        options,
                        clock,
                    } = self;
                    follow(live, &options, &*clock, &published, &feed, &stop);
                })?
        };
        Ok(Follower {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An engine on a memory store and the consumer filling it, for one local day.
struct LiveBook {
    engine: Engine,
    consumer: Consumer,
    /// Per partition, the end when the consumer started and where it stands now.
    ends: BTreeMap<TopicPartition, i64>,
    next: BTreeMap<TopicPartition, i64>,
    day: i64,
}

impl LiveBook {
    fn new(options: &FollowOptions, now: Millis) -> Result<Self, FollowError> {
        // Keys of this process alone: the book is never stored, its callers never shown
        // (the aggregator pseudonymises with the store's key).
        let engine = Engine::open(
            Box::new(MemoryStore::new()),
            random_bytes()?,
            options.config.clone(),
        )?;
        let pseudo = Arc::new(Pseudonymizer::new(random_bytes()?));
        let from = look_back_from(now);
        let (consumer, ends) = Consumer::follow(
            &options.brokers,
            &options.topic,
            from,
            options.timeout,
            pseudo,
            engine.key_hasher(),
        )?;
        let next = ends
            .iter()
            .map(|(tp, &(start, _))| (tp.clone(), start))
            .collect();
        let ends = ends.into_iter().map(|(tp, (_, end))| (tp, end)).collect();
        Ok(Self {
            engine,
            consumer,
            ends,
            next,
            day: RomeClock::default().local_day(now).0,
        })
    }

    fn caught_up(&self) -> bool {
        self.ends
            .iter()
            .all(|(tp, end)| self.next.get(tp).is_some_and(|n| n >= end))
    }

    /// Folds one chunk in (committed to the memory store at once).
    fn fold(&mut self, fetched: Fetched) -> Result<(), FollowError> {
        for (tp, &(_, next)) in &fetched.offsets {
            self.next.insert(tp.clone(), next);
        }
        self.engine.stage(fetched.encoded)?;
        self.engine.commit()?;
        Ok(())
    }

    /// Reads until what the topic held at the start is in the book (or `stop`); tells
    /// `feed` whether the brokers answer meanwhile.
    fn catch_up(
        &mut self,
        stop: &AtomicBool,
        feed: &LiveFeed,
        reachable: &mut Option<bool>,
    ) -> Result<(), FollowError> {
        let started = std::time::Instant::now();
        while !self.caught_up() && !stop.load(Ordering::Relaxed) {
            tell_reachability(&self.consumer, feed, reachable);
            if let Some(Delivery::Chunk(f)) = self.consumer.next(POLL) {
                self.fold(*f)?;
            }
        }
        tracing::info!(
            calls = self.engine.book().calls(),
            ms = started.elapsed().as_millis() as u64,
            "live book caught up with the topic"
        );
        Ok(())
    }
}

fn tell_reachability(consumer: &Consumer, feed: &LiveFeed, told: &mut Option<bool>) {
    let now = consumer.reachability().is_reachable();
    if *told != Some(now) {
        // Not said before the first connection: a consumer starting is not an outage.
        if now || told.is_some() {
            feed.send(LiveInput::Source { reachable: now });
        }
        *told = Some(now);
    }
}

fn follow(
    mut live: LiveBook,
    options: &FollowOptions,
    clock: &dyn Clock,
    published: &watch::Sender<Arc<Snapshot>>,
    feed: &LiveFeed,
    stop: &AtomicBool,
) {
    let mut reachable = None;
    loop {
        if let Err(e) = live.catch_up(stop, feed, &mut reachable) {
            tracing::error!(error = %e, "the live book failed: no live state");
            return;
        }
        if let Err(e) = live.engine.watch_transitions() {
            tracing::error!(error = %e, "the live book failed: no live state");
            return;
        }
        published.send_replace(Arc::new(live.engine.publish()));
        feed.send(seed_of(&live.engine));
        // Following: each chunk's transitions go to the live side.
        while !stop.load(Ordering::Relaxed) {
            tell_reachability(&live.consumer, feed, &mut reachable);
            let before = live.engine.position();
            if let Some(Delivery::Chunk(f)) = live.consumer.next(POLL) {
                if let Err(e) = live.fold(*f) {
                    tracing::error!(error = %e, "the live book failed: no live state");
                    return;
                }
                published.send_replace(Arc::new(live.engine.publish()));
            }
            feed_live(&mut live.engine, feed, false, before);
            if RomeClock::default().local_day(clock.now_ms()).0 != live.day {
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // A new day: a new book from the new look-back (the old one goes first).
        tracing::info!("a new day: the live book starts again from the topic");
        drop(live);
        live = loop {
            match LiveBook::new(options, clock.now_ms()) {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the topic again: retrying in 5 s");
                    feed.send(LiveInput::Source { reachable: false });
                    reachable = Some(false);
                    for _ in 0..25 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(POLL);
                    }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::domain::time::parse_rfc3339;

    #[test]
    fn the_look_back_starts_6_hours_before_local_midnight() {
        let at = |s| parse_rfc3339(s).expect("ts");
        for (now, from) in [
            ("2019-03-04T12:00:00+01:00", "2019-03-03T18:00:00+01:00"),
            ("2019-03-04T00:00:00+01:00", "2019-03-03T18:00:00+01:00"),
            ("2019-03-03T23:59:59+01:00", "2019-03-02T18:00:00+01:00"),
            // The day after the clocks went forward: its midnight is at +02:00.
            ("2019-04-01T09:00:00+02:00", "2019-03-31T18:00:00+02:00"),
            // The day the clocks went forward: 6 h before its midnight, at +01:00.
            ("2019-03-31T09:00:00+02:00", "2019-03-30T18:00:00+01:00"),
        ] {
            assert_eq!(look_back_from(at(now)), at(from), "{now}");
        }
    }
}
