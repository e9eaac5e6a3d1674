//! The live side's acceptance benchmarks, against a running `netwait serve`
//! (`--calendar 24x7`, so that the time of day does not matter):
//!
//! - `alerts HOST:PORT N`: N calls one after another, each pushed so that its net wait
//!   reaches the 120 s long-wait threshold 30 ms later; a `WatchQueue` watcher notes
//!   when the `long_wait` alert reaches it, after the instant the call crossed. Then the
//!   call is answered and the watcher waits for the alert to clear. Prints p50 / p99 /
//!   max of both.
//! - `ingest HOST:PORT WATCHERS FILE`: pushes FILE (messages of 5,000 lines) while
//!   WATCHERS watchers are connected, one of which never reads its stream; prints the
//!   push's events/s.
//!
//! ```sh
//! cargo run --release --example live_watch -- alerts 127.0.0.1:50051 1000
//! cargo run --release --example live_watch -- ingest 127.0.0.1:50051 50 /tmp/march.ndjson
//! ```

use netwait_proto::v1::ingest_client::IngestClient;
use netwait_proto::v1::live_client::LiveClient;
use netwait_proto::v1::{PushRequest, QueueUpdate, WatchQueueRequest};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

const LONG_WAIT_MS: i64 = 120_000;
const LINES_PER_MESSAGE: usize = 5000;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: n {} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        ms.len(),
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

fn push_of(lines: Vec<String>, first: u64) -> PushRequest {
    PushRequest {
        ndjson_lines: lines.into_iter().map(String::into_bytes).collect(),
        source: "live_watch".into(),
        first_position: first,
        ..Default::default()
    }
}

type Channel = tonic::transport::Channel;

async fn channel(server: &str) -> Result<Channel, Box<dyn std::error::Error>> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{server}"))?
            .tcp_nodelay(true)
            .connect()
            .await?,
    )
}

/// Every update's arrival (µs) with the update, latest only.
async fn follow(
    server: &str,
) -> Result<watch::Receiver<(i64, QueueUpdate)>, Box<dyn std::error::Error>> {
    let mut stream = LiveClient::new(channel(server).await?)
        .watch_queue(WatchQueueRequest { line: None })
        .await?
        .into_inner();
    let first = stream.message().await?.ok_or("no first update")?;
    let (tx, rx) = watch::channel((now_us(), first));
    tokio::spawn(async move {
        while let Ok(Some(u)) = stream.message().await {
            let _ = tx.send((now_us(), u));
        }
    });
    Ok(rx)
}

fn long_wait_open(u: &QueueUpdate) -> bool {
    u.open_alerts.iter().any(|a| a.rule == "long_wait")
}

async fn alerts(server: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut ingest = IngestClient::new(channel(server).await?);
    let mut updates = follow(server).await?;
    let (mut raised, mut cleared) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut position = 1;
    for i in 0..n {
        let now_ms = now_us() / 1000;
        let ann_end = now_ms - LONG_WAIT_MS + 30;
        let call = format!("bench-{}-{i}", now_ms);
        let lines = vec![
            format!(
                r#"{{"call_id":"{call}","type":"offered","ts":{}}}"#,
                ann_end - 40_000
            ),
            format!(r#"{{"call_id":"{call}","type":"announcement_end","ts":{ann_end}}}"#),
        ];
        ingest
            .push(tokio_stream::iter([push_of(lines, position)]))
            .await?;
        position += 2;
        let crossing_us = (ann_end + LONG_WAIT_MS) * 1000;
        let at = wait_until(&mut updates, long_wait_open).await?;
        raised.push((at - crossing_us) as f64 / 1000.0);
        let answered_us = now_us();
        let line = format!(
            r#"{{"call_id":"{call}","type":"answered","ts":{},"agent":"op"}}"#,
            answered_us / 1000
        );
        ingest
            .push(tokio_stream::iter([push_of(vec![line], position)]))
            .await?;
        position += 1;
        let at = wait_until(&mut updates, |u| !long_wait_open(u)).await?;
        cleared.push((at - answered_us) as f64 / 1000.0);
    }
    report("long_wait raised, after the call crossed 120 s", raised);
    report("long_wait cleared, after the answer was sent", cleared);
    Ok(())
}

async fn wait_until(
    updates: &mut watch::Receiver<(i64, QueueUpdate)>,
    ok: impl Fn(&QueueUpdate) -> bool,
) -> Result<i64, Box<dyn std::error::Error>> {
    let got = tokio::time::timeout(Duration::from_secs(10), updates.wait_for(|(_, u)| ok(u)))
        .await
        .map_err(|_| "no such update within 10 s")??;
    Ok(got.0)
}

async fn ingest(
    server: &str,
    watchers: usize,
    file: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let total = lines.len();
    let messages: Vec<PushRequest> = lines
        .chunks(LINES_PER_MESSAGE)
        .enumerate()
        .map(|(i, c)| push_of(c.to_vec(), (i * LINES_PER_MESSAGE) as u64 + 1))
        .collect();
    let mut held = Vec::new();
    for w in 0..watchers {
        let mut stream = LiveClient::new(channel(server).await?)
            .watch_queue(WatchQueueRequest { line: None })
            .await?
            .into_inner();
        if w == 0 {
            held.push(stream); // never read
        } else {
            tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
        }
    }
    let mut client = IngestClient::new(channel(server).await?).max_encoding_message_size(64 << 20);
    let started = Instant::now();
    let sum = client
        .push(tokio_stream::iter(messages))
        .await?
        .into_inner();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "watchers {watchers}: {total} lines, accepted {} in {secs:.2} s = {:.0} events/s",
        sum.accepted,
        sum.accepted as f64 / secs
    );
    drop(held);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["alerts", server, n] => rt.block_on(alerts(server, n.parse()?)),
        ["ingest", server, watchers, file] => rt.block_on(ingest(server, watchers.parse()?, file)),
        _ => Err("usage: live_watch alerts HOST:PORT N | ingest HOST:PORT WATCHERS FILE".into()),
    }
}
