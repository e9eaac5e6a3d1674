//! `netwait deadletter` for triage, against the real binary after a real import of bad
//! lines: filters (code, source, received time), limit, per-code and per-source counts,
//! raw lines escaped and cut for a terminal, whole and exact in JSON.

mod common;
use base64::Engine as _;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

const VALID: &[u8] = br#"{"call_id":"c1","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#;
const BINARY: &[u8] = b"\x00\x01\xff\xfe{\"a\":1}\x1b[2J\x1b]0;owned\x07";

fn lines(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|l| [*l, b"\n"].concat()).collect()
}

/// Two inputs with bad lines of several kinds: `a` has binary bytes, a 70 KB line, a bad
/// type and a line that is not JSON; `b` has a JSON array and a missing field.
fn write_inputs(dir: &Path) -> (String, String) {
    let huge = [&b"{\"call_id\":\""[..], &vec![b'z'; 70_000], b"\"}"].concat();
    let a = lines(&[
        VALID,
        b"{not json",
        BINARY,
        &huge,
        br#"{"call_id":"c2","type":"nope","ts":0}"#,
    ]);
    let b = lines(&[VALID, b"[1,2]", br#"{"type":"offered"}"#]);
    let (pa, pb) = (dir.join("a.ndjson"), dir.join("b.ndjson"));
    std::fs::write(&pa, a).expect("write a");
    std::fs::write(&pb, b).expect("write b");
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();
    (s(&pa), s(&pb))
}

fn deadletter(data: &str, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(["deadletter", "--data", data])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netwait");
    assert!(
        out.status.success(),
        "deadletter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rows(data: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = args.to_vec();
    all.push("--json");
    stdout(&deadletter(data, &all))
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[test]
fn dead_letters_can_be_filtered_counted_and_read_safely() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = write_inputs(tmp.path());
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf-8");
    let before = now_rfc3339();
    netwait(&["import", "--data", d, &a]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = now_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(20));
    netwait(&["import", "--data", d, &b]);
    // Imported again: nothing is stored twice.
    netwait(&["import", "--data", d, &a, &b]);

    // Counts per code and per source.
    let summary = rows(d, &["--summary"]);
    assert_eq!(summary.len(), 1);
    let s = &summary[0];
    assert_eq!(s["total"], 6);
    assert_eq!(
        s["by_code"],
        serde_json::json!({
            "bad_type": 1, "invalid_json": 1, "missing_field": 1, "not_object": 1,
            "not_utf8": 1, "too_long": 1
        })
    );
    assert_eq!(s["by_source"], serde_json::json!({ &a: 4, &b: 2 }));
    let text = stdout(&deadletter(d, &["--summary", "--source", &b]));
    assert!(
        text.contains("by code:") && text.contains("by source:"),
        "{text}"
    );
    assert!(text.ends_with("2 dead letter(s)\n"), "{text}");

    // Filters, alone and combined; the limit says how many matched.
    let codes = |r: &[serde_json::Value]| -> Vec<String> {
        r.iter()
            .map(|v| v["code"].as_str().expect("code").to_owned())
            .collect()
    };
    assert_eq!(
        codes(&rows(d, &["--source", &b])),
        ["not_object", "missing_field"]
    );
    assert_eq!(
        codes(&rows(d, &["--code", "too_long", "--code", "bad_type"])),
        ["too_long", "bad_type"]
    );
    assert!(rows(d, &["--code", "too_long", "--source", &b]).is_empty());
    assert_eq!(rows(d, &["--limit", "2"]).len(), 2);
    let text = stdout(&deadletter(d, &["--limit", "2"]));
    assert!(
        text.ends_with("2 of 6 dead letter(s) shown (--limit)\n"),
        "{text}"
    );

    // Received time: an instant between the two imports, or a date.
    assert_eq!(rows(d, &["--since", &before]).len(), 6);
    assert_eq!(
        codes(&rows(d, &["--since", &between])),
        ["not_object", "missing_field"]
    );
    // (A date is a Rome midnight: two days on from today's UTC date is surely ahead.)
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let day = |days: i32| {
        today
            .checked_add(jiff::Span::new().days(days))
            .expect("date")
    };
    assert!(rows(d, &["--since", &day(2).to_string()]).is_empty());
    assert_eq!(rows(d, &["--since", &day(-1).to_string()]).len(), 6);
    for r in rows(d, &[]) {
        let at = r["received"].as_str().expect("a received time");
        assert!(at.as_bytes()[10] == b'T' && at.len() == 25, "{at}");
    }

    // JSON: the raw bytes whole and exact, base64 where they are not UTF-8.
    let all = rows(d, &[]);
    let binary = &all[1];
    assert_eq!(binary["code"], "not_utf8");
    assert!(binary.get("raw").is_none());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(binary["raw_base64"].as_str().expect("base64"))
        .expect("decodes");
    assert_eq!(bytes, BINARY);
    let huge = &all[2];
    assert_eq!(huge["code"], "too_long");
    assert_eq!(huge["raw_size"], 70_014);
    assert_eq!(huge["truncated"], true);
    assert_eq!(huge["raw"].as_str().expect("raw").len(), 4096);

    // Text: nothing raw reaches the terminal, long lines are cut.
    let out = deadletter(d, &[]);
    let text = String::from_utf8(out.stdout).expect("the listing is UTF-8");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the terminal: {text:?}"
    );
    assert!(
        text.contains(r#"\x00\x01\xff\xfe{"a":1}\x1b[2J\x1b]0;owned\x07"#),
        "{text}"
    );
    assert!(
        text.contains("… [200 of 4096 bytes shown] [truncated: first 4096 of 70014 bytes]"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.chars().count() < 400), "{text}");
    assert!(text.ends_with("6 dead letter(s)\n"), "{text}");

    // A filter that matches nothing says what the store has (a typo is likely).
    let out = deadletter(d, &["--code", "invalid_jsn"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no dead letter has --code invalid_jsn"),
        "{err}"
    );
    assert!(err.contains("invalid_json, missing_field"), "{err}");
    assert_eq!(stdout(&out), "0 dead letter(s)\n");
}

#[test]
fn since_refuses_what_is_not_a_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["deadletter", "--data"])
        .arg(tmp.path())
        .args(["--since", "last week"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--since") && err.contains("YYYY-MM-DD"),
        "{err}"
    );
}

/// The same file named two ways is one source: importing it again stores its dead letters
/// once, and `--source` finds them under either name.
#[test]
fn one_file_under_two_names_is_one_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("bad.ndjson"),
        "not json\n{\"type\":\"x\"}\n",
    )
    .expect("write");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("path");
    for name in ["./bad.ndjson", "bad.ndjson", "data/../bad.ndjson"] {
        let out = std::process::Command::new(BIN)
            .current_dir(tmp.path())
            .args(["import", "--data", d, name])
            .output()
            .expect("run import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .current_dir(tmp.path())
            .args(["deadletter", "--json", "--data", d])
            .args(extra)
            .output()
            .expect("run deadletter");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(listed(&[]), 2, "each dead letter once");
    assert_eq!(listed(&["--source", "./bad.ndjson"]), 2);
    assert_eq!(listed(&["--source", "no-such-source"]), 0);
}
