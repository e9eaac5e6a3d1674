//! `netwait deadletter list|replay` against the real binary, on both stores: a line
//! rejected on import, replayed after its fix, counts in the figures exactly as if it
//! had been valid; a second replay adds nothing (marked replayed; and with the marks
//! lost, dedupe still counts nothing twice); the dead letters stay listed, `--pending`
//! and `--replayed` tell them apart. On ClickHouse (the servers of `deploy/up`):
//! messages a producer sent with a wrong content type, dead letters of the aggregator,
//! listed from the database and replayed once the content type is known to be NDJSON.

mod common;
use common::servers::*;
use common::*;
use std::path::Path;
use std::process::Command;

/// `netwait deadletter ARGS --json`: one object a line.
fn listed(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["deadletter"];
    all.extend_from_slice(args);
    all.push("--json");
    stdout(&netwait(&all))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn march(at: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "stats",
        "table1",
        "--from",
        "2019-03-01",
        "--to",
        "2019-04-01",
    ];
    args.extend_from_slice(at);
    json(&args)
}

/// A bad `ts` (no offset) in the answer of call `fix-1`: without it, the call is not
/// answered.
const BAD: &str = r#"{"call_id":"fix-1","type":"answered","ts":"2019-03-05 10:01:00","agent":"a","caller":"+390364123456"}"#;
const BAD_TS: &str = "2019-03-05 10:01:00";
const FIXED_TS: &str = "2019-03-05T10:01:00+01:00";

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).expect("write");
    path.display().to_string()
}

