//! `netwait push`: stream NDJSON files to a running server.

use super::import::{refuse_rejected, warn_if_all_rejected};
use super::progress::{Bar, Tally};
use anyhow::Context;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::engine::IngestSummary;
use netwait_ingest::bom::SkipBom;
use netwait_ingest::lines::ChunkReader;
use netwait_proto::v1::PushRequest;
use netwait_proto::v1::ingest_client::IngestClient;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes of lines per message at most (well below the server's 64 MiB limit).
const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// With nothing to send for this long, an empty message keeps the stream from the
/// server's idle timeout (60 s by default).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// When a message is sent: every `batch` lines, or `flush` after its first line.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub batch: usize,
    pub flush: Duration,
}

pub fn run(
    server: &str,
    client: &super::ClientArgs,
    cadence: Cadence,
    files: &[String],
    strict: bool,
) -> anyhow::Result<()> {
    // Every input is checked before the first is pushed (each is opened again to read).
    super::inputs::open_all(files)?;
    // The counts printed are a report: a reader that goes away must not stop the push.
    crate::stdout::keep_working();
    let mut rejected = 0;
    let rt = super::runtime()?;
    let pushed = rt.block_on(async {
        let mut client = IngestClient::new(super::connect(server, client).await?)
            .max_encoding_message_size(64 << 20);
        for name in files {
            let (lines_tx, lines_rx) = mpsc::channel::<Vec<Vec<u8>>>(4);
            let reader_name = name.clone();
            let size = (name != "-")
                .then(|| std::fs::metadata(name).ok())
                .flatten()
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len());
            let bar = Bar::new(name, size, "sent");
            let reader_bar = bar.clone();
            // Read on a blocking thread; the bounded channels are the backpressure.
            let reader = tokio::task::spawn_blocking(move || {
                read_lines(&reader_name, lines_tx, &reader_bar)
            });
            let (tx, rx) = mpsc::channel::<PushRequest>(4);
            let source = super::inputs::source_name(name, name != "-");
            let batcher = tokio::spawn(batch_lines(lines_rx, tx, source, cadence));
            let reply = client.push(ReceiverStream::new(rx)).await;
            // A failed call is reported at once: its reader may be blocked on a pipe that
            // never ends (`tail -f`), so it is not waited for.
            let s = match reply {
                Ok(reply) => reply.into_inner(),
                Err(s) => {
                    bar.finish();
                    anyhow::bail!("push of {name} failed: {}: {}", s.code(), s.message());
                }
            };
            let read = reader.await;
            bar.finish();
            read??;
            batcher.await?;
            println!(
                "{name}: accepted {} duplicate {} rejected {} (messages committed {})",
                s.accepted, s.duplicate, s.rejected, s.committed_messages
            );
            let counts = IngestSummary {
                accepted: s.accepted,
                duplicate: s.duplicate,
                rejected: s.rejected,
            };
            warn_if_all_rejected(name, &counts);
            rejected += s.rejected;
        }
        anyhow::Ok(())
    });
    // Not waiting for a reader still blocked on its input (see above).
    rt.shutdown_background();
    pushed?;
    refuse_rejected(strict, rejected)
}

/// Sends the lines of `name` (`-` = stdin) in groups, as soon as a read brings whole
/// lines: a pipe fed slowly (`tail -f`) is not held back until a big chunk fills. The
/// bar counts what is handed on.
fn read_lines(name: &str, out: mpsc::Sender<Vec<Vec<u8>>>, bar: &Bar) -> anyhow::Result<()> {
    let input: Box<dyn std::io::Read + Send> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(name).with_context(|| format!("opening {name}"))?)
    };
    let mut chunks = ChunkReader::eager(SkipBom::new(input), 1 << 20);
    let (mut bytes, mut sent) = (0u64, 0u64);
    while let Some(chunk) = chunks
        .next_chunk()
        .with_context(|| format!("reading {name}"))?
    {
        let lines: Vec<_> = scan_lines(&chunk.bytes)
            .map(|l| l.bytes().to_vec())
            .collect();
        bytes += chunk.bytes.len() as u64;
        sent += lines.len() as u64;
        if out.blocking_send(lines).is_err() {
            break; // the call failed; its error is reported
        }
        // What is committed is known only from the reply at the end.
        bar.update(
            bytes,
            Tally {
                lines: sent,
                rejected: None,
            },
        );
    }
    Ok(())
}

