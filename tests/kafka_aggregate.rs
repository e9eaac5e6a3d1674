//! The aggregator role against the real broker `deploy/up` starts (issue 12 item 3):
//! events produced by an independent client (confluent-kafka, `tests/tools/kafka_events.py`)
//! and consumed by `netwait aggregate --data` give the figures of `netwait import` of the
//! same file, also when the aggregator is killed (-9) at random moments and restarted;
//! poison messages land in the store's dead letters and the dead-letter topic with their
//! topic, partition, offset and reason, and the pipeline goes on.
//!
//! The broker is the one named by `NETWAIT_KAFKA` (`eval "$(deploy/up)"`), else
//! `deploy/up kafka` starts it (and leaves it running). Nothing is skipped.

mod common;
use common::servers::*;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

/// Table 1 and the SLA year of a data directory, as JSON.
fn figures(data: &str) -> (Value, Value) {
    year_2019(&["--data", data])
}

/// The seed year imported with `netwait import`, once per test process.
fn seed() -> &'static (tempfile::TempDir, PathBuf, (Value, Value), u64) {
    static SEED: OnceLock<(tempfile::TempDir, PathBuf, (Value, Value), u64)> = OnceLock::new();
    SEED.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = seed_file(tmp.path());
        let data = tmp.path().join("imported");
        let data_s = data.to_str().expect("utf-8 path");
        netwait(&["import", "--data", data_s, file.to_str().expect("path")]);
        let lines = std::fs::read_to_string(&file)
            .expect("seed")
            .lines()
            .count() as u64;
        let figures = figures(data_s);
        (tmp, file, figures, lines)
    })
}

#[test]
fn the_seed_year_through_kafka_equals_its_import_also_after_kill_9_at_random_moments() {
    let (_tmp, file, imported, lines) = seed();
    let topic = topic(3);
    let produced: Value =
        serde_json::from_str(&tool(&["produce", &topic, file.to_str().expect("path")]))
            .expect("produce prints JSON");
    assert_eq!(produced["messages"], *lines, "one event a message");

    // A clean run.
    let tmp = tempfile::tempdir().expect("tempdir");
    let clean = tmp.path().join("clean");
    let clean_s = clean.to_str().expect("utf-8 path");
    let out = aggregate_until_idle(clean_s, &topic, &unique("clean"), &[]);
    assert_eq!(
        stdout(&out).trim(),
        format!("total: messages {lines} accepted {lines} duplicate 0 rejected 0")
    );
    assert_eq!(&figures(clean_s), imported);
    // Kafka's offsets behind the store's (here: a group that never committed; after a
    // crash between the two, the group's own): committed from the store's positions
    // even when nothing is left to read.
    let behind = unique("behind");
    let out = aggregate_until_idle(clean_s, &topic, &behind, &[]);
    assert!(stdout(&out).contains("messages 0 "), "{}", stdout(&out));
    assert_committed(broker(), &topic, &behind, *lines);

    // Killed (-9) at random moments, restarted each time; then run until caught up.
    let killed = tmp.path().join("killed");
    let killed_s = killed.to_str().expect("utf-8 path");
    let group = unique("killed");
    let mut kills = 0;
    for round in 0..4u128 {
        let mut aggregator = Aggregator::spawn(&aggregate_args(killed_s, &topic, &group));
        // Killed 0.3 to 4 s after it got its partitions (after a kill, the group waits
        // for the dead member's session to time out first).
        aggregator.wait_assigned(Duration::from_secs(60));
        let wait = 300 + (nanos() / 7 + round * 1_237) % 3_700;
        std::thread::sleep(Duration::from_millis(wait as u64));
        if aggregator.running() {
            aggregator.kill();
            kills += 1;
        }
    }
    assert!(kills >= 3, "the aggregator was killed {kills} times");
    let out = aggregate_until_idle(killed_s, &topic, &group, &[]);
    let total = stdout(&out);
    assert!(total.contains("rejected 0"), "{total}");
    assert_eq!(&figures(killed_s), imported, "after {kills} kills");
    // The offsets committed are the end of every partition: nothing is left to read.
    assert_committed(broker(), &topic, &group, *lines);
}