#[test]
fn embedded_a_line_fixed_and_replayed_counts_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (calls, _, _) = march_calls(8);
    let first = [
        r#"{"call_id":"fix-1","type":"offered","ts":"2019-03-05T10:00:00+01:00","caller":"+390364123456"}"#,
        r#"{"call_id":"fix-1","type":"announcement_end","ts":"2019-03-05T10:00:40+01:00"}"#,
    ]
    .join("\n");
    let rest = r#"{"call_id":"fix-1","type":"ended","ts":"2019-03-05T10:03:00+01:00"}"#;
    let input = write(
        &t.join("in.ndjson"),
        &format!("{calls}{first}\n{BAD}\n{rest}\n"),
    );
    // What the figures are with the line right from the start.
    let good = BAD.replace(BAD_TS, FIXED_TS);
    let reference = t.join("reference");
    let r = reference.to_str().expect("path");
    netwait(&[
        "import",
        "--data",
        r,
        &write(
            &t.join("good.ndjson"),
            &format!("{calls}{first}\n{good}\n{rest}\n"),
        ),
    ]);
    let want = march(&["--data", r]);

    let data = t.join("data");
    let d = data.to_str().expect("path");
    let out = netwait(&["import", "--data", d, &input]);
    assert!(stdout(&out).contains("rejected 1"), "{}", stdout(&out));
    assert_ne!(march(&["--data", d]), want);
    let rows = listed(&["list", "--data", d]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["code"], "bad_ts");
    assert_eq!(row["replayed"], serde_json::Value::Null);
    let id = row["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32);

    // As stored it still fails: said, and nothing marked.
    let out = stdout(&netwait(&["deadletter", "replay", "--data", d]));
    assert!(out.contains("replayed: 0 dead letter(s)"), "{out}");
    assert!(out.contains("still rejected: 1 dead letter(s)"), "{out}");
    assert!(out.contains("bad_ts: `ts` is not an RFC 3339"), "{out}");
    assert_eq!(listed(&["list", "--data", d, "--pending"]).len(), 1);

    // Fixed: the listing's line, its raw corrected.
    let raw = row["raw"].as_str().expect("raw");
    assert!(
        !raw.contains("390364123456"),
        "the caller is not kept: {raw}"
    );
    let mut fixed = row.clone();
    fixed["raw"] = raw.replace(BAD_TS, FIXED_TS).into();
    let fix = write(&t.join("fixed.ndjson"), &format!("{fixed}\n"));
    let replay = |extra: &[&str]| {
        let mut args = vec!["deadletter", "replay", "--data", d];
        args.extend_from_slice(extra);
        stdout(&netwait(&args))
    };
    let dry = replay(&["--from-file", &fix, "--dry-run"]);
    assert!(
        dry.contains("would replay: 1 dead letter(s), 1 event(s)"),
        "{dry}"
    );
    assert_eq!(
        listed(&["--data", d, "--pending"]).len(),
        1,
        "dry run wrote"
    );
    let out = replay(&["--from-file", &fix]);
    assert!(
        out.contains("replayed: 1 dead letter(s) (events: accepted 1 duplicate 0)"),
        "{out}"
    );
    assert!(out.contains("already replayed: 0"), "{out}");
    assert_eq!(march(&["--data", d]), want);

    // Again: nothing more.
    let out = replay(&["--from-file", &fix]);
    assert!(out.contains("replayed: 0 dead letter(s)"), "{out}");
    assert!(out.contains("already replayed: 1 dead letter(s)"), "{out}");
    let out = replay(&[]);
    assert!(out.contains("already replayed: 1 dead letter(s)"), "{out}");
    assert_eq!(march(&["--data", d]), want);
    // The original is kept, shown replayed.
    let all = listed(&["--data", d]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], id.as_str());
    assert!(all[0]["replayed_ms"].as_i64().is_some(), "{}", all[0]);
    assert!(listed(&["list", "--data", d, "--pending"]).is_empty());
    assert_eq!(listed(&["list", "--data", d, "--replayed"]).len(), 1);
    let text = stdout(&netwait(&["deadletter", "--data", d]));
    assert!(text.contains(&format!(", id {id}, replayed ")), "{text}");
    let summary = listed(&["--data", d, "--summary"]);
    assert_eq!(summary[0]["replayed"], 1);

    // Marks lost (a replay cut short before it marked): replayed again, its event is a
    // duplicate, the figures stay.
    std::fs::remove_file(data.join("dead-letters-replayed")).expect("marks");
    let out = replay(&["--from-file", &fix]);
    assert!(
        out.contains("replayed: 1 dead letter(s) (events: accepted 0 duplicate 1)"),
        "{out}"
    );
    assert_eq!(march(&["--data", d]), want);
    // A file naming no dead letter of the store: said.
    let other = fixed.to_string().replace(&id, &"0".repeat(32));
    let stray = write(&t.join("stray.ndjson"), &format!("{other}\n"));
    let out = Command::new(BIN)
        .args(["deadletter", "replay", "--data", d, "--from-file", &stray])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 id(s) of"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn clickhouse_dead_letters_listed_and_replayed_from_the_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (calls, answered, _) = march_calls(12);
    let file = write(&t.join("calls.ndjson"), &calls);
    let lines = calls.lines().count();
    let reference = t.join("reference");
    let r = reference.to_str().expect("path");
    netwait(&["import", "--data", r, &file]);
    let want = march(&["--data", r]);
    assert_eq!(want["answered"], answered);

    let url = clickhouse();
    let db = format!("nw_replay_{}", std::process::id());
    netwait(&["migrate", "--clickhouse-url", &url, "--clickhouse-db", &db]);
    let topic = topic(1);
    // A producer that says its NDJSON is Avro: every message refused.
    tool(&[
        "produce",
        &topic,
        &file,
        "--content-type",
        "application/avro",
    ]);
    let group = unique("replay");
    let ch = [
        "--clickhouse-url",
        url.as_str(),
        "--clickhouse-db",
        db.as_str(),
    ];
    let aggregator_dir = tmp.path().join("aggregator");
    let out = aggregate_until_idle(aggregator_dir.to_str().expect("path"), &topic, &group, &ch);
    assert!(
        stdout(&out).contains(&format!("rejected {lines}")),
        "{}",
        stdout(&out)
    );
    let mut list = vec!["list"];
    list.extend_from_slice(&ch);
    let rows = listed(&list);
    assert_eq!(rows.len(), lines);
    assert!(
        rows.iter().all(|r| r["code"] == "bad_content_type"),
        "{rows:?}"
    );
    assert_eq!(march(&ch)["answered"], 0);

    // Replayed (the store chosen by --store, its URL from the environment): each
    // message's payload is validated as NDJSON, which it was.
    let replay = || {
        let out = Command::new(BIN)
            .args(["deadletter", "replay", "--store", "clickhouse"])
            .args(["--clickhouse-db", &db])
            .env("NETWAIT_CLICKHOUSE_URL", &url)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let out = replay();
    assert!(
        out.contains(&format!(
            "replayed: {lines} dead letter(s) (events: accepted {lines} duplicate 0)"
        )),
        "{out}"
    );
    assert_eq!(march(&ch), want);
    let out = replay();
    assert!(
        out.contains(&format!("already replayed: {lines} dead letter(s)")),
        "{out}"
    );
    assert!(out.contains("replayed: 0 dead letter(s)"), "{out}");
    assert_eq!(march(&ch), want);
    let mut pending = list.clone();
    pending.push("--pending");
    assert!(listed(&pending).is_empty());
    let mut summary = list.clone();
    summary.push("--summary");
    assert_eq!(listed(&summary)[0]["replayed"], lines);
    assert_eq!(listed(&list).len(), lines, "the originals stay");
}
