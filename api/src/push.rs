//! The `Ingest` service: client-streaming push. Each message is validated, folded in and
//! committed (fsynced) before the next is read, so what was acknowledged is what a crash
//! keeps; the summary comes back once the whole stream is durable.

use crate::convert::{raw_event, render_event};
use crate::state::AppState;
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::{EncodedChunk, IngestSummary};
use netwait_ingest::parse::{encode_fields, encode_line};
use netwait_proto::v1 as pb;
use pb::ingest_server::Ingest;
use tonic::{Request, Response, Status, Streaming};

/// Longest `source` name accepted (a file path or an integrator id).
const MAX_SOURCE_CHARS: usize = 1024;

/// Write a checkpoint after a push once this much log has built up since the last one.
const CHECKPOINT_AFTER_BYTES: u64 = 64 << 20;

pub struct IngestService {
    state: AppState,
}

impl IngestService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Validates one message into encoded records, lines first, then events.
fn encode_message(
    msg: &pb::PushRequest,
    source: &str,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) -> EncodedChunk {
    let mut out = EncodedChunk::default();
    let mut position = msg.first_position.max(1);
    for line in &msg.ndjson_lines {
        // A line may come with its terminator; like in a file, it is not part of the line.
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        encode_line(&mut out, line, source, position, pseudo, hasher);
        position += 1;
    }
    for ev in &msg.events {
        encode_fields(
            &mut out,
            raw_event(ev),
            || render_event(ev),
            source,
            position,
            pseudo,
            hasher,
        );
        position += 1;
    }
    out
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn push(
        &self,
        req: Request<Streaming<pb::PushRequest>>,
    ) -> Result<Response<pb::PushSummary>, Status> {
        let peer = req
            .remote_addr()
            .map_or_else(|| "push".to_owned(), |a| format!("push:{a}"));
        let mut stream = req.into_inner();
        let mut total = IngestSummary::default();
        let mut messages = 0u64;
        while let Some(msg) = stream.message().await? {
            if msg.source.chars().count() > MAX_SOURCE_CHARS {
                return Err(Status::invalid_argument(format!(
                    "source must be at most {MAX_SOURCE_CHARS} characters (messages before this one were committed)"
                )));
            }
            let source = if msg.source.is_empty() {
                peer.clone()
            } else {
                msg.source.clone()
            };
            let pseudo = std::sync::Arc::clone(&self.state.pseudo);
            let hasher = std::sync::Arc::clone(&self.state.hasher);
            let encoded = tokio::task::spawn_blocking(move || {
                encode_message(&msg, &source, &pseudo, &hasher)
            })
            .await
            .map_err(|e| Status::internal(format!("validation task failed: {e}")))?;
            let sum = self
                .state
                .write(move |e| {
                    let sum = e.stage(encoded)?;
                    e.commit()?;
                    Ok(sum)
                })
                .await?;
            total += sum;
            messages += 1;
        }
        // Everything is durable: a checkpoint that cannot be written (a full disk) only
        // makes the next open replay more of the log, as after an import.
        self.state
            .blocking(|e| {
                if e.uncheckpointed() >= CHECKPOINT_AFTER_BYTES
                    && let Err(err) = e.checkpoint()
                {
                    tracing::warn!(error = %err, "push committed, but its checkpoint could not be written; the next open replays the log");
                }
                Ok(())
            })
            .await?;
        tracing::info!(
            accepted = total.accepted,
            duplicate = total.duplicate,
            rejected = total.rejected,
            messages,
            "push committed"
        );
        Ok(Response::new(pb::PushSummary {
            accepted: total.accepted,
            duplicate: total.duplicate,
            rejected: total.rejected,
            committed_messages: messages,
        }))
    }
}