#[test]
fn poison_messages_land_in_the_store_and_the_dead_letter_topic_and_the_pipeline_goes_on() {
    let topic = topic(3);
    let dlt = format!("{topic}-dlt");
    let sent: Value = serde_json::from_str(&tool(&["poison", &topic])).expect("JSON");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8 path");
    let out = aggregate_until_idle(
        data_s,
        &topic,
        &unique("poison"),
        &["--dead-letter-topic", &dlt],
    );
    // 7 messages; the mixed one holds a valid event and a refused line.
    assert_eq!(
        stdout(&out).trim(),
        "total: messages 7 accepted 1 duplicate 0 rejected 7"
    );
    let want = [
        ("not_json", "invalid_json"),
        ("bad_fields", "bad_type"),
        ("missing_ts", "missing_field"),
        ("big", "too_long"),
        ("wrong_protobuf", "invalid_protobuf"),
        ("mixed", "invalid_json"),
        ("unknown_type", "bad_content_type"),
    ];
    let stored = dead_letters(data_s);
    assert_eq!(stored.len(), want.len(), "{stored:#?}");
    for (name, code) in want {
        let at = &sent[name];
        let source = format!("kafka:{topic}/{}", at["partition"]);
        let found = stored.iter().find(|d| {
            d["source"] == source.as_str() && d["position"] == at["offset"] && d["code"] == code
        });
        let found = found.unwrap_or_else(|| {
            panic!(
                "{name}: no {code} at {source}@{}: {stored:#?}",
                at["offset"]
            )
        });
        let reason = found["reason"].as_str().expect("reason");
        assert!(reason.starts_with("item "), "{name}: {reason}");
    }
    // The big one is kept cut, with its size.
    let big = stored
        .iter()
        .find(|d| d["code"] == "too_long")
        .expect("big");
    assert_eq!(big["truncated"], true);
    assert!(big["raw_size"].as_u64().expect("size") > 10 << 20);

    let copies: Vec<Value> = tool(&["read", &dlt, "--timeout", "30"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    // Every refused item has exactly one copy (the run was not interrupted).
    assert_eq!(copies.len(), want.len(), "{copies:#?}");
    for (name, code) in want {
        let at = &sent[name];
        let copy = copies
            .iter()
            .find(|c| c["key"] == name)
            .unwrap_or_else(|| panic!("{name}: no copy in the dead-letter topic: {copies:#?}"));
        let h = &copy["headers"];
        assert_eq!(h["netwait-origin-topic"], topic.as_str(), "{name}");
        assert_eq!(
            h["netwait-origin-partition"],
            at["partition"].to_string(),
            "{name}"
        );
        assert_eq!(
            h["netwait-origin-offset"],
            at["offset"].to_string(),
            "{name}"
        );
        assert_eq!(h["netwait-reject-code"], code, "{name}");
        assert!(
            !h["netwait-reject-reason"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    // The 10 MB item is copied whole (it can be fixed and produced again).
    let big = copies.iter().find(|c| c["key"] == "big").expect("big copy");
    assert!(big["size"].as_u64().expect("size") > 10 << 20);
    let mixed = copies
        .iter()
        .find(|c| c["key"] == "mixed")
        .expect("mixed copy");
    assert_eq!(mixed["value"], "not json either");
    assert_eq!(mixed["headers"]["netwait-item"], "2");
}

#[test]
fn the_ingest_role_publishes_pushes_that_the_aggregator_counts_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (calls, answered, abandoned) = march_calls(3_000);
    let file = tmp.path().join("march.ndjson");
    std::fs::write(&file, &calls).expect("write");
    let lines = calls.lines().count() as u64;
    let topic = topic(3);
    let server = Server::start_with(
        &tmp.path().join("ingest"),
        &[
            "--kafka",
            broker(),
            "--topic",
            &topic,
            "--http-listen",
            "127.0.0.1:0",
        ],
        Stdio::inherit(),
    );
    // gRPC push: answered once the broker has every record (counted as published).
    let out = netwait(&[
        "push",
        "--server",
        &server.addr,
        file.to_str().expect("path"),
    ]);
    assert!(
        stdout(&out).contains(&format!("accepted {lines} duplicate 0 rejected 0")),
        "{}",
        stdout(&out)
    );
    // The same lines again over HTTP, with a bad one: the aggregator counts each once.
    let again = tmp.path().join("again.ndjson");
    std::fs::write(&again, format!("{calls}not json\n")).expect("write");
    let url = format!("{}/v1/events", server.http_url());
    let (status, body) = post_file(&url, &again, "Content-Type: application/x-ndjson");
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!(reply["accepted"], lines + 1, "{reply}");
    let (status, _) = post_file(
        &format!("{}/v1/cdrs", server.http_url()),
        &file,
        "Content-Type: application/x-ndjson",
    );
    assert_eq!(status, 501, "call records are not taken by the ingest role");
    server.stop();

    let data = tmp.path().join("aggregated");
    let data_s = data.to_str().expect("utf-8 path");
    let out = aggregate_until_idle(data_s, &topic, &unique("ingest"), &[]);
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "total: messages {} accepted {lines} duplicate {lines} rejected 1",
            2 * lines + 1
        )
    );
    let t = table1(["--data", data_s], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(t["answered"], answered);
    assert_eq!(t["abandoned"], abandoned);
    // The same as the embedded push of the file.
    let embedded = tmp.path().join("embedded");
    netwait(&[
        "import",
        "--data",
        embedded.to_str().expect("path"),
        file.to_str().expect("path"),
    ]);
    assert_eq!(
        t,
        table1(
            ["--data", embedded.to_str().expect("path")],
            "2019-03-01",
            "2019-04-01",
            &[]
        )
    );
}

#[test]
fn the_seed_year_through_kafka_into_clickhouse_equals_its_embedded_import() {
    let (_tmp, file, imported, lines) = seed();
    let topic = topic(3);
    tool(&[
        "produce",
        &topic,
        file.to_str().expect("path"),
        "--lines-per-message",
        "1000",
    ]);
    let url = clickhouse();
    let db = format!("nwtest_kafka_{}", std::process::id());
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("unused");
    let state = tmp.path().join("state");
    let state = state.to_str().expect("utf-8 path");
    let ch = [
        "--clickhouse",
        url.as_str(),
        "--database",
        db.as_str(),
        "--state-dir",
        state,
    ];
    let group = unique("ch");
    let data = data.to_str().expect("utf-8 path");
    let out = aggregate_until_idle(data, &topic, &group, &ch);
    let total = stdout(&out);
    assert!(
        total.contains(&format!("accepted {lines} duplicate 0 rejected 0")),
        "{total}"
    );
    assert_eq!(&year_2019(&ch), imported);
    // Again: nothing new on the topic, and the open replays nothing from ClickHouse (the
    // checkpoint written when the first run stopped covers every commit).
    let log = aggregate_nothing_new(data, &topic, &group, &[], &ch);
    assert!(log.contains("checkpoints kept here"), "{log}");
    assert!(log.contains("replayed=0"), "{log}");
    assert_eq!(&year_2019(&ch), imported);
    // A new host (an empty state directory): the log is replayed in windows of 1 MiB,
    // checkpointed between, and nothing is counted again.
    let fresh = tmp.path().join("fresh-state");
    let log = aggregate_nothing_new(
        data,
        &topic,
        &group,
        &["--replay-window", "1"],
        &[
            &ch[..4],
            &["--state-dir", fresh.to_str().expect("utf-8 path")],
        ]
        .concat(),
    );
    assert!(log.contains("replaying the log in windows"), "{log}");
    assert!(log.contains("log replayed"), "{log}");
    assert_eq!(&year_2019(&ch), imported);
}

/// An aggregator run (logging at info) until idle over a topic with nothing new for its
/// store: it succeeds and counts nothing again. Returns its log.
fn aggregate_nothing_new(
    data: &str,
    topic: &str,
    group: &str,
    flags: &[&str],
    store: &[&str],
) -> String {
    let mut args = aggregate_args(data, topic, group);
    args.extend_from_slice(&["--idle-exit", "3"]);
    args.extend_from_slice(flags);
    args.extend_from_slice(store);
    let out = std::process::Command::new(BIN)
        .args(&args)
        .env("RUST_LOG", "info")
        .output()
        .expect("aggregate");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(
        stdout(&out).contains("accepted 0 duplicate 0"),
        "{}",
        stdout(&out)
    );
    log
}
