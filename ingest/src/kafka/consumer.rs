//! The consumer group, polled on a thread of its own (the quickwit model): it decodes
//! each message as it comes ([`super::payload`]) into chunks of encoded records, and
//! hands the driver, in order, those chunks and the group's rebalances:
//! - an assignment waits for the driver's answer, the offset each new partition resumes
//!   from (the store's position; none: Kafka's committed offset, else the earliest);
//! - a revocation flushes the chunk in hand first and waits until the driver has made
//!   everything before it durable and committed its offsets, then gives the partitions up.
//!
//! The channel to the driver is bounded: a slow store stops the polling (backpressure),
//! memory stays flat. While no broker answers (one restarting), the client reconnects on
//! its own; [`Consumer::reachability`] says so, and the poll errors of the outage are
//! logged a line now and then ([`super::outage`]). Nothing is committed to Kafka here: the driver commits offsets once
//! the store has the events ([`Consumer::commit`]).

use super::outage::{GroupHealth, Reachability, Throttle};
use super::payload::{self, Decoder, Encoding, Origin, Refused};
use super::{KafkaError, KafkaOptions, TopicPartition, client_config};
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::EncodedChunk;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Hand a chunk over once it holds this many encoded bytes...
const CHUNK_BYTES: usize = 1 << 20;
/// ... or once its first message waited this long (the lag budget is the driver's).
const CHUNK_WAIT: Duration = Duration::from_millis(20);
/// A chunk's age is looked at every this many messages: reading the clock costs as much
/// as decoding a small message.
const AGE_EVERY: u64 = 64;
/// Chunks in flight between the poll thread and the driver.
const IN_FLIGHT: usize = 8;

/// Per partition: the first offset a follower reads and the partition's end when it
/// started.
pub type Span = BTreeMap<TopicPartition, (i64, i64)>;

/// The group id of a follower ([`Consumer::follow`]), which it neither joins nor commits to.
const FOLLOWER_GROUP: &str = "netwait-follower-never-joined";

/// A message that had refused items, for the dead-letter topic.
#[derive(Debug)]
pub struct RefusedMessage {
    pub partition: TopicPartition,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub items: Vec<Refused>,
}

/// Consecutive messages of the assigned partitions, decoded.
#[derive(Debug, Default)]
pub struct Fetched {
    pub encoded: EncodedChunk,
    pub refused: Vec<RefusedMessage>,
    /// Per partition: the first offset in the chunk and the next one after it.
    pub offsets: BTreeMap<TopicPartition, (i64, i64)>,
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Each message's timestamp (epoch ms, as the producer or broker set it), for the lag.
    pub timestamps: Vec<i64>,
    started: Option<Instant>,
}

impl Fetched {
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// What the poll thread hands the driver, in the order it happened.
pub enum Delivery {
    Chunk(Box<Fetched>),
    /// New partitions: answer with the offset each resumes from (`None`: Kafka's
    /// committed offset, else the earliest), in the same order.
    Assigned {
        partitions: Vec<TopicPartition>,
        reply: SyncSender<Vec<Option<i64>>>,
    },
    /// Partitions taken away: everything delivered before is to be made durable and its
    /// offsets committed, then `done` answered.
    Revoked {
        partitions: Vec<TopicPartition>,
        done: SyncSender<()>,
    },
}

/// The consumer's callbacks, run on the poll thread inside `poll`.
pub struct GroupContext {
    tx: SyncSender<Delivery>,
    /// The chunk being filled (the rebalance callbacks flush it first).
    partial: Mutex<Fetched>,
    reachability: Arc<Reachability>,
    health: Arc<GroupHealth>,
    lag: LagFrom,
}

/// What a partition's lag is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LagFrom {
    /// The group's committed offset (the aggregator commits once durable).
    Committed,
    /// The last message handed over (a follower, which commits nothing).
    Delivered,
}

