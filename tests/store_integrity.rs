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
    bytes.extend_from_slice(b"NWL1\xff\xff\0\0\0\0\0\0{\"call_id\"");
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
        !after.windows(6).any(|w| w == b"NWL1\xff\xff"),
        "the torn commit was not cut"
    );
}
