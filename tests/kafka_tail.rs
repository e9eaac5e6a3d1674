//! A followed queue_log in the ingest role (issue 13 item 2), against the real broker:
//! `netwait tail --kafka` follows a log that a writer appends to, rotated while it runs
//! and while it is stopped, stopped by SIGTERM and by `kill -9` and started again
//! mid-file; `netwait aggregate` consumes the topic into an embedded store whose figures
//! equal a one-shot `netwait import` of the same rows (nothing lost, nothing counted
//! twice). The same through `serve --kafka` with a `[[sources]]` entry. A bad broker or
//! an unknown topic is a clear error at start, never a wait.
//!
//! The broker is the one named by `NETWAIT_KAFKA` (`eval "$(deploy/up)"`), else
//! `deploy/up kafka` starts it (and leaves it running). Nothing is skipped.

mod common;

use common::queue_log::{Writer, import_rows, open_append, sigterm, tail};
use common::servers::{aggregate_until_idle, broker, nanos, topic, unique};
use common::{BIN, Server, dead_letters, json, stdout, table1};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Table 1 of March 2019 and the SLA year of a data directory.
fn figures(data: &Path) -> (Value, Value) {
    let d = data.to_str().expect("utf-8");
    let t = table1(["--data", d], "2019-03-01", "2019-04-01", &[]);
    let sla = json(&["stats", "sla", "--data", d, "--year", "2019"]);
    (t, sla)
}

/// The topic consumed into a new embedded store (until quiet); its figures and the
/// aggregator's total line.
fn aggregated(dir: &Path, topic: &str) -> ((Value, Value), String) {
    let data = dir.join(unique("aggregated"));
    let out = aggregate_until_idle(data.to_str().expect("utf-8"), topic, &unique("tail"), &[]);
    (figures(&data), stdout(&out).trim().to_owned())
}

/// The ingest process's store holds no call: its events were published, not stored.
fn assert_nothing_stored(data: &Path) {
    let (t, _) = figures(data);
    assert_eq!(
        (&t["calls_received"], &t["unresolved"]),
        (&0.into(), &0.into()),
        "{t}"
    );
}

/// A line the queue_log reader refuses (too few fields), placed among the rows: it goes
/// to the ingest process's dead letters, not to the topic.
const DAMAGED: &str = "1551690000|damaged row\n";

#[test]
fn a_followed_log_through_kafka_equals_its_import_across_rotation_sigterm_and_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = dir.path().join("ingest");
    let log = dir.path().join("queue_log");
    let topic = topic(3);
    let kafka = ["--kafka", broker(), "--topic", &topic];
    let mut w = Writer::new(4_000);
    let middle = w.rows.len() / 3;
    w.rows.insert(middle, DAMAGED.to_owned());

    let mut child = tail(&ingest, &log, &kafka);
    w.write_to(&mut open_append(&log), 25);
    // Published within a second or so; then killed at once, mid-file.
    std::thread::sleep(Duration::from_millis(2_000));
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    // While stopped: more rows, a logrotate rename and a new file.
    w.write_to(&mut open_append(&log), 40);
    std::fs::rename(&log, dir.path().join("queue_log.1")).expect("rotate");
    w.write_to(&mut open_append(&log), 50);
    let child = tail(&ingest, &log, &kafka);
    let mut old = open_append(&log);
    w.write_to(&mut old, 60);
    // Running: renamed, the writer going on in the renamed file until it reopens.
    std::fs::rename(&log, dir.path().join("queue_log.2")).expect("rotate");
    let mut new = open_append(&log);
    w.write_to(&mut old, 65);
    drop(old);
    w.write_to(&mut new, 75);
    // SIGTERM mid-file: what was read is published and its position kept.
    std::thread::sleep(Duration::from_millis(3_000));
    let out = sigterm(child);
    assert!(out.status.success(), "tail --kafka exits 0 on SIGTERM");
    assert!(
        stdout(&out).starts_with("stopped: accepted"),
        "{}",
        stdout(&out)
    );
    // Rows written while stopped, then killed (-9) at random moments as it catches up
    // (it starts publishing some 0.2 to 0.6 s after it starts: killed mid-publish at
    // times, what the broker has but the position file not yet is published again).
    w.write_to(&mut new, 90);
    for round in 0..3u128 {
        let mut child = tail(&ingest, &log, &kafka);
        let wait = 150 + (nanos() / 7 + round * 619) % 900;
        std::thread::sleep(Duration::from_millis(wait as u64));
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
    }
    let child = tail(&ingest, &log, &kafka);
    w.write_to(&mut new, 100);
    std::thread::sleep(Duration::from_millis(5_000));
    let out = sigterm(child);
    assert!(out.status.success(), "tail --kafka exits 0 on SIGTERM");
    // Started again with nothing new: nothing published again (the position file).
    let child = tail(&ingest, &log, &kafka);
    std::thread::sleep(Duration::from_millis(3_000));
    let out = sigterm(child);
    assert_eq!(
        stdout(&out).trim(),
        "stopped: accepted 0 duplicate 0 rejected 0",
        "resumed at the position acknowledged"
    );
    assert!(
        ingest.join(format!("tail-positions.{topic}")).is_file(),
        "the position file of the topic"
    );

    let (import_dir, imported) = import_rows(&w.rows);
    let want = figures(&imported);
    let (got, total) = aggregated(dir.path(), &topic);
    assert_eq!(got, want, "aggregated from the topic: {total}");
    assert!(
        total.ends_with("rejected 0"),
        "only valid events published: {total}"
    );
    // The damaged row is in the ingest process's dead letters, with its reason.
    let stored = dead_letters(ingest.to_str().expect("utf-8"));
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert!(
        stored[0]["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("queue_log")),
        "{stored:#?}"
    );
    assert_eq!(
        stored[0]["code"],
        dead_letters(imported.to_str().expect("utf-8"))[0]["code"],
        "the reason of the import's"
    );
    // The events went to the topic, not to the ingest process's store.
    assert_nothing_stored(&ingest);
    drop(import_dir);
}