impl GroupContext {
    /// A context reporting to `reachability`, and the driver's end of its channel.
    fn new(lag: LagFrom, reachability: &Arc<Reachability>) -> (Self, Receiver<Delivery>) {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let context = Self {
            tx,
            partial: Mutex::new(Fetched::default()),
            reachability: Arc::clone(reachability),
            health: Arc::new(GroupHealth::joining(Instant::now())),
            lag,
        };
        (context, rx)
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, Fetched> {
        self.partial.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the chunk in hand over, if any; false when the driver is gone.
    fn flush(&self) -> bool {
        let chunk = std::mem::take(&mut *self.partial());
        if chunk.is_empty() {
            return true;
        }
        self.reachability.hold_back(true);
        let sent = self.tx.send(Delivery::Chunk(Box::new(chunk))).is_ok();
        self.reachability.hold_back(false);
        sent
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions = partitions(tpl);
        let (reply, answer) = sync_channel(1);
        let resume = if self.flush()
            && self
                .tx
                .send(Delivery::Assigned {
                    partitions: partitions.clone(),
                    reply,
                })
                .is_ok()
        {
            answer.recv().unwrap_or_default()
        } else {
            Vec::new()
        };
        for (tp, at) in partitions.iter().zip(resume) {
            if let Some(next) = at
                && let Err(e) =
                    tpl.set_partition_offset(&tp.topic, tp.partition, Offset::Offset(next))
            {
                tracing::warn!(partition = %tp.name(), error = %e, "cannot resume at the store's position");
            }
        }
        tracing::info!(partitions = ?names(&partitions), "kafka partitions assigned");
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(e) = assigned {
            tracing::error!(error = %e, "kafka assignment failed");
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions = partitions(tpl);
        let (done, finished) = sync_channel(1);
        if self.flush()
            && self
                .tx
                .send(Delivery::Revoked {
                    partitions: partitions.clone(),
                    done,
                })
                .is_ok()
        {
            let _ = finished.recv();
        }
        tracing::info!(partitions = ?names(&partitions), "kafka partitions revoked");
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = unassigned {
            tracing::error!(error = %e, "kafka unassignment failed");
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_owned(),
            partition: e.partition(),
        })
        .collect()
}

fn names(partitions: &[TopicPartition]) -> Vec<String> {
    partitions.iter().map(TopicPartition::name).collect()
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // A broker that restarts is retried by the client: do not stop. The same error
        // comes out of `poll` next, where it is logged (throttled): here only its effect.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.reachability.set(false);
        }
        tracing::debug!(target: "librdkafka", %error, "{reason}");
    }

    // Read as plain JSON for the figures wanted: rdkafka's typed `Statistics` fails
    // whole on a field a newer librdkafka renames.
    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<serde_json::Value>(statistics) {
            Ok(v) => {
                record_lag(&v, self.lag);
                self.health.observe(&v, Instant::now());
                if let Some(up) = Reachability::from_statistics(&v) {
                    self.reachability.set(up);
                }
            }
            Err(e) => tracing::debug!(error = %e, "kafka statistics not JSON"),
        }
    }
}

/// How often the client reports its statistics (the consumer lag on `/metrics`, whether
/// a broker is reachable).
const STATISTICS_MS: &str = "1000";

/// The consumer lag of each partition the statistics report: messages on the broker
/// after the group's committed offset, which the driver commits once durable (librdkafka
/// says -1 while it does not know, and lists its internal partition as -1: skipped); for
/// a follower, after the last message handed over (else the next to fetch).
fn record_lag(stats: &serde_json::Value, from: LagFrom) {
    let Some(topics) = stats.get("topics").and_then(|t| t.as_object()) else {
        return;
    };
    for (topic, t) in topics {
        let Some(partitions) = t.get("partitions").and_then(|p| p.as_object()) else {
            continue;
        };
        for (id, p) in partitions {
            let Ok(partition) = id.parse::<i32>() else {
                continue;
            };
            let lag = match from {
                LagFrom::Committed => p.get("consumer_lag").and_then(serde_json::Value::as_i64),
                LagFrom::Delivered => delivered_lag(p),
            };
            if let (true, Some(Ok(messages))) = (partition >= 0, lag.map(u64::try_from)) {
                netwait_aggregator::observe::emit(netwait_aggregator::observe::KafkaLag {
                    topic,
                    partition,
                    messages,
                });
            }
        }
    }
}

