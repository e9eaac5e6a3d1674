//! The dead-letter topic: each item the aggregator refused, as received (a line, a
//! rendered event, or a whole payload that could not be read), keyed as its message was,
//! with headers saying where it came from and why it was refused. The item is copied as
//! it is in its origin topic (which holds it so already), so that it can be fixed and
//! produced again; the store's dead letter keeps it redacted.
//!
//! Every record is kept until the broker reports it delivered ([`DeadLetterTopic::flush`]
//! waits for the reports, sends again the ones that failed, and fails when some are still
//! not delivered at its deadline). The driver confirms a chunk's records before the
//! chunk goes to the store, so a refused item is never in the store (and its offset
//! never committed) without its copy in the topic; a crash in between copies it twice
//! (at least once, like the input).

use super::consumer::RefusedMessage;
use super::{KafkaError, client_config};
use rdkafka::client::ClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Header names of a dead-letter record.
pub const ORIGIN_TOPIC: &str = "netwait-origin-topic";
pub const ORIGIN_PARTITION: &str = "netwait-origin-partition";
pub const ORIGIN_OFFSET: &str = "netwait-origin-offset";
pub const ITEM: &str = "netwait-item";
pub const CODE: &str = "netwait-reject-code";
pub const REASON: &str = "netwait-reject-reason";

/// Pause before records that failed are sent again.
const RESEND_PAUSE: Duration = Duration::from_millis(200);

/// One dead-letter record, kept until delivered.
struct Record {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: [(&'static str, String); 6],
}

/// A record not yet reported delivered, and the error of its last failed delivery.
struct Pending {
    record: Arc<Record>,
    failed: Option<String>,
}

/// The records sent and not yet delivered, by id (the delivery opaque).
#[derive(Default)]
pub struct Deliveries {
    pending: Mutex<BTreeMap<usize, Pending>>,
}

impl Deliveries {
    fn pending(&self) -> MutexGuard<'_, BTreeMap<usize, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let mut pending = self.pending();
        match result {
            Ok(_) => {
                pending.remove(&id);
            }
            Err((error, _)) => {
                tracing::warn!(%error, "a dead-letter record was not delivered: it is sent again");
                if let Some(p) = pending.get_mut(&id) {
                    p.failed = Some(error.to_string());
                }
            }
        }
    }
}

pub struct DeadLetterTopic {
    topic: String,
    producer: ThreadedProducer<Deliveries>,
    next_id: std::sync::atomic::AtomicUsize,
}

impl DeadLetterTopic {
    pub fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        let producer = client_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(Deliveries::default())?;
        Ok(Self {
            topic: topic.to_owned(),
            producer,
            next_id: Default::default(),
        })
    }

    /// Queues a record for every refused item of `message` (see [`Self::flush`]).
    pub fn send(&self, message: &RefusedMessage) -> Result<(), KafkaError> {
        let partition = message.partition.partition.to_string();
        let offset = message.offset.to_string();
        for item in &message.items {
            let record = Arc::new(Record {
                key: message.key.clone(),
                payload: item.raw.clone(),
                headers: [
                    (ORIGIN_TOPIC, message.partition.topic.clone()),
                    (ORIGIN_PARTITION, partition.clone()),
                    (ORIGIN_OFFSET, offset.clone()),
                    (ITEM, item.item.to_string()),
                    (CODE, item.code.to_owned()),
                    (REASON, item.reason.clone()),
                ],
            });
            let id = self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.producer.context().pending().insert(
                id,
                Pending {
                    record: Arc::clone(&record),
                    failed: None,
                },
            );
            if let Err(e) = self.produce(id, &record) {
                self.producer.context().pending().remove(&id);
                return Err(e);
            }
        }
        Ok(())
    }

    fn produce(&self, id: usize, record: &Record) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_str()),
            });
        }
        let mut base: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&self.topic, id)
                .payload(record.payload.as_slice())
                .headers(headers);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        // A full queue waits for deliveries to make room (the reports are served by
        // the producer's own thread: no lock is held here).
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((error, back)) => match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => {
                        std::thread::sleep(Duration::from_millis(20));
                        base = back;
                    }
                    _ => return Err(error.into()),
                },
            }
        }
    }

    /// Waits until every record sent is reported delivered, sending again those whose
    /// delivery failed; an error (nothing is dropped: the records stay pending) when some
    /// are still not delivered after `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = self.producer.flush(left) {
                return Err(self.undelivered(&e.to_string()));
            }
            let failed: Vec<(usize, Arc<Record>)> = {
                let mut pending = self.producer.context().pending();
                if pending.is_empty() {
                    return Ok(());
                }
                if pending.values().all(|p| p.failed.is_none()) {
                    // Flushed, yet not reported: the client's queue is empty, so this
                    // only means a report still on its way to the context.
                    drop(pending);
                    if Instant::now() >= deadline {
                        return Err(self.undelivered("no delivery report"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                if Instant::now() >= deadline {
                    let error = pending
                        .values()
                        .find_map(|p| p.failed.clone())
                        .unwrap_or_default();
                    drop(pending);
                    return Err(self.undelivered(&error));
                }
                pending
                    .iter_mut()
                    .filter_map(|(id, p)| p.failed.take().map(|_| (*id, Arc::clone(&p.record))))
                    .collect()
            };
            std::thread::sleep(
                RESEND_PAUSE.min(deadline.saturating_duration_since(Instant::now())),
            );
            tracing::info!(records = failed.len(), topic = %self.topic, "sending dead-letter records again");
            for (id, record) in failed {
                self.produce(id, &record)?;
            }
        }
    }

    /// Records sent and not yet delivered.
    pub fn pending(&self) -> usize {
        self.producer.context().pending().len()
    }

    fn undelivered(&self, error: &str) -> KafkaError {
        KafkaError::Other(format!(
            "{} dead-letter records were not delivered to {}: {error}",
            self.pending(),
            self.topic
        ))
    }
}
