//! `netwait push`: stream NDJSON files to a running server.

use anyhow::Context;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_ingest::lines::ChunkReader;
use netwait_proto::v1::PushRequest;
use netwait_proto::v1::ingest_client::IngestClient;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes of lines per message at most (well below the server's 64 MiB limit).
const MAX_MESSAGE_BYTES: usize = 8 << 20;

pub fn run(server: &str, batch: usize, files: &[String]) -> anyhow::Result<()> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut client =
            IngestClient::new(super::connect(server).await?).max_encoding_message_size(64 << 20);
        for name in files {
            let (tx, rx) = tokio::sync::mpsc::channel::<PushRequest>(4);
            let reader_name = name.clone();
            let batch = batch.max(1);
            // Read on a blocking thread; the bounded channel is the backpressure.
            let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let input: Box<dyn std::io::Read + Send> = if reader_name == "-" {
                    Box::new(std::io::stdin())
                } else {
                    Box::new(
                        std::fs::File::open(&reader_name)
                            .with_context(|| format!("opening {reader_name}"))?,
                    )
                };
                let mut chunks = ChunkReader::new(input, 1 << 20);
                let mut msg = PushRequest {
                    source: reader_name.clone(),
                    first_position: 1,
                    ..Default::default()
                };
                let mut bytes = 0;
                // Line numbers of the file (chunks do not number their lines).
                let mut n = 0u64;
                while let Some(chunk) = chunks.next_chunk()? {
                    for (line, _) in scan_lines(&chunk.bytes) {
                        n += 1;
                        if msg.ndjson_lines.is_empty() {
                            msg.first_position = n;
                        }
                        bytes += line.len();
                        msg.ndjson_lines.push(line.to_vec());
                        if msg.ndjson_lines.len() >= batch || bytes >= MAX_MESSAGE_BYTES {
                            let full = std::mem::replace(
                                &mut msg,
                                PushRequest {
                                    source: reader_name.clone(),
                                    ..Default::default()
                                },
                            );
                            bytes = 0;
                            if tx.blocking_send(full).is_err() {
                                return Ok(()); // the call failed; its error is reported
                            }
                        }
                    }
                }
                if !msg.ndjson_lines.is_empty() {
                    let _ = tx.blocking_send(msg);
                }
                Ok(())
            });
            let reply = client.push(ReceiverStream::new(rx)).await;
            reader.await??;
            let s = reply
                .map_err(|s| {
                    anyhow::anyhow!("push of {name} failed: {}: {}", s.code(), s.message())
                })?
                .into_inner();
            println!(
                "{name}: accepted {} duplicate {} rejected {} (messages committed {})",
                s.accepted, s.duplicate, s.rejected, s.committed_messages
            );
        }
        Ok(())
    })
}