/// A follower's lag of one partition: the end of the partition (the last stable offset,
/// else the high watermark) less the offset after the last message handed over (the next
/// to fetch before any): `None` while the statistics know neither.
fn delivered_lag(p: &serde_json::Value) -> Option<i64> {
    let field = |name: &str| {
        p.get(name)
            .and_then(serde_json::Value::as_i64)
            .filter(|&o| o >= 0)
    };
    let end = field("ls_offset").or_else(|| field("hi_offset"))?;
    let at = field("app_offset").or_else(|| field("next_offset"))?;
    Some((end - at).max(0))
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "kafka rebalance failed: giving every partition up");
                self.revoke(consumer, tpl);
            }
        }
    }
}

/// A consumer's settings on `brokers`: offsets committed only when asked, fetches sized
/// for the largest message, statistics every second, the client's own log at warnings (unless
/// `NETWAIT_KAFKA_DEBUG` asks for its debug contexts).
fn consumer_config(brokers: &str) -> rdkafka::config::ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "fetch.max.bytes",
            (super::MAX_MESSAGE_BYTES * 4).to_string(),
        )
        .set("max.partition.fetch.bytes", (4 << 20).to_string())
        .set("statistics.interval.ms", STATISTICS_MS);
    if config.get("debug").is_none() {
        config.set_log_level(RDKafkaLogLevel::Warning);
    }
    config
}

/// The consumer group and its poll thread.
pub struct Consumer {
    consumer: Arc<BaseConsumer<GroupContext>>,
    rx: Receiver<Delivery>,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
    reachability: Arc<Reachability>,
    /// How a group member is made again ([`Self::restart`]); `None` for a follower.
    member: Option<Member>,
}

/// What a group member was started with.
#[derive(Clone)]
struct Member {
    options: KafkaOptions,
    pseudo: Arc<Pseudonymizer>,
    hasher: KeyHasher,
}

impl Consumer {
    /// Joins the group on `options.topics` and starts polling.
    pub fn start(
        options: &KafkaOptions,
        pseudo: Arc<Pseudonymizer>,
        hasher: KeyHasher,
    ) -> Result<Self, KafkaError> {
        let member = Member {
            options: options.clone(),
            pseudo,
            hasher,
        };
        Self::join(member, &Arc::new(Reachability::default()))
    }

    /// Joins the group as `member`, reporting to `reachability`.
    fn join(member: Member, reachability: &Arc<Reachability>) -> Result<Self, KafkaError> {
        let options = &member.options;
        let (context, rx) = GroupContext::new(LagFrom::Committed, reachability);
        let consumer: BaseConsumer<GroupContext> = consumer_config(&options.brokers)
            .set("group.id", &options.group)
            .set("auto.offset.reset", "earliest")
            // An aggregator killed without leaving the group holds its partitions until
            // its session times out: keep that short (the broker's minimum is 6 s).
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            .create_with_context(context)?;
        let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let (pseudo, hasher) = (Arc::clone(&member.pseudo), member.hasher.clone());
        let shared = options.share_partitions;
        let mut joined = Self::polled(consumer, rx, reachability, pseudo, hasher, shared)?;
        joined.member = Some(member);
        Ok(joined)
    }

    /// How long this member's group has not been settled, and its last state (`None`
    /// while it is, and for a follower).
    pub fn unsettled_for(&self) -> Option<(Duration, String)> {
        self.member.as_ref()?;
        self.consumer.context().health.unsettled_for(Instant::now())
    }