#[test]
fn serve_in_the_ingest_role_publishes_the_logs_of_its_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = dir.path().join("ingest");
    let log = dir.path().join("queue_log");
    let config = dir.path().join("netwait.toml");
    std::fs::write(
        &config,
        "[[sources]]\nkind = \"tail\"\nformat = \"queue_log\"\npath = \"queue_log\"\n",
    )
    .expect("config");
    let topic = topic(3);
    let args = [
        "--config",
        config.to_str().expect("utf-8"),
        "--kafka",
        broker(),
        "--topic",
        &topic,
    ];
    let mut w = Writer::new(1_500);
    w.write_to(&mut open_append(&log), 50);
    let server = Server::start_with(&ingest, &args, Stdio::inherit());
    w.write_to(&mut open_append(&log), 70);
    std::thread::sleep(Duration::from_millis(3_000));
    assert!(server.stop().success(), "serve exits 0 on SIGTERM");
    // Rotated while stopped; started again, it goes on from its position.
    w.write_to(&mut open_append(&log), 85);
    std::fs::rename(&log, dir.path().join("queue_log.1")).expect("rotate");
    w.write_to(&mut open_append(&log), 100);
    let server = Server::start_with(&ingest, &args, Stdio::inherit());
    std::thread::sleep(Duration::from_millis(5_000));
    assert!(server.stop().success(), "serve exits 0 on SIGTERM");

    let (_import_dir, imported) = import_rows(&w.rows);
    let (got, total) = aggregated(dir.path(), &topic);
    assert_eq!(
        got,
        figures(&imported),
        "aggregated from the topic: {total}"
    );
    assert_nothing_stored(&ingest);
}

/// `netwait ARGS`: it fails, within `within`; its stderr.
fn fails_within(args: &[&str], within: Duration) -> String {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run netwait");
    assert!(!out.status.success(), "netwait {args:?} fails");
    assert!(
        started.elapsed() < within,
        "it took {:?}",
        started.elapsed()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_broker_or_an_unknown_topic_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let log = dir.path().join("queue_log");
    let log = log.to_str().expect("utf-8");
    let limit = Duration::from_secs(30);
    let err = fails_within(
        &[
            "tail",
            "queue_log",
            log,
            "--data",
            data,
            "--kafka",
            "127.0.0.1:9",
            "--topic",
            "t",
        ],
        limit,
    );
    assert!(
        err.contains(
            "Kafka at 127.0.0.1:9, topic t: kafka: the brokers did not answer within 10 s"
        ),
        "{err}"
    );
    let missing = unique("netwait-missing");
    let err = fails_within(
        &[
            "tail",
            "queue_log",
            log,
            "--data",
            data,
            "--kafka",
            broker(),
            "--topic",
            &missing,
        ],
        limit,
    );
    assert!(
        err.contains(&format!("topic {missing} does not exist")),
        "{err}"
    );
    let err = fails_within(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
            "--kafka",
            broker(),
            "--topic",
            &missing,
        ],
        limit,
    );
    assert!(err.contains("does not exist"), "{err}");
}
