//! `serve` checks the whole log in the background: damage in the part the checkpoint
//! covers (which opening does not read) is reported as an ERROR, and serving goes on.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A store of `calls` calls imported (the import ends with a checkpoint covering every
/// commit); returns its directory and the answered calls.
fn imported(tmp: &Path, calls: u64) -> (PathBuf, u64) {
    let (text, answered, _) = march_calls(calls);
    let file = tmp.join("calls.ndjson");
    std::fs::write(&file, text).expect("write");
    let data = tmp.join("data");
    netwait(&[
        "import",
        "--data",
        data.to_str().expect("utf-8"),
        file.to_str().expect("utf-8"),
    ]);
    (data, answered)
}

/// `netwait serve` on `data` with `RUST_LOG=info`: the server (killed on drop), and its
/// log lines as they come.
fn serve(data: &Path) -> (Server, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netwait serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = line
        .trim()
        .strip_prefix("netwait listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (
        Server {
            child,
            addr,
            http: None,
        },
        rx,
    )
}

/// The first log line holding `what` (within 20 s), and every line before it.
fn wait_for(log: &mpsc::Receiver<String>, what: &str) -> (String, Vec<String>) {
    let mut before = Vec::new();
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line with {what:?} within 20 s: {before:?}"));
        if line.contains(what) {
            return (line, before);
        }
        before.push(line);
    }
}

#[test]
fn damage_under_the_checkpoint_is_reported_while_serving_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, answered) = imported(tmp.path(), 300);
    let d = data.to_str().expect("utf-8");
    let log = data.join("events.log");
    let mut bytes = std::fs::read(&log).expect("read log");
    bytes[100] ^= 0x40; // inside the first commit's payload
    std::fs::write(&log, &bytes).expect("write log");

    let (server, log) = serve(&data);
    let (error, _) = wait_for(&log, "is damaged");
    assert!(error.contains("ERROR"), "{error}");
    assert!(
        error.contains("bytes 0.."),
        "the damaged region's positions: {error}"
    );
    assert!(
        error.contains(&format!("netwait check --data {d}"))
            && error.contains(&format!("netwait repair --data {d} --out NEWDIR")),
        "{error}"
    );
    // Still serving, from the checkpoint: every call counted.
    let t = table1(["--server", &server.addr], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(t["answered"], answered, "{t}");
    assert!(server.stop().success());
}

#[test]
fn an_intact_log_is_checked_without_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (data, _) = imported(tmp.path(), 50);
    let (server, log) = serve(&data);
    let (done, before) = wait_for(&log, "log checked: no damage");
    assert!(done.contains("commits=1"), "{done}");
    assert!(!before.iter().any(|l| l.contains("ERROR")), "{before:?}");
    assert!(server.stop().success());
}
