//! The `Ingest` service: client-streaming push. Each message is validated, folded in and
//! committed (fsynced) before the next is read, so what was acknowledged is what a crash
//! keeps; the summary comes back once the whole stream is durable. A stream ended early
//! (an invalid message, a failing store, the idle timeout, a server shutting down) gets
//! an error saying what was committed before it.

use crate::shutdown::Phase;
use crate::state::AppState;
use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::{CheckpointMoment, EncodedChunk, IngestSummary};
use netwait_aggregator::observe;
use netwait_ingest::bom;
use netwait_ingest::cdr;
use netwait_ingest::decoded::encode_unit;
use netwait_ingest::kafka::producer::{EventProducer, message_lines};
use netwait_ingest::parse::{encode_fields, encode_line};
use netwait_ingest::proto_event::{raw_event, render_call_detail, render_event};
use netwait_proto::v1 as pb;
use pb::ingest_server::Ingest;
use std::time::Duration;
use tonic::{Code, Request, Response, Status, Streaming};

/// Longest `source` name accepted (a file path or an integrator id).
pub(crate) const MAX_SOURCE_CHARS: usize = 1024;

pub struct IngestService {
    state: AppState,
    idle_timeout: Duration,
}

impl IngestService {
    pub fn new(state: AppState, idle_timeout: Duration) -> Self {
        Self {
            state,
            idle_timeout,
        }
    }
}

fn overflow() -> Status {
    Status::invalid_argument(
        "first_position plus the number of lines and events of the message exceeds 2^64-1",
    )
}

/// Positions of a message's items, from its `first_position`, without wrapping.
struct Positions {
    next: Option<u64>,
}

impl Positions {
    fn take(&mut self) -> Result<u64, Status> {
        let at = self.next.ok_or_else(overflow)?;
        self.next = at.checked_add(1);
        Ok(at)
    }
}

/// Validates one message into encoded records, lines first, then events. Each
/// `ndjson_lines` entry is split into lines exactly as `import` splits a file (its last
/// line may lack a terminator); an empty entry is one empty line. The HTTP push encodes
/// its bodies with it too.
pub(crate) fn encode_message(
    msg: &pb::PushRequest,
    source: &str,
    pseudo: &Pseudonymizer,
    hasher: &KeyHasher,
) -> Result<EncodedChunk, Status> {
    let mut out = EncodedChunk::default();
    let mut positions = Positions {
        next: Some(msg.first_position.max(1)),
    };
    for entry in &msg.ndjson_lines {
        if entry.is_empty() {
            encode_line(&mut out, entry, source, positions.take()?, pseudo, hasher);
        }
        for scanned in scan_lines(entry) {
            let line = scanned.bytes();
            let position = positions.take()?;
            // The first line of a source may start with a BOM, as a file may.
            let line = if position == 1 {
                bom::strip(line)
            } else {
                line
            };
            encode_line(&mut out, line, source, position, pseudo, hasher);
        }
    }
    for ev in &msg.events {
        encode_fields(
            &mut out,
            raw_event(ev),
            || render_event(ev),
            source,
            positions.take()?,
            pseudo,
            hasher,
        );
    }
    for detail in &msg.call_details {
        let rendered = render_call_detail(detail);
        let position = positions.take()?;
        // One rendered record is one unit of the CDR decoder.
        for mut unit in cdr::decode_ndjson(&rendered, pseudo) {
            unit.line = position;
            encode_unit(&mut out, &unit, &rendered, None, source, pseudo, hasher);
        }
    }
    Ok(out)
}

/// What a stream got durably so far, for its summary and for every error ending it.
#[derive(Default)]
struct Committed {
    total: IngestSummary,
    messages: u64,
}

impl Committed {
    /// `status`, saying what was committed before it.
    fn ended(&self, status: Status) -> Status {
        let t = &self.total;
        Status::new(
            status.code(),
            format!(
                "{}; committed before: {} messages (accepted {}, duplicate {}, rejected {}), nothing after",
                status.message(),
                self.messages,
                t.accepted,
                t.duplicate,
                t.rejected
            ),
        )
    }
}

