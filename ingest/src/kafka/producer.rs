//! The ingest role's producer: pushed events go to the topic, one canonical NDJSON line
//! a record, keyed by call id (every event of a call lands in one partition, so the
//! aggregator reads a call's events in the order they were pushed). The idempotent
//! producer (`enable.idempotence`, `acks=all`) retries without duplicating, and
//! [`EventProducer::publish`] returns only once the broker has acknowledged every record:
//! a push is answered only then. A publish the broker has not acknowledged within the
//! producer's timeout (a broker down or restarting; [`DELIVERY_TIMEOUT`] unless told)
//! fails, never a wait without end: the push is refused, to be pushed again (the
//! aggregator's dedupe drops what the broker had of it). Validation of pushes is the
//! aggregator's (its store holds the caller key and the dead letters): their lines are
//! published as they came.

use super::payload::{CONTENT_TYPE, NDJSON};
use super::{KafkaError, client_config};
use crate::proto_event::render_event;
use netwait_aggregator::domain::json_line::parse_line;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::raw_event::RawValue;
use netwait_proto::v1 as pb;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::time::Duration;

/// How long a publish may wait for the broker's acknowledgement (librdkafka's retries
/// included) before it fails, unless told otherwise (`serve --kafka-timeout`).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EventProducer {
    topic: String,
    producer: FutureProducer,
    timeout: Duration,
}

/// The record key of a line: its `call_id` when it has one (a line that is not an
/// event, or has no call, is spread by the partitioner and refused by the aggregator).
pub fn call_key(line: &[u8]) -> Option<Vec<u8>> {
    match parse_line(line).ok()?.call_id? {
        RawValue::Str(s) => Some(s.into_owned().into_bytes()),
        _ => None,
    }
}

/// The records of a push message: its NDJSON lines, split as `import` splits a file (an
/// empty entry is one empty line), then its events as canonical JSON lines (the
/// aggregator validates both exactly as the embedded push would).
pub fn message_lines(msg: &pb::PushRequest) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for entry in &msg.ndjson_lines {
        if entry.is_empty() {
            lines.push(Vec::new());
        }
        lines.extend(scan_lines(entry).map(|l| l.bytes().to_vec()));
    }
    lines.extend(msg.events.iter().map(render_event));
    lines
}

impl EventProducer {
    /// A producer to `topic`; a publish the broker has not acknowledged within `timeout`
    /// fails ([`KafkaError::Unacknowledged`]).
    pub fn new(brokers: &str, topic: &str, timeout: Duration) -> Result<Self, KafkaError> {
        let timeout_ms = timeout.as_millis().clamp(10, i32::MAX as u128);
        let producer = client_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // Records of a failed publish are not left queued for later (their push is
            // refused, and pushed again): they expire with it. The idempotent producer
            // survives expired records (a new epoch; no gapless guarantee is asked).
            .set("message.timeout.ms", timeout_ms.to_string())
            // A topic that does not exist is an error, not one made by the broker's
            // auto-creation with its defaults.
            .set("allow.auto.create.topics", "false")
            .create()?;
        Ok(Self {
            topic: topic.to_owned(),
            producer,
            timeout,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Fails, saying so, unless the brokers answer within `timeout` and know the topic.
    pub fn check_topic(&self, timeout: Duration) -> Result<(), KafkaError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| {
                KafkaError::Other(format!(
                    "the brokers did not answer within {} s ({e})",
                    timeout.as_secs()
                ))
            })?;
        let known = metadata
            .topics()
            .iter()
            .any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty());
        if known {
            Ok(())
        } else {
            Err(KafkaError::Other(format!(
                "topic {} does not exist on the brokers (create it first)",
                self.topic
            )))
        }
    }

    /// Publishes each line as a record, keyed by its `call_id` (see [`Self::publish_keyed`]).
    pub async fn publish(&self, lines: &[Vec<u8>]) -> Result<u64, KafkaError> {
        let keys: Vec<Option<Vec<u8>>> = lines.iter().map(|l| call_key(l)).collect();
        let records: Vec<(Option<&[u8]>, &[u8])> = keys
            .iter()
            .zip(lines)
            .map(|(k, l)| (k.as_deref(), l.as_slice()))
            .collect();
        self.publish_keyed(&records).await
    }

    /// Publishes each payload as a record with its key; returns how many once the broker
    /// acknowledged all of them (an error if any was refused or not acknowledged in
    /// time: the push is then not acknowledged, and publishing it again is safe, the
    /// aggregator's dedupe drops what it has).
    pub async fn publish_keyed(
        &self,
        records: &[(Option<&[u8]>, &[u8])],
    ) -> Result<u64, KafkaError> {
        // The records' own expiry (`message.timeout.ms`) runs from each send; this bounds
        // the whole publish, waits for room in a full queue included.
        tokio::time::timeout(self.timeout, self.publish_all(records))
            .await
            .unwrap_or(Err(KafkaError::Unacknowledged(self.timeout)))
    }

    async fn publish_all(&self, records: &[(Option<&[u8]>, &[u8])]) -> Result<u64, KafkaError> {
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
        for &(key, line) in records {
            let headers = OwnedHeaders::new().insert(Header {
                key: CONTENT_TYPE,
                value: Some(NDJSON),
            });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).payload(line).headers(headers);
            if let Some(key) = key {
                record = record.key(key);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        // Room comes as deliveries are acknowledged.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        let mut delivered = 0;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => delivered += 1,
                Ok(Err((e, _)))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) =>
                {
                    return Err(KafkaError::Unacknowledged(self.timeout));
                }
                Ok(Err((e, _))) => return Err(e.into()),
                Err(_) => return Err(KafkaError::Other("the producer was closed".into())),
            }
        }
        Ok(delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_keyed_by_call_id_and_a_message_is_split_into_lines() {
        assert_eq!(
            call_key(br#"{"call_id":"c-1","type":"offered","ts":0}"#),
            Some(b"c-1".to_vec())
        );
        assert_eq!(call_key(b"not json"), None);
        assert_eq!(call_key(br#"{"call_id":7}"#), None);
        let msg = pb::PushRequest {
            ndjson_lines: vec![b"a\r\nb\n".to_vec(), Vec::new(), b"c".to_vec()],
            events: vec![pb::CallEvent {
                call_id: Some("e".into()),
                r#type: "offered".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let lines = message_lines(&msg);
        assert_eq!(
            lines[..4],
            [b"a".to_vec(), b"b".to_vec(), Vec::new(), b"c".to_vec()]
        );
        assert_eq!(lines[4], br#"{"call_id":"e","type":"offered"}"#.to_vec());
    }
}
