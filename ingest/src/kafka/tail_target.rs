//! A followed log in the ingest role (`tail --kafka`, `serve --kafka` with
//! `[[sources]]`): the pipeline's [`Target`] seam, so the one driver reads, decodes,
//! validates and pseudonymises it exactly as it does for the local store; only where
//! its batches go differs. Each commit window's accepted events are published to the
//! topic as canonical event lines (the caller as this process's pseudonymised token:
//! the aggregator pseudonymises it again as an opaque caller, so no calling number
//! reaches the broker), keyed by call id (an operator's events by agent), and only
//! once the broker acknowledged every record are the window's rejected lines kept in
//! the local store's dead letters, its positions made durable in the
//! [`PositionFile`], and the source told. A window the broker does not take (in
//! [`DELIVERY_TIMEOUT`](super::producer::DELIVERY_TIMEOUT)) is published again until
//! it does, or until the process stops (the position not moved: the next start reads
//! it again; the aggregator's dedupe drops what arrived twice).

use super::position_file::PositionFile;
use super::producer::EventProducer;
use crate::pipeline::{Target, each_window};
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::event::Event;
use netwait_aggregator::engine::{EncodedChunk, IngestSummary, Spares};
use netwait_aggregator::store::StoreError;
use netwait_aggregator::store::codec::Decoder;
use netwait_aggregator::store::positions::{CheckpointDelta, SourceCheckpoint};
use netwait_aggregator::store::record::Record;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The pause before a window the broker did not take is published again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub struct KafkaTarget<L> {
    producer: Arc<EventProducer>,
    positions: Arc<PositionFile>,
    /// Where rejected lines go (the ingest process's own store).
    local: L,
    /// Raised when the process stops: a window being published again is given up.
    stop: Arc<AtomicBool>,
    /// Drives the producer's deliveries on the driver's folding thread.
    runtime: tokio::runtime::Runtime,
}

impl<L: Target> KafkaTarget<L> {
    pub fn new(
        producer: Arc<EventProducer>,
        positions: Arc<PositionFile>,
        local: L,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        Ok(Self {
            producer,
            positions,
            local,
            stop,
            runtime,
        })
    }

    /// The local store's target (its dead letters).
    pub fn local_mut(&mut self) -> &mut L {
        &mut self.local
    }

    /// Publishes the window's records, again after each failure, until the broker has
    /// all of them; an error only once the process stops.
    fn publish(&self, records: &[(Option<Vec<u8>>, Vec<u8>)]) -> Result<u64, StoreError> {
        let mut attempt = 0u32;
        loop {
            let batch: Vec<(Option<&[u8]>, &[u8])> = records
                .iter()
                .map(|(key, line)| (key.as_deref(), line.as_slice()))
                .collect();
            let error = match self.runtime.block_on(self.producer.publish_keyed(&batch)) {
                Ok(published) => return Ok(published),
                Err(e) => e,
            };
            attempt += 1;
            let topic = self.producer.topic();
            if self.stop.load(Ordering::Relaxed) {
                return Err(StoreError::Io {
                    path: format!("Kafka topic {topic}"),
                    source: std::io::Error::other(format!(
                        "{error}; stopped before the broker acknowledged the batch (read again at the next start)"
                    )),
                });
            }
            tracing::warn!(
                %topic,
                %error,
                attempt,
                records = records.len(),
                "publishing a batch of a followed log failed: sent again (its position waits for the broker)"
            );
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Publishes `window`, keeps its rejected lines, moves its positions; says where
    /// the sources stand then.
    fn deliver(
        &mut self,
        window: Window,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        self.positions.standing().check(&window.delta)?;
        let mut summary = IngestSummary {
            accepted: self.publish(&window.records)?,
            ..IngestSummary::default()
        };
        if !window.dead_letters.is_empty() {
            let mut chunks = window.dead_letters.into_iter();
            summary +=
                self.local
                    .stage_stream(&mut chunks, usize::MAX, false, None, &mut |_| {})?;
        }
        let standing = self.positions.advance(&window.delta)?;
        durable(&standing);
        Ok(summary)
    }
}

/// One commit window on its way to the topic.
#[derive(Default)]
struct Window {
    /// (key, canonical event line) of each accepted event, in input order.
    records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    /// The chunks' rejected lines, for the local store.
    dead_letters: Vec<EncodedChunk>,
    delta: CheckpointDelta,
}

impl Window {
    fn take(&mut self, chunk: &EncodedChunk) -> Result<(), StoreError> {
        self.delta.extend(chunk.delta().clone())?;
        for record in Decoder::new(&chunk.bytes) {
            match record {
                Ok(Record::Event(ev)) => self.records.push((record_key(&ev), canonical_line(&ev))),
                Ok(_) => {}
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        path: "an encoded batch".into(),
                        what: e.to_string(),
                    });
                }
            }
        }
        let dead = chunk.dead_letters_only();
        if !dead.bytes.is_empty() {
            self.dead_letters.push(dead);
        }
        Ok(())
    }
}

