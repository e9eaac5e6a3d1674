//! Ctrl-C (SIGINT) during `import`: it reports what was durably committed, exits 130,
//! and the store holds exactly that.

mod common;
use common::*;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `calls` calls of one `abandoned` event each, on weekdays of March 2019 in hours.
fn abandoned_calls(calls: u64) -> String {
    let mut out = String::new();
    let day0 = 1_551_682_800_000i64; // Monday 2019-03-04 08:00 local
    for i in 0..calls {
        let day = ((i / 3_000) % 5) as i64;
        let ts = day0 + day * 86_400_000 + (i % 3_000) as i64 * 10_000;
        let _ = writeln!(out, r#"{{"call_id":"k{i}","type":"abandoned","ts":{ts}}}"#);
    }
    out
}

#[test]
fn sigint_reports_what_was_committed_and_the_store_agrees() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let calls = 600_000;
    let file = tmp.path().join("calls.ndjson");
    std::fs::write(&file, abandoned_calls(calls)).expect("write");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf-8");
    let child = Command::new(BIN)
        .args(["import", "--data", d])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    // Once a first commit is in the log, the import is well under way.
    let log = data.join("events.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&log).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "no commit within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let out = child.wait_with_output().expect("wait");
    let (text, err) = (stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{text} {err}");
    assert!(err.contains("interrupted (SIGINT)"), "{err}");
    let counts = text
        .lines()
        .find_map(|l| l.strip_prefix("committed before the interrupt: "))
        .unwrap_or_else(|| panic!("no committed counts: {text}"));
    let n: Vec<u64> = counts.split(' ').filter_map(|w| w.parse().ok()).collect();
    let [accepted, duplicate, rejected] = n[..] else {
        panic!("{counts}")
    };
    assert_eq!((duplicate, rejected), (0, 0), "{counts}");
    assert!(
        accepted > 0 && accepted < calls,
        "stopped part way: {counts}"
    );
    // What it printed is what the store holds: each accepted event is one abandoned call.
    let t = table1(["--data", d], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(t["abandoned"], accepted, "{t}");
    assert_eq!(t["answered"], 0, "{t}");
}
