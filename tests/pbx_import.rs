//! `netwait import` of PBX logs and call records, end to end: the real fixtures'
//! figures (any file order, twice), their damage in the dead letters, the mapping's
//! figures on a hand-written log, call records in NDJSON and CSV.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pbx")
        .join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// (received, answered, abandoned, overflow, unresolved) of a Table 1.
fn counts(t: &serde_json::Value) -> [u64; 5] {
    [
        "calls_received",
        "answered",
        "abandoned",
        "overflow",
        "unresolved",
    ]
    .map(|k| t[k].as_u64().unwrap_or_else(|| panic!("{k} in {t}")))
}

fn dead_letter_codes(data: &Path) -> Vec<String> {
    let out = netwait(&["deadletter", "--data", s(data), "--json"]);
    stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["code"].as_str().expect("code").to_owned()
        })
        .collect()
}

#[test]
fn freepbx_rotated_logs_in_any_order_twice_give_the_calls_and_report_the_nul_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = [
        "queue_log-20221005",
        "queue_log",
        "queue_log-20220801",
        "queue_log-20220707",
        "queue_log-20220901",
    ];
    let files: Vec<PathBuf> = names
        .iter()
        .map(|n| fixture(&format!("freepbx-2022/{n}")))
        .collect();
    let data = dir.path().join("data");
    let mut args = vec!["import", "--data", s(&data), "--calendar", "24x7"];
    args.extend(files.iter().map(|f| s(f)));
    netwait(&args);
    // Again, in the other order, one by one: nothing changes.
    for f in files.iter().rev() {
        netwait(&["import", "--data", s(&data), "--format", "queue_log", s(f)]);
    }
    let at = ["--data", s(&data)];
    let t = table1(at, "2022-06-01", "2022-11-01", &["--calendar", "24x7"]);
    assert_eq!(counts(&t), [33, 3, 30, 0, 0], "{t}");
    // CONNECT holdtimes 6, 5 and 6 s (the message plays before the queue).
    assert_eq!(t["max_wait_s"], 6.0);
    // The contract's calendar keeps only the in-hours calls.
    let cup = table1(at, "2022-06-01", "2022-11-01", &[]);
    assert!(
        counts(&cup)[0] < 33 && cup["out_of_hours"].as_u64() > Some(0),
        "{cup}"
    );
    // Three NUL runs, each stored once however often the files were imported.
    assert_eq!(dead_letter_codes(&data), ["nul_bytes"; 3]);
    let listing = stdout(&netwait(&["deadletter", "--data", s(&data)]));
    assert!(
        listing.contains("queue_log-20221005:33: at byte 1284: 156 NUL bytes"),
        "{listing}"
    );
}

#[test]
fn pbxware_csv_export_is_detected_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    // The calendar from the configuration this time.
    std::fs::write(data.join("netwait.toml"), "[calendar]\nmode = \"24x7\"\n").expect("config");
    let csv = fixture("pbxware-2018/queue_log.csv");
    let at = ["--data", s(&data)];
    let mut seen = Vec::new();
    for _ in 0..2 {
        netwait(&["import", "--data", s(&data), s(&csv)]);
        let t = table1(at, "2018-11-01", "2019-01-01", &[]);
        seen.push(t.clone());
        // 108 calls queued: 93 answered, 12 abandoned, 1 timed out, 2 never resolved.
        assert_eq!(counts(&t), [106, 93, 12, 1, 2], "{t}");
    }
    assert_eq!(seen[0], seen[1]);
    assert!(dead_letter_codes(&data).is_empty());
}

