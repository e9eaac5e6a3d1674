//! Read-only opening, damage in the log (`check`, `repair`) and bounded dead letters,
//! against the real binary.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `calls` answered calls on Monday 2019-03-04 in service hours (one a minute from
/// 08:00 local), and a bad line after every 10th call.
fn events(first: u64, calls: u64) -> String {
    let mut out = String::new();
    let day0 = 1_551_682_800_000i64; // 2019-03-04T08:00+01:00
    for i in first..first + calls {
        let t = day0 + i as i64 * 60_000;
        let id = format!("c{i}");
        let _ = writeln!(out, r#"{{"call_id":"{id}","type":"offered","ts":{t}}}"#);
        let _ = writeln!(
            out,
            r#"{{"call_id":"{id}","type":"answered","ts":{},"agent":"a"}}"#,
            t + 20_000
        );
        if i % 10 == 0 {
            let _ = writeln!(out, r#"{{"call_id":"{id}","type":"bogus","ts":{t}}}"#);
        }
    }
    out
}

/// `netwait ARGS` whatever its exit status.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netwait")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all.extend(contents(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            all.insert(path, bytes);
        }
    }
    all
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write input");
    path.to_str().expect("utf-8 path").to_owned()
}

fn answered(data: &Path) -> u64 {
    let t = table1(
        ["--data", data.to_str().expect("path")],
        "2019-03-01",
        "2019-04-01",
        &[],
    );
    t["answered"].as_u64().expect("answered")
}

fn dead_letter_count(data: &Path) -> usize {
    let out = netwait(&[
        "deadletter",
        "--json",
        "--data",
        data.to_str().expect("path"),
    ]);
    stdout(&out).lines().count()
}

#[test]
fn queries_of_a_missing_store_fail_and_create_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no/such/dir");
    let m = missing.to_str().expect("path");
    for args in [
        vec![
            "stats",
            "table1",
            "--data",
            m,
            "--from",
            "2019-01-01",
            "--to",
            "2019-02-01",
        ],
        vec!["stats", "sla", "--data", m, "--year", "2019"],
        vec!["deadletter", "--data", m],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(&format!("no netwait store in {m}")),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        !tmp.path().join("no").exists(),
        "a query created directories"
    );
    // An existing directory without a store: the same, and it stays empty.
    let empty = tmp.path().to_str().expect("path");
    let out = run(&["deadletter", "--data", empty]);
    assert!(
        stderr(&out).contains("no netwait store in"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(tmp.path()).expect("list").count(), 0);
    // A file given as --data: said once, plainly, for readers and writers.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let f = file.to_str().expect("path");
    for args in [
        vec!["deadletter", "--data", f],
        vec!["import", "--data", f, f],
    ] {
        let out = run(&args);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("is a file, not a data directory"),
            "{args:?}: {err}"
        );
        assert_eq!(err.matches("a-file").count(), 1, "{err}");
    }
}

#[test]
fn queries_never_change_a_byte_even_of_a_torn_store_without_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("path");
    let a = write(tmp.path(), "a.ndjson", &events(0, 30));
    let b = write(tmp.path(), "b.ndjson", &events(30, 20));
    netwait(&["import", "--data", d, &a]);
    netwait(&["import", "--data", d, &b]);
    let check = |what: &str| {
        let before = contents(&data);
        assert_eq!(answered(&data), 50, "{what}");
        assert_eq!(dead_letter_count(&data), 5, "{what}");
        assert_eq!(
            before,
            contents(&data),
            "{what}: a query changed the directory"
        );
    };
    check("clean");
    // No usable checkpoint, and an unfinished commit at the end of the log.
    std::fs::remove_file(data.join("checkpoint.calls")).expect("rm");
    std::fs::write(data.join("checkpoint.keys"), b"garbage").expect("damage");
    let log = data.join("events.log");
    let mut bytes = std::fs::read(&log).expect("read");
    let committed = bytes.len() as u64;
    // A frame header cut short (a complete one would need the store's key).
    bytes.extend_from_slice(b"NWL2\xff\xff\0\0\0\0\0");
    std::fs::write(&log, &bytes).expect("write");
    check("torn, no checkpoint");
    // Several readers at once: a shared lock held by this test does not stop a query,
    // but stops a writer.
    let lock = std::fs::File::open(data.join("LOCK")).expect("lock file");
    lock.lock_shared().expect("shared lock");
    assert_eq!(answered(&data), 50);
    let out = run(&["import", "--data", d, &a]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in use by another netwait process"),
        "{}",
        stderr(&out)
    );
    drop(lock);
    // A copy without a lock file (a backup), read-only: queried, nothing created.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    for (path, bytes) in contents(&data) {
        if path.file_name().is_some_and(|n| n != "LOCK") {
            std::fs::write(copy.join(path.file_name().expect("name")), bytes).expect("copy");
        }
    }
    let status = Command::new("chmod")
        .args(["-R", "a-w"])
        .arg(&copy)
        .status()
        .expect("chmod");
    assert!(status.success());
    let before = contents(&copy);
    assert_eq!(answered(&copy), 50);
    assert_eq!(dead_letter_count(&copy), 5);
    assert_eq!(before, contents(&copy));
    let _ = Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&copy)
        .status();
    // A writer cuts the torn commit off, as ever (kill -9 safety).
    netwait(&["import", "--data", d, &b]);
    assert_eq!(answered(&data), 50);
    let after = std::fs::read(&log).expect("read");
    assert!(
        !after.windows(6).any(|w| w == b"NWL2\xff\xff"),
        "the torn commit was not cut"
    );
    assert!(after.len() as u64 >= committed);
}