/// Turns groups of lines into messages of [`Cadence`], numbering the lines of the input
/// from 1 (dead letters carry their line of the file).
async fn batch_lines(
    mut lines: mpsc::Receiver<Vec<Vec<u8>>>,
    out: mpsc::Sender<PushRequest>,
    source: String,
    cadence: Cadence,
) {
    let batch = cadence.batch.max(1);
    let empty = || PushRequest {
        source: source.clone(),
        ..Default::default()
    };
    let mut msg = empty();
    let mut bytes = 0;
    let mut n = 0u64;
    // When the pending message must go, and when the stream needs a keep-alive.
    let mut due: Option<Instant> = None;
    let mut idle_at = Instant::now() + KEEP_ALIVE;
    loop {
        let ready = tokio::select! {
            got = lines.recv() => match got {
                None => break,
                Some(group) => {
                    let mut full = false;
                    for line in group {
                        n += 1;
                        if msg.ndjson_lines.is_empty() {
                            msg.first_position = n;
                            due = Some(Instant::now() + cadence.flush);
                        }
                        bytes += line.len();
                        msg.ndjson_lines.push(line);
                        if msg.ndjson_lines.len() >= batch || bytes >= MAX_MESSAGE_BYTES {
                            let sent = std::mem::replace(&mut msg, empty());
                            (bytes, due) = (0, None);
                            if out.send(sent).await.is_err() {
                                return; // the call failed; its error is reported
                            }
                            full = true;
                        }
                    }
                    if full {
                        idle_at = Instant::now() + KEEP_ALIVE;
                    }
                    false
                }
            },
            () = sleep_until(due) => true,
            () = tokio::time::sleep_until(idle_at) => {
                idle_at = Instant::now() + KEEP_ALIVE;
                if out.send(empty()).await.is_err() {
                    return;
                }
                false
            }
        };
        if ready {
            let sent = std::mem::replace(&mut msg, empty());
            (bytes, due) = (0, None);
            idle_at = Instant::now() + KEEP_ALIVE;
            if out.send(sent).await.is_err() {
                return;
            }
        }
    }
    if !msg.ndjson_lines.is_empty() {
        let _ = out.send(msg).await;
    }
}

/// Resolves at `at`, never when there is none.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_go_every_batch_lines_or_after_the_flush_time() {
        let (lines_tx, lines_rx) = mpsc::channel(4);
        let (tx, mut rx) = mpsc::channel(16);
        let cadence = Cadence {
            batch: 2,
            flush: Duration::from_millis(100),
        };
        let batcher = tokio::spawn(batch_lines(lines_rx, tx, "f".into(), cadence));
        let line = |s: &str| s.as_bytes().to_vec();
        lines_tx
            .send(vec![line("1"), line("2"), line("3"), line("4"), line("5")])
            .await
            .expect("send");
        let started = Instant::now();
        let mut got = Vec::new();
        for _ in 0..3 {
            let m = rx.recv().await.expect("a message");
            got.push((m.first_position, m.ndjson_lines.len(), started.elapsed()));
        }
        let firsts: Vec<(u64, usize)> = got.iter().map(|&(p, n, _)| (p, n)).collect();
        assert_eq!(firsts, vec![(1, 2), (3, 2), (5, 1)]);
        assert!(got[1].2 < cadence.flush, "full batches go at once");
        assert!(
            got[2].2 >= cadence.flush,
            "the rest waits for the flush time"
        );
        drop(lines_tx);
        batcher.await.expect("batcher");
        assert!(rx.recv().await.is_none());
    }
}
