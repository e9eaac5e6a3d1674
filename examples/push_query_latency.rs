//! Query latency while a push streams at full speed: one task pushes a file over one
//! `Ingest.Push` stream (messages of 5,000 lines, each sent as soon as the stream takes
//! it, as `netwait push` does) while another asks `GetTable1` of a period on its own
//! connection, one call after another, until the push is acknowledged. Prints the
//! push's events/s and the queries' p50 / p99 / max.
//!
//! ```sh
//! cargo run --release --example push_query_latency -- 127.0.0.1:50051 /tmp/seed2020.ndjson 2019-03-01 2019-04-01
//! ```

use netwait_proto::v1::ingest_client::IngestClient;
use netwait_proto::v1::stats_client::StatsClient;
use netwait_proto::v1::{PushRequest, Table1Request};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const LINES_PER_MESSAGE: usize = 5000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, file, from, to] = args.as_slice() else {
        return Err("usage: push_query_latency HOST:PORT FILE FROM TO".into());
    };
    let text = std::fs::read(file)?;
    let messages: Vec<PushRequest> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .chunks(LINES_PER_MESSAGE)
        .scan(1u64, |first, lines| {
            let msg = PushRequest {
                ndjson_lines: lines.iter().map(|l| l.to_vec()).collect(),
                source: "push_query_latency".into(),
                first_position: *first,
                ..Default::default()
            };
            *first += lines.len() as u64;
            Some(msg)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let url = format!("http://{server}");
        let push_channel = tonic::transport::Endpoint::from_shared(url.clone())?
            .connect()
            .await?;
        let query_channel = tonic::transport::Endpoint::from_shared(url)?
            .connect()
            .await?;
        let mut stats = StatsClient::new(query_channel);
        let request = Table1Request {
            from: from.clone(),
            to: to.clone(),
            line: None,
            threshold_s: None,
        };
        stats.get_table1(request.clone()).await?; // warm-up
        let done = Arc::new(AtomicBool::new(false));
        let pushed = Arc::clone(&done);
        let count = messages.len();
        let push = tokio::spawn(async move {
            let started = Instant::now();
            let mut ingest = IngestClient::new(push_channel)
                .max_encoding_message_size(64 << 20)
                .max_decoding_message_size(64 << 20);
            let sum = ingest.push(tokio_stream::iter(messages)).await;
            pushed.store(true, Ordering::SeqCst);
            sum.map(|s| (s.into_inner(), started.elapsed()))
        });
        let mut took = Vec::new();
        while !done.load(Ordering::SeqCst) {
            let t = Instant::now();
            stats.get_table1(request.clone()).await?;
            took.push(t.elapsed());
        }
        let (sum, elapsed) = push.await??;
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "push: {} messages, accepted {} duplicate {} in {:.2} s ({:.0} events/s)",
            count,
            sum.accepted,
            sum.duplicate,
            elapsed.as_secs_f64(),
            (sum.accepted + sum.duplicate) as f64 / elapsed.as_secs_f64()
        );
        if took.is_empty() {
            return Err("no query finished during the push".into());
        }
        println!(
            "{} GetTable1 {from}..{to} during the push: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            took.len(),
            ms(at(0.50)),
            ms(at(0.99)),
            ms(took[took.len() - 1])
        );
        Ok(())
    })
}