/// A log written to issue 13's rules, with its figures worked out by hand from spec §2.
#[test]
fn a_written_queue_log_gives_the_spec_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(
        data.join("netwait.toml"),
        "[calendar]\nmode = \"24x7\"\n[queue_log]\nannouncement = { in_queue_s = 40 }\nqueue_lines = { \"q500\" = \"cup\" }\ndid_lines = { \"0364999\" = \"prelievi\" }\n",
    )
    .expect("config");
    // 2019-03-04 09:00:00+01:00 = 1551686400.
    let log = "\
1551686400|NONE|NONE|NONE|QUEUESTART|
1551686400|1551686395.1|q500|NONE|ENTERQUEUE||3331234567|1
1551686550|1551686395.1|q500|SIP/1|CONNECT|150|1551686545.2|3
1551686600|1551686395.1|q500|SIP/1|BLINDTRANSFER|200|1|50
1551686700|1551686700.3|q500|NONE|DID|0364999
1551686700|1551686700.3|q500|NONE|ENTERQUEUE||3331234568|1
1551686730|1551686700.3|q500|NONE|ABANDON|1|1|30
1551686800|1551686800.4|q500|NONE|FULL|
1551686900|1551686900.5|q500|NONE|JOINEMPTY|
1551687000|1551687000.6|q500|NONE|ENTERQUEUE||3331234569|1
1551687020|1551687000.6|q500|SIP/2|RINGNOANSWER|15000
1551687030|1551687000.6|q500|SIP/2|CONNECT|30|1551687025.7|5
1551687090|1551687000.6|q500|SIP/2|COMPLETEAGENT|30|60|1
1551687100|1551687000.6|q500|NONE|ENTERQUEUE||3331234569|1
";
    let file = dir.path().join("queue_log");
    std::fs::write(&file, log).expect("write");
    netwait(&["import", "--data", s(&data), s(&file)]);
    let at = ["--data", s(&data)];
    let t = table1(at, "2019-03-04", "2019-03-05", &[]);
    assert_eq!(counts(&t), [5, 2, 1, 2, 0], "{t}");
    // Net waits from the in-queue message's end: 150 - 40 = 110 s and 30 - 40 -> 0 s.
    assert_eq!(
        (
            t["answered_without_wait"].as_u64(),
            t["max_wait_s"].as_f64()
        ),
        (Some(1), Some(110.0)),
        "{t}"
    );
    assert_eq!(
        t["avg_talk_s"].as_f64(),
        Some(55.0),
        "transfer after 50 s, completion after 60 s"
    );
    let p = table1(at, "2019-03-04", "2019-03-05", &["--line", "prelievi"]);
    assert_eq!(counts(&p), [1, 0, 1, 0, 0], "the DID's line: {p}");
    // The caller number is pseudonymised, never stored in clear.
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).unwrap_or_default();
        assert!(!bytes.windows(10).any(|w| w == b"3331234567"));
    }
}

#[test]
fn call_records_in_ndjson_and_csv_count_what_is_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = dir.path().join("first.ndjson");
    std::fs::write(&first, "{\"call_id\":\"r1\",\"offered_at\":\"2019-03-04T09:00:00+01:00\",\"queued_at\":\"2019-03-04T09:00:40+01:00\"}\n{\"call_id\":\"r2\",\"line\":\"cup\"}\n").expect("write");
    let complete = dir.path().join("complete.csv");
    std::fs::write(&complete, "call_id,offered_at,queued_at,answered_at,agent,ended_at,bookings\nr1,2019-03-04T09:00:00+01:00,2019-03-04T09:00:40+01:00,2019-03-04T09:01:40+01:00,op1,2019-03-04T09:04:40+01:00,book@2019-03-04T09:02:00+01:00;book@2019-03-04T09:02:00+01:00\n").expect("write");
    let out = stdout(&netwait(&[
        "import",
        "--data",
        s(&data),
        "--format",
        "cdr",
        s(&first),
    ]));
    assert!(
        out.contains("total: accepted 2 duplicate 0 rejected 1"),
        "{out}"
    );
    let out = stdout(&netwait(&[
        "import",
        "--data",
        s(&data),
        s(&complete),
        s(&first),
    ]));
    assert!(
        out.contains("total: accepted 3 duplicate 5 rejected 1"),
        "{out}"
    );
    let t = table1(["--data", s(&data)], "2019-03-04", "2019-03-05", &[]);
    assert_eq!(counts(&t), [1, 1, 0, 0, 0], "{t}");
    assert_eq!(
        (t["max_wait_s"].as_f64(), t["bookings"].as_u64()),
        (Some(60.0), Some(1)),
        "{t}"
    );
    assert_eq!(dead_letter_codes(&data), ["no_instant"]);
}
