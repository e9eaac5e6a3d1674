//! The dead-letter topic: each item the aggregator refused, as received (a line, a
//! rendered event, or a whole payload that could not be read), keyed as its message was,
//! with headers saying where it came from and why it was refused. The item is copied as
//! it is in its origin topic (which holds it so already), so that it can be fixed and
//! produced again; the store's dead letter keeps it redacted.
//!
//! Delivery is confirmed before the offsets of the messages are committed
//! ([`DeadLetterTopic::flush`]), so a refused item is never lost between the two topics
//! (a crash may copy it twice: at least once, like the input).

use super::consumer::RefusedMessage;
use super::{KafkaError, client_config};
use rdkafka::client::ClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Header names of a dead-letter record.
pub const ORIGIN_TOPIC: &str = "netwait-origin-topic";
pub const ORIGIN_PARTITION: &str = "netwait-origin-partition";
pub const ORIGIN_OFFSET: &str = "netwait-origin-offset";
pub const ITEM: &str = "netwait-item";
pub const CODE: &str = "netwait-reject-code";
pub const REASON: &str = "netwait-reject-reason";

/// Counts the records the broker refused.
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "a dead-letter record was not delivered");
        }
    }
}

pub struct DeadLetterTopic {
    topic: String,
    producer: ThreadedProducer<Deliveries>,
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
        })
    }

    /// Queues a record for every refused item of `message`.
    pub fn send(&self, message: &RefusedMessage) -> Result<(), KafkaError> {
        let partition = message.partition.partition.to_string();
        let offset = message.offset.to_string();
        for item in &message.items {
            let number = item.item.to_string();
            let headers = OwnedHeaders::new()
                .insert(header(ORIGIN_TOPIC, &message.partition.topic))
                .insert(header(ORIGIN_PARTITION, &partition))
                .insert(header(ORIGIN_OFFSET, &offset))
                .insert(header(ITEM, &number))
                .insert(header(CODE, item.code))
                .insert(header(REASON, &item.reason));
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
                .payload(item.raw.as_slice())
                .headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            // A full queue waits for deliveries to make room.
            while let Err((error, back)) = self.producer.send(record) {
                match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => {
                        self.producer.poll(Duration::from_millis(50));
                        record = back;
                    }
                    _ => return Err(error.into()),
                }
            }
        }
        Ok(())
    }

    /// Waits until every record queued is delivered; an error when one was refused or
    /// the broker did not answer in `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)?;
        match self.producer.context().failed.swap(0, Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(KafkaError::Other(format!(
                "{n} dead-letter records were not delivered to {}",
                self.topic
            ))),
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