impl IngestService {
    /// The next message: `None` at the end of the stream; an error when it is idle too
    /// long, too large, or the server closes it.
    async fn next_message(
        &self,
        stream: &mut Streaming<pb::PushRequest>,
    ) -> Result<Option<pb::PushRequest>, Status> {
        let received = tokio::select! {
            () = self.state.shutdown.reached(Phase::Closing) => {
                return Err(Status::unavailable("the server is shutting down"));
            }
            r = tokio::time::timeout(self.idle_timeout, stream.message()) => r,
        };
        match received {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no message for {} s (the server's push idle timeout)",
                self.idle_timeout.as_secs_f64()
            ))),
            // gRPC convention for a message over the size limit (tonic says OUT_OF_RANGE).
            Ok(Err(s)) if s.code() == Code::OutOfRange => {
                Err(Status::resource_exhausted(s.message().to_owned()))
            }
            Ok(r) => r,
        }
    }

    /// Validates and commits one message.
    async fn commit_message(
        &self,
        msg: pb::PushRequest,
        peer: &str,
    ) -> Result<IngestSummary, Status> {
        if msg.source.chars().count() > MAX_SOURCE_CHARS {
            return Err(Status::invalid_argument(format!(
                "source must be at most {MAX_SOURCE_CHARS} characters"
            )));
        }
        if let Some(producer) = &self.state.forward {
            return publish(producer, &message_lines(&msg)).await;
        }
        let source = if msg.source.is_empty() {
            peer.to_owned()
        } else {
            msg.source.clone()
        };
        let pseudo = std::sync::Arc::clone(&self.state.pseudo);
        let hasher = std::sync::Arc::clone(&self.state.hasher);
        let encoded =
            tokio::task::spawn_blocking(move || encode_message(&msg, &source, &pseudo, &hasher))
                .await
                .map_err(|e| Status::internal(format!("validation task failed: {e}")))??;
        commit_chunks(&self.state, vec![encoded])
            .await
            .map(|(sum, _)| sum)
    }
}

/// The ingest role's path of every push (gRPC and HTTP): the lines go to Kafka, and the
/// push is answered once the broker has all of them. Validation, dedupe and dead letters
/// are the aggregator's: `accepted` counts the records published.
pub(crate) async fn publish(
    producer: &EventProducer,
    lines: &[Vec<u8>],
) -> Result<IngestSummary, Status> {
    // Nothing of a failed push is acknowledged; pushed again, what the broker had of it
    // is dropped by the aggregator's dedupe (event ids).
    let published = producer.publish(lines).await.map_err(|e| {
        Status::unavailable(format!(
            "publishing to Kafka topic {}: {e}; this message is not acknowledged: push it again (event ids dedupe what the broker has of it)",
            producer.topic()
        ))
    })?;
    Ok(IngestSummary {
        accepted: published,
        ..IngestSummary::default()
    })
}

/// The commit path of every push (gRPC and HTTP): stages validated chunks and commits
/// them as one durable batch. Returns the counts and, per event record in order, whether
/// it was accepted (false: a duplicate).
pub(crate) async fn commit_chunks(
    state: &AppState,
    chunks: Vec<EncodedChunk>,
) -> Result<(IngestSummary, Vec<bool>), Status> {
    state
        .write(move |e| {
            let mut sum = IngestSummary::default();
            let mut flags = Vec::new();
            for chunk in chunks {
                let (s, f) = e.stage_flagged(chunk)?;
                sum += s;
                flags.extend(f);
            }
            e.commit()?;
            Ok((sum, flags))
        })
        .await
}