    /// Replaces a member whose poll thread has ended ([`Self::stop`], every delivery
    /// answered) by a new one that joins the group again. The old one is closed on a
    /// thread of its own: closing waits for its group coordinator, which may be what
    /// never came back.
    pub fn restart(&mut self) -> Result<(), KafkaError> {
        let Some(member) = self.member.take() else {
            return Err(KafkaError::Other("a follower is not restarted".into()));
        };
        let fresh = match Self::join(member.clone(), &self.reachability) {
            Ok(fresh) => fresh,
            Err(e) => {
                self.member = Some(member);
                return Err(e);
            }
        };
        let old = std::mem::replace(self, fresh);
        let closing = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || drop(old));
        if let Err(e) = closing {
            tracing::warn!(error = %e, "cannot close the old kafka consumer aside");
        }
        Ok(())
    }

    /// Follows every partition of `topic` from the first message whose timestamp is at
    /// or after `from_ms` (the end where there is none), outside any group: it commits
    /// nothing and is handed no rebalance (only [`Delivery::Chunk`]s come). Also returns
    /// each partition's first offset read and its end when it started (a follower that
    /// reached every end has caught up with what was there). Brokers that do not answer
    /// within `timeout` are an error.
    pub fn follow(
        brokers: &str,
        topic: &str,
        from_ms: i64,
        timeout: Duration,
        pseudo: Arc<Pseudonymizer>,
        hasher: KeyHasher,
    ) -> Result<(Self, Span), KafkaError> {
        let reachability = Arc::new(Reachability::default());
        let (context, rx) = GroupContext::new(LagFrom::Delivered, &reachability);
        let consumer: BaseConsumer<GroupContext> = consumer_config(brokers)
            // librdkafka assigns only with a group id; it never joins that group (no
            // subscription) nor commits to it.
            .set("group.id", FOLLOWER_GROUP)
            .create_with_context(context)?;
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if ids.is_empty() {
            return Err(KafkaError::Other(format!(
                "topic {topic} does not exist on the brokers (create it first)"
            )));
        }
        let deadline = std::time::Instant::now() + timeout;
        let (start, ends) = loop {
            match follow_span(&consumer, topic, &ids, from_ms, timeout) {
                Ok(span) => break span,
                // A partition just created (or whose broker just restarted) may have no
                // leader yet: asked again until the timeout.
                Err(
                    rdkafka::error::KafkaError::MetadataFetch(code)
                    | rdkafka::error::KafkaError::OffsetFetch(code),
                ) if leader_moving(code) && std::time::Instant::now() < deadline => {
                    tracing::debug!(%topic, ?code, "no partition leader yet; asking again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.into()),
            }
        };
        consumer.assign(&start)?;
        tracing::info!(%topic, partitions = ids.len(), from_ms, "kafka partitions followed");
        let follower = Self::polled(consumer, rx, &reachability, pseudo, hasher, false)?;
        Ok((follower, ends))
    }

    /// Polls `consumer` on a thread of its own; `shared`: see
    /// [`KafkaOptions::share_partitions`].
    fn polled(
        consumer: BaseConsumer<GroupContext>,
        rx: Receiver<Delivery>,
        reachability: &Arc<Reachability>,
        pseudo: Arc<Pseudonymizer>,
        hasher: KeyHasher,
        shared: bool,
    ) -> Result<Self, KafkaError> {
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let consumer = Arc::clone(&consumer);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kafka-poll".into())
                .spawn(move || poll_loop(&consumer, &stop, &pseudo, &hasher, shared))
                .map_err(|e| KafkaError::Other(format!("cannot start the poll thread: {e}")))?
        };
        Ok(Self {
            consumer,
            rx,
            stop,
            poller: Some(poller),
            reachability: Arc::clone(reachability),
            member: None,
        })
    }

    /// Whether a broker is reachable now, and how often it came back.
    pub fn reachability(&self) -> Arc<Reachability> {
        Arc::clone(&self.reachability)
    }

    /// The next delivery, waiting at most `wait`; `None` when there is none yet (or the
    /// poll thread stopped).
    pub fn next(&self, wait: Duration) -> Option<Delivery> {
        self.rx.recv_timeout(wait).ok()
    }

    /// Commits `next` offsets (the next offset to read per partition) to the group.
    pub fn commit(
        &self,
        next: &BTreeMap<TopicPartition, i64>,
        mode: CommitMode,
    ) -> KafkaResult<()> {
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, &offset) in next {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))?;
        }
        self.consumer.commit(&tpl, mode)
    }

    /// Stops polling and leaves the group (what is revoked on the way is delivered and
    /// must be answered: call [`Self::next`] until it returns `None` meanwhile, or drop
    /// the consumer to give up).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the poll thread has ended.
    pub fn stopped(&self) -> bool {
        self.poller.as_ref().is_none_or(|p| p.is_finished())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The receiver goes first, and with it the deliveries still queued: a callback
        // waiting for its answer (a revocation on the way out) gets none and goes on, so
        // the thread ends. (Fields drop only after this body: joining with the receiver
        // still alive would wait forever on a driver that has stopped, e.g. on an error.)
        drop(std::mem::replace(&mut self.rx, sync_channel(0).1));
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

fn poll_loop(
    consumer: &BaseConsumer<GroupContext>,
    stop: &AtomicBool,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
    shared: bool,
) {
    let decoder = Decoder {
        pseudo,
        hasher,
        keyed_by_call: shared,
    };
    let context = Arc::clone(consumer.context());
    let mut wait = Duration::from_millis(100);
    // Poll errors come every reconnection attempt while the broker is down: said once,
    // then every 10 s, and at once again in the next outage.
    let mut errors = Throttle::default();
    let mut returns = context.reachability.returns();
    let mut last = LastPartition::default();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(wait) {
            None => {
                // Nothing more ready: what is in hand goes now.
                if !context.flush() {
                    return;
                }
                wait = Duration::from_millis(100);
            }
            Some(Err(e)) => {
                let now_returns = context.reachability.returns();
                if now_returns != returns {
                    returns = now_returns;
                    errors.reset();
                }
                if let Some(quiet) = errors.admit(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        not_logged_since_last = quiet,
                        "kafka poll failed (logged at most every 10 s while errors go on)"
                    );
                }
                wait = Duration::from_millis(100);
            }
            Some(Ok(msg)) => {
                // A message is the surest sign the broker is there.
                context.reachability.set(true);
                // Shared partitions: each goes to its own writer, a chunk holds one.
                let other = |f: &Fetched| {
                    f.offsets
                        .keys()
                        .any(|tp| tp.partition != msg.partition() || tp.topic != msg.topic())
                };
                let switched = shared && other(&context.partial());
                if switched && !context.flush() {
                    return;
                }
                let full = {
                    let mut partial = context.partial();
                    add_message(&mut partial, &decoder, &msg, &mut last);
                    partial.encoded.bytes.len() >= CHUNK_BYTES
                        || (partial.messages % AGE_EVERY == 0
                            && partial.started.is_some_and(|t| t.elapsed() >= CHUNK_WAIT))
                };
                if full && !context.flush() {
                    return;
                }
                wait = Duration::ZERO;
            }
        }
    }
    let _ = context.flush();
    // Leaving the group revokes the partitions (delivered to a driver still listening).
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
}

