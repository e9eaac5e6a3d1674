//! ClickHouse stopped during an import (killed -9, then `deploy/up clickhouse` a few
//! seconds later): the store retries with backoff, the import waits (its memory bounded
//! by the commit it holds) and finishes once the server is back, with nothing lost or
//! counted twice. The Kafka aggregator started while ClickHouse is down waits for it,
//! and when the server is killed while it consumes, it stops polling (backpressure) and
//! catches up once the server is back: the figures are the embedded import's. A test
//! binary of its own: it stops the server that the other ClickHouse tests share.

mod common;
use common::servers::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The tests of this binary stop and start the one server: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `kill -9` of the ClickHouse server `deploy/up` started.
fn kill_clickhouse() {
    deploy("kill", "clickhouse");
}

#[test]
fn clickhouse_down_during_import_loses_nothing() {
    let _one = serial();
    let url = clickhouse();
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let db = format!("nwoutage_{}", std::process::id());
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    let child = Command::new(BIN)
        .args(["import", "--clickhouse", &url, "--database", &db])
        .arg(&seed)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    // Killed (-9) while the import writes: a stop by SIGTERM lets the server finish the
    // inserts in flight, and a quiet machine imports the whole year in a few seconds.
    std::thread::sleep(Duration::from_millis(300));
    kill_clickhouse();
    std::thread::sleep(Duration::from_secs(5));
    deploy("up", "clickhouse");
    let out = child.wait_with_output().expect("import");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {err}");
    assert!(
        err.contains("retrying"),
        "the outage was seen and retried: {err}"
    );
    let t = table1(
        ["--clickhouse", &url],
        "2019-01-01",
        "2020-01-01",
        &["--database", &db],
    );
    assert_eq!(t["calls_received"].as_u64(), Some(181_795), "{t}");
    assert_eq!(t["answered"].as_u64(), Some(97_385), "{t}");
    assert_eq!(t["bookings"].as_u64(), Some(88_210), "{t}");
}

/// The resident set of process `pid` now and at its peak (kB), from /proc.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn the_aggregator_waits_for_clickhouse_down_at_start_and_during_consumption_and_counts_exactly() {
    let _one = serial();
    let url = clickhouse();
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let seed_s = seed.to_str().expect("utf-8 path");
    let lines = std::fs::read_to_string(&seed)
        .expect("seed")
        .lines()
        .count();
    let embedded = tmp.path().join("embedded");
    let embedded_s = embedded.to_str().expect("utf-8 path");
    netwait(&["import", "--data", embedded_s, seed_s]);
    let db = format!("nwoutage_kafka_{}", std::process::id());
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    let topic = topic(3);

    // Started with the server down: it waits (retrying) instead of failing.
    deploy("down", "clickhouse");
    let unused = tmp.path().join("unused");
    let group = unique("outage");
    let mut args = aggregate_args(unused.to_str().expect("path"), &topic, &group);
    args.extend_from_slice(&["--clickhouse", &url, "--database", &db, "--idle-exit", "20"]);
    let mut aggregator = Aggregator::spawn(&args);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        aggregator.running(),
        "the aggregator gave up while ClickHouse was down: {}",
        aggregator.log()
    );
    deploy("up", "clickhouse");
    // Partitions assigned within 60 s of the server's start.
    aggregator.wait_assigned(Duration::from_secs(60));

    // Events arrive while it runs (about 6 s of them); the server is killed meanwhile.
    let producer = {
        let (topic, seed) = (topic.clone(), seed_s.to_owned());
        let rate = (lines / 6).to_string();
        std::thread::spawn(move || {
            tool(&[
                "produce",
                &topic,
                &seed,
                "--lines-per-message",
                "100",
                "--rate",
                &rate,
            ])
        })
    };
    std::thread::sleep(Duration::from_millis(1_500));
    kill_clickhouse();
    std::thread::sleep(Duration::from_secs(6));
    let (rss, peak) = rss_kb(aggregator.pid());
    eprintln!("aggregator with ClickHouse down: RSS {rss} kB, peak {peak} kB");
    deploy("up", "clickhouse");
    producer.join().expect("producer");
    let (status, out, log) = aggregator.finish(Duration::from_secs(300));
    assert!(status.success(), "aggregate failed: {log}");
    assert!(
        log.contains("connecting to ClickHouse failed; retrying"),
        "the server down at start was waited for: {log}"
    );
    assert!(
        log.contains("commit failed; retrying"),
        "the outage during consumption was seen and retried: {log}"
    );
    // Backpressure: what waits is the bounded window and chunks in flight, not the topic.
    assert!(peak < 1 << 20, "peak RSS {peak} kB");
    assert_eq!(
        out.trim(),
        format!(
            "total: messages {} accepted {lines} duplicate 0 rejected 0",
            lines.div_ceil(100)
        )
    );
    let ch = ["--clickhouse", url.as_str(), "--database", db.as_str()];
    let t = table1(["--clickhouse", &url], "2019-01-01", "2020-01-01", &ch[2..]);
    let embedded_t = table1(["--data", embedded_s], "2019-01-01", "2020-01-01", &[]);
    assert_eq!(t, embedded_t);
    let mut sla = vec!["stats", "sla", "--year", "2019"];
    sla.extend_from_slice(&ch);
    assert_eq!(
        json(&sla),
        json(&["stats", "sla", "--data", embedded_s, "--year", "2019"])
    );
}