/// After a push is durable: a checkpoint once enough log built up. One that cannot be
/// written (a full disk) only makes the next open replay more of the log, as after an
/// import.
pub(crate) async fn checkpoint_if_due(state: &AppState) -> Result<(), Status> {
    state
        .blocking(|e| {
            e.checkpoint_at(CheckpointMoment::Committed);
            Ok(())
        })
        .await
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
        let mut done = Committed::default();
        loop {
            let msg = match self.next_message(&mut stream).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(s) => return Err(done.ended(s)),
            };
            // A keep-alive: nothing to commit, the stream is not idle.
            if msg.ndjson_lines.is_empty() && msg.events.is_empty() && msg.call_details.is_empty() {
                continue;
            }
            match self.commit_message(msg, &peer).await {
                Ok(sum) => {
                    done.total += sum;
                    done.messages += 1;
                }
                Err(s) => return Err(done.ended(s)),
            }
        }
        // Everything is durable.
        checkpoint_if_due(&self.state).await?;
        let Committed { total, messages } = done;
        observe::emit(observe::PushCommitted {
            source: "grpc",
            accepted: total.accepted,
            duplicate: total.duplicate,
            rejected: total.rejected,
            messages,
        });
        Ok(Response::new(pb::PushSummary {
            accepted: total.accepted,
            duplicate: total.duplicate,
            rejected: total.rejected,
            committed_messages: messages,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServeOptions;
    use crate::test_server::TestServer;
    use netwait_aggregator::store::codec::Decoder;
    use netwait_aggregator::store::embedded::EmbeddedStore;
    use netwait_aggregator::store::record::Record;
    use pb::ingest_client::IngestClient;

    const OFFERED: &str = r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#;

    fn message(lines: &[&[u8]], first_position: u64) -> pb::PushRequest {
        pb::PushRequest {
            ndjson_lines: lines.iter().map(|l| l.to_vec()).collect(),
            source: "t".into(),
            first_position,
            ..Default::default()
        }
    }

    /// Events and the positions of dead letters of a message.
    fn encoded(msg: &pb::PushRequest) -> Result<(usize, Vec<u64>), Status> {
        let chunk = encode_message(
            msg,
            "t",
            &Pseudonymizer::new([0; 32]),
            &KeyHasher::new([1; 16]),
        )?;
        let dead = Decoder::new(&chunk.bytes)
            .filter_map(|r| match r.expect("record") {
                Record::DeadLetter(d) => Some(d.position),
                Record::Event(_) | Record::Positions(_) => None,
            })
            .collect();
        Ok((chunk.events(), dead))
    }

    #[test]
    fn an_entry_holding_line_ends_is_split_like_a_file() {
        let two = format!("{{bad\r\n{OFFERED}\n");
        let msg = message(
            &[two.as_bytes(), b"", b"\n", OFFERED.as_bytes(), b"x\r"],
            10,
        );
        // Lines 10 ({bad), 11 (offered), 12 (empty entry), 13 (empty line), 14, 15 (x\r).
        assert_eq!(encoded(&msg).expect("valid"), (2, vec![10, 12, 13, 15]));
    }

    #[test]
    fn positions_do_not_wrap() {
        let last = message(&[b"{bad"], u64::MAX);
        assert_eq!(encoded(&last).expect("fits"), (0, vec![u64::MAX]));
        let over = message(&[b"{bad", b"{bad"], u64::MAX);
        let err = encoded(&over).expect_err("wraps");
        assert_eq!(err.code(), Code::InvalidArgument);
        // Lines of one entry count too.
        let over = message(&[b"{bad\n{bad"], u64::MAX);
        assert_eq!(
            encoded(&over).expect_err("wraps").code(),
            Code::InvalidArgument
        );
    }

    async fn server(options: ServeOptions) -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let server = TestServer::start_with(store, options).await;
        (dir, server)
    }

    /// A push whose messages are sent one by one; the call's result comes from `reply`.
    fn open_push(
        server: &TestServer,
    ) -> (
        tokio::sync::mpsc::Sender<pb::PushRequest>,
        tokio::task::JoinHandle<Result<pb::PushSummary, Status>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut client = IngestClient::new(server.channel.clone());
        let reply = tokio::spawn(async move {
            client
                .push(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map(Response::into_inner)
        });
        (tx, reply)
    }

    #[tokio::test]
    async fn an_idle_stream_ends_saying_what_was_committed_and_keep_alives_count_as_activity() {
        let options = ServeOptions {
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let (_dir, server) = server(options).await;
        let (tx, reply) = open_push(&server);
        tx.send(message(&[OFFERED.as_bytes()], 1))
            .await
            .expect("send");
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send(message(&[], 0)).await.expect("keep-alive");
        }
        let err = reply.await.expect("task").expect_err("idle");
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        assert!(
            err.message()
                .contains("committed before: 1 messages (accepted 1,"),
            "{err:?}"
        );
        drop(tx);
        server.stop().await;
    }

    #[tokio::test]
    async fn closing_ends_open_streams_saying_what_was_committed() {
        let (_dir, server) = server(ServeOptions::default()).await;
        let (tx, reply) = open_push(&server);
        tx.send(message(&[OFFERED.as_bytes(), b"{bad"], 1))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.state.shutdown.enter(Phase::Closing);
        let err = tokio::time::timeout(Duration::from_secs(5), reply)
            .await
            .expect("closed in time")
            .expect("task")
            .expect_err("closed");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message()
                .contains("committed before: 1 messages (accepted 1, duplicate 0, rejected 1)"),
            "{err:?}"
        );
        drop(tx);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_resource_exhausted() {
        let (_dir, server) = server(ServeOptions::default()).await;
        let mut client = IngestClient::new(server.channel.clone());
        let huge = vec![b'x'; crate::server::MAX_MESSAGE_BYTES + 1];
        let err = client
            .push(tokio_stream::iter([message(&[&huge], 1)]))
            .await
            .expect_err("too large");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        server.stop().await;
    }
}