/// The partition of the last message polled and its name: messages come in runs of one
/// partition, so most find theirs here without allocating.
struct LastPartition {
    tp: TopicPartition,
    name: String,
}

impl Default for LastPartition {
    fn default() -> Self {
        Self {
            // No message is of partition -1.
            tp: TopicPartition {
                topic: String::new(),
                partition: -1,
            },
            name: String::new(),
        }
    }
}

impl LastPartition {
    fn of(&mut self, topic: &str, partition: i32) -> (&TopicPartition, &str) {
        if self.tp.partition != partition || self.tp.topic != topic {
            self.tp = TopicPartition {
                topic: topic.to_owned(),
                partition,
            };
            self.name = self.tp.name();
        }
        (&self.tp, &self.name)
    }
}

fn add_message(
    into: &mut Fetched,
    decoder: &Decoder<'_>,
    msg: &rdkafka::message::BorrowedMessage<'_>,
    last: &mut LastPartition,
) {
    let (tp, source) = last.of(msg.topic(), msg.partition());
    let content_type = msg.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key.eq_ignore_ascii_case(payload::CONTENT_TYPE))
            .map(|h| h.value.unwrap_or_default())
    });
    let payload = msg.payload().unwrap_or_default();
    let refused = decoder.message(
        &mut into.encoded,
        payload,
        Encoding::of(content_type),
        Origin {
            source,
            offset: msg.offset(),
            key: msg.key(),
        },
    );
    if !refused.is_empty() {
        into.refused.push(RefusedMessage {
            partition: tp.clone(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            items: refused,
        });
    }
    let next = msg.offset() + 1;
    match into.offsets.get_mut(tp) {
        Some((_, n)) => *n = next,
        None => {
            into.offsets.insert(tp.clone(), (msg.offset(), next));
        }
    }
    into.messages += 1;
    into.bytes += payload.len() as u64;
    if let Some(ms) = msg.timestamp().to_millis() {
        into.timestamps.push(ms);
    }
    into.started.get_or_insert_with(Instant::now);
}

/// Whether a metadata or offset answer says the partition's leader is not settled yet.
fn leader_moving(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::NotLeaderForPartition | C::LeaderNotAvailable | C::UnknownTopicOrPartition
    )
}