/// Two imports (two commits: 30 calls, then 20), whose data directory is returned with
/// the log's length after the first.
fn two_commits(tmp: &Path) -> (PathBuf, u64) {
    let data = tmp.join("data");
    let d = data.to_str().expect("path");
    let a = write(tmp, "a.ndjson", &events(0, 30));
    netwait(&["import", "--data", d, &a]);
    let first = std::fs::metadata(data.join("events.log"))
        .expect("stat")
        .len();
    let b = write(tmp, "b.ndjson", &events(30, 20));
    netwait(&["import", "--data", d, &b]);
    (data, first)
}

#[test]
fn a_flipped_byte_in_the_last_commit_is_reported_never_dropped_and_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, first) = two_commits(tmp.path());
    let d = data.to_str().expect("path");
    let clean = run(&["check", "--data", d]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    assert!(
        stdout(&clean).contains("2 intact commit(s)"),
        "{}",
        stdout(&clean)
    );
    let log = data.join("events.log");
    let mut bytes = std::fs::read(&log).expect("read");
    let n = bytes.len();
    // Inside the last, acknowledged commit: the length of its last record's agent.
    bytes[n - 3] ^= 0x20;
    std::fs::write(&log, &bytes).expect("write");
    let before = contents(&data);
    let out = run(&["check", "--data", d]);
    assert!(!out.status.success(), "check passed a damaged log");
    let report = stdout(&out);
    assert!(
        report.contains(&format!("damaged: bytes {first}..{n}")),
        "{report}"
    );
    assert!(report.contains("failing its checksum"), "{report}");
    assert!(report.contains("1 commit(s) lost"), "{report}");
    assert!(stderr(&out).contains("netwait repair"), "{}", stderr(&out));
    // The checkpoint still holds the commit's figures: nothing dropped.
    assert_eq!(answered(&data), 50);
    // Without it, neither a query nor a writer drops the commit silently: both refuse.
    std::fs::remove_file(data.join("checkpoint.calls")).expect("rm");
    std::fs::remove_file(data.join("checkpoint.keys")).expect("rm");
    let before_queries = contents(&data);
    let a = tmp.path().join("a.ndjson");
    for args in [
        vec!["stats", "volume", "--data", d, "--half", "2019-H1"],
        vec!["import", "--data", d, a.to_str().expect("path")],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} opened a damaged log");
        let err = stderr(&out);
        assert!(err.contains(&format!("damaged at byte {first}")), "{err}");
        assert!(
            err.contains("netwait check") && err.contains("netwait repair"),
            "{err}"
        );
    }
    assert_eq!(
        before_queries,
        contents(&data),
        "a refused open changed the store"
    );
    assert_eq!(before.len(), before_queries.len() + 2);
    // Repair salvages the first commit, exactly, into a new directory.
    let fixed = tmp.path().join("fixed");
    let f = fixed.to_str().expect("path");
    let out = netwait(&["repair", "--data", d, "--out", f]);
    let said = stdout(&out);
    assert!(said.contains("1 intact commit(s)"), "{said}");
    assert!(
        said.contains(&format!("lost: bytes {first}..{n}")),
        "{said}"
    );
    // 41 events and dead letters, and the source positions the commit carries.
    assert!(said.contains("43 record(s) readable"), "{said}");
    assert_eq!(
        before_queries,
        contents(&data),
        "repair changed the original"
    );
    assert_eq!(answered(&fixed), 30);
    assert_eq!(dead_letter_count(&fixed), 3);
    assert!(run(&["check", "--data", f]).status.success());
    // Never in place, never over a store.
    let out = run(&["repair", "--data", d, "--out", d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn a_flipped_length_bit_is_damage_never_a_torn_tail_to_cut() {
    // Three commits; bit 0 of byte 2 of the second one's length makes its frame reach
    // past the end of the log, as an unfinished write would: it must be damage.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, first) = two_commits(tmp.path());
    let d = data.to_str().expect("path");
    let c = write(tmp.path(), "c.ndjson", &events(50, 10));
    netwait(&["import", "--data", d, &c]);
    std::fs::remove_file(data.join("checkpoint.calls")).expect("rm");
    let log = data.join("events.log");
    let mut bytes = std::fs::read(&log).expect("read");
    bytes[first as usize + 6] ^= 0x01;
    std::fs::write(&log, &bytes).expect("write");
    let out = run(&["check", "--data", d]);
    assert!(!out.status.success(), "check passed: {}", stdout(&out));
    let report = stdout(&out);
    assert!(
        report.contains(&format!("damaged: bytes {first}..")),
        "{report}"
    );
    assert!(!report.contains("torn tail"), "{report}");
    let a = tmp.path().join("a.ndjson");
    let out = run(&["import", "--data", d, a.to_str().expect("path")]);
    assert!(!out.status.success(), "a writer opened a damaged log");
    assert!(
        stderr(&out).contains(&format!("damaged at byte {first}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&log).expect("read"), bytes, "the log was cut");
    // Repair keeps the first and the third commit (the third moved to its new place).
    let fixed = tmp.path().join("fixed");
    netwait(&[
        "repair",
        "--data",
        d,
        "--out",
        fixed.to_str().expect("path"),
    ]);
    assert_eq!(answered(&fixed), 40);
    assert!(
        run(&["check", "--data", fixed.to_str().expect("path")])
            .status
            .success()
    );
}

#[test]
fn garbage_after_the_last_commit_is_damage_that_repair_drops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, _) = two_commits(tmp.path());
    let d = data.to_str().expect("path");
    let log = data.join("events.log");
    let mut bytes = std::fs::read(&log).expect("read");
    let end = bytes.len();
    bytes.extend_from_slice(b"\x01garbage garbage");
    std::fs::write(&log, &bytes).expect("write");
    let out = run(&["check", "--data", d]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains(&format!("damaged: bytes {end}..{}", end + 16)),
        "{}",
        stdout(&out)
    );
    let a = tmp.path().join("a.ndjson");
    let out = run(&["import", "--data", d, a.to_str().expect("path")]);
    assert!(!out.status.success(), "a writer opened a damaged log");
    assert!(stderr(&out).contains("netwait repair"), "{}", stderr(&out));
    let fixed = tmp.path().join("fixed");
    let said = stdout(&netwait(&[
        "repair",
        "--data",
        d,
        "--out",
        fixed.to_str().expect("path"),
    ]));
    assert!(said.contains("2 intact commit(s)"), "{said}");
    assert_eq!(answered(&fixed), 50);
    assert_eq!(dead_letter_count(&fixed), 5);
}

#[test]
fn bad_lines_sent_three_times_are_stored_once_and_long_ones_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("path");
    let mut text = events(0, 30);
    let long = format!("{{\"call_id\":\"x\",\"pad\":\"{}\"}}\n", "y".repeat(70_000));
    text.push_str(&long);
    let file = write(tmp.path(), "bad.ndjson", &text);
    for _ in 0..3 {
        let out = stdout(&netwait(&["import", "--data", d, &file]));
        assert!(out.contains("rejected 4"), "{out}");
    }
    assert_eq!(dead_letter_count(&data), 4);
    let log_size = std::fs::metadata(data.join("events.log"))
        .expect("stat")
        .len();
    assert!(
        log_size < 16 << 10,
        "the long line is not kept whole: {log_size}"
    );
    // Pushed three times, through a server restart: each dead letter once more (a
    // push names its source as the file, so the same as `import`'s).
    for round in 0..3 {
        let server = Server::start(&data);
        let out = stdout(&netwait(&["push", "--server", &server.addr, &file]));
        assert!(out.contains("rejected 4"), "round {round}: {out}");
        server.stop();
    }
    assert_eq!(dead_letter_count(&data), 4);
    let out = netwait(&["deadletter", "--json", "--data", d]);
    let last: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().expect("line")).expect("json");
    assert_eq!(last["position"], 64); // 30 calls of 2 lines, 3 bad lines, then the long one
    assert_eq!(last["truncated"], true);
    assert_eq!(last["raw_size"], long.len() as u64 - 1);
    assert_eq!(last["raw"].as_str().expect("raw").len(), 4096);
    let text = stdout(&netwait(&["deadletter", "--data", d]));
    let cut = format!("[truncated: first 4096 of {} bytes]", long.len() - 1);
    assert!(text.contains(&cut), "{text}");
}