/// A call's events share its key (one partition: read in order); an operator's
/// presence events have no call and are keyed by the agent for the same reason.
fn record_key(ev: &Event<'_>) -> Option<Vec<u8>> {
    ev.call_id
        .as_deref()
        .or(ev.agent.as_deref().filter(|_| ev.kind.is_agent_event()))
        .map(|k| k.as_bytes().to_vec())
}

/// The canonical NDJSON line of a validated event (spec §1; `ts` in epoch ms), its
/// caller the pseudonymised token.
pub fn canonical_line(ev: &Event<'_>) -> Vec<u8> {
    let mut o = Map::new();
    let mut text = |key: &str, v: Option<&str>| {
        if let Some(v) = v {
            o.insert(key.into(), Value::from(v));
        }
    };
    text("call_id", ev.call_id.as_deref());
    text("type", Some(ev.kind.as_str()));
    text("event_id", ev.event_id.as_deref());
    text("line", ev.line.as_deref());
    text("agent", ev.agent.as_deref());
    text("booking", ev.booking.map(|b| b.as_str()));
    text("reason", ev.reason.as_deref());
    text("caller", ev.caller.map(|c| format!("{c:?}")).as_deref());
    o.insert("ts".into(), Value::from(ev.ts));
    // (Writing a `Value` to memory cannot fail.)
    serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
}

impl<L: Target> Target for KafkaTarget<L> {
    fn source_checkpoint(&mut self) -> SourceCheckpoint {
        self.positions.standing()
    }

    fn key_hasher(&self) -> KeyHasher {
        // The dead letters' identities are the local store's.
        self.local.key_hasher()
    }

    fn stage_stream(
        &mut self,
        chunks: &mut dyn Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        _checkpoint: bool,
        _spares: Option<Spares>,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        each_window(chunks, commit_bytes, &mut |chunks| {
            let mut window = Window::default();
            for chunk in &chunks {
                window.take(chunk)?;
            }
            self.deliver(window, durable)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::domain::event::{BookingKind, CallerHash, EventType};
    use netwait_aggregator::domain::privacy::Pseudonymizer;
    use netwait_aggregator::domain::validate::validate_line;

    #[test]
    fn a_canonical_line_validates_to_the_same_event_but_its_caller_token() {
        let ev = Event {
            kind: EventType::Booking,
            ts: 1_551_682_800_123,
            call_id: Some("c\"1".into()),
            event_id: Some("e-1".into()),
            line: None,
            agent: Some("Agent/1".into()),
            booking: Some(BookingKind::Move),
            reason: Some("é".into()),
            caller: Some(CallerHash([0xab; 16])),
        };
        let line = canonical_line(&ev);
        let pseudo = Pseudonymizer::new([7; 32]);
        let back = validate_line(&line, &pseudo).expect("valid");
        let token = format!("{:?}", CallerHash([0xab; 16]));
        assert_eq!(token.len(), 32, "no calling number, a token");
        assert_eq!(
            back,
            Event {
                caller: Some(pseudo.hash(&token)),
                ..ev.clone()
            }
        );
        assert_eq!(record_key(&ev), Some(b"c\"1".to_vec()));
        let login = Event {
            kind: EventType::AgentLogin,
            call_id: None,
            ..ev
        };
        assert_eq!(record_key(&login), Some(b"Agent/1".to_vec()));
    }
}