/// Where following `topic`'s partitions `ids` from `from_ms` starts (the first offset at
/// or after the time, else the end), and the span up to their ends now.
fn follow_span(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    ids: &[i32],
    from_ms: i64,
    timeout: Duration,
) -> Result<(TopicPartitionList, Span), rdkafka::error::KafkaError> {
    let mut wanted = TopicPartitionList::new();
    for &id in ids {
        wanted.add_partition_offset(topic, id, Offset::Offset(from_ms))?;
    }
    let mut start = consumer.offsets_for_times(wanted, timeout)?;
    let mut ends = BTreeMap::new();
    for &id in ids {
        let (_, high) = consumer.fetch_watermarks(topic, id, timeout)?;
        // No message at or after the time: from the end (nothing of the window there).
        let first = match start.find_partition(topic, id).map(|p| p.offset()) {
            Some(Offset::Offset(at)) => at.min(high),
            _ => high,
        };
        start.set_partition_offset(topic, id, Offset::Offset(first))?;
        ends.insert(
            TopicPartition {
                topic: topic.to_owned(),
                partition: id,
            },
            (first, high),
        );
    }
    Ok((start, ends))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_thread_waiting_for_the_driver_is_held_back_not_idle() {
        let reachability = Arc::new(Reachability::default());
        let (context, rx) = GroupContext::new(LagFrom::Committed, &reachability);
        let chunk = || Fetched {
            messages: 1,
            ..Fetched::default()
        };
        for _ in 0..IN_FLIGHT {
            *context.partial() = chunk();
            assert!(context.flush());
        }
        assert!(!reachability.is_held_back(), "the channel had room");
        std::thread::scope(|s| {
            let blocked = s.spawn(|| {
                *context.partial() = chunk();
                context.flush()
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while !reachability.is_held_back() {
                assert!(Instant::now() < deadline, "never held back");
                std::thread::sleep(Duration::from_millis(5));
            }
            // The driver takes a chunk: the poll thread goes on.
            assert!(rx.recv().is_ok());
            assert!(blocked.join().expect("flush"));
        });
        assert!(!reachability.is_held_back());
    }

    #[test]
    fn the_last_partition_is_named_again_only_when_it_changes() {
        let mut last = LastPartition::default();
        let (tp, name) = last.of("calls", 0);
        assert_eq!((tp.partition, name), (0, "kafka:calls/0"));
        assert_eq!(last.of("calls", 2).1, "kafka:calls/2");
        assert_eq!(last.of("calls.b", 2).1, "kafka:calls.b/2");
        let (tp, name) = last.of("calls.b", 2);
        assert_eq!((tp.topic.as_str(), name), ("calls.b", "kafka:calls.b/2"));
    }

    #[test]
    fn the_statistics_consumer_lag_becomes_a_gauge_per_partition() {
        let stats = serde_json::json!({
            "name": "c", "topics": {"lagged-topic": {"partitions": {
                "0": {"consumer_lag": 7},
                "1": {"consumer_lag": -1},
                "-1": {"consumer_lag": 3}
            }}}
        });
        record_lag(&stats, LagFrom::Committed);
        let text = netwait_aggregator::observe::METRICS.render();
        assert!(
            text.contains("netwait_kafka_consumer_lag_messages{partition=\"lagged-topic/0\"} 7\n"),
            "{text}"
        );
        assert!(!text.contains("lagged-topic/1"), "{text}");
        assert!(!text.contains("lagged-topic/-1"), "{text}");
    }

    #[test]
    fn a_followers_lag_runs_from_the_last_message_handed_over() {
        let stats = serde_json::json!({
            "name": "f", "topics": {"followed-topic": {"partitions": {
                "0": {"consumer_lag": -1, "ls_offset": 40, "hi_offset": 40, "app_offset": 25, "next_offset": 40},
                "1": {"consumer_lag": -1, "ls_offset": -1, "hi_offset": 9, "app_offset": -1001, "next_offset": 9},
                "2": {"consumer_lag": -1, "ls_offset": -1, "hi_offset": -1, "app_offset": 3}
            }}}
        });
        record_lag(&stats, LagFrom::Delivered);
        let text = netwait_aggregator::observe::METRICS.render();
        for want in [
            "netwait_kafka_consumer_lag_messages{partition=\"followed-topic/0\"} 15\n",
            "netwait_kafka_consumer_lag_messages{partition=\"followed-topic/1\"} 0\n",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        assert!(!text.contains("followed-topic/2"), "{text}");
    }
}
