//! `netwait tail queue_log PATH` against a writer appending 10,000 calls, its rows in
//! time order (so that calls straddle batches, rotations and restarts): lines committed
//! within a second (seen after a `kill -9`), a logrotate rename while netwait is
//! stopped, a rename while it runs with the writer appending to the renamed file until
//! it reopens its log (as Asterisk does until `logger reload`), a copytruncate while it
//! runs, a SIGTERM, a restart; the figures equal a one-shot import of the same rows.
//! And the same log followed by `serve` itself (a `[[sources]]` entry of its
//! configuration), its figures read through the gRPC API.

mod common;

use common::queue_log::{Writer, import_rows, open_append, sigterm, tail};
use common::{BIN, Server, table1};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CALLS: u64 = 10_000;

/// Table 1 of March 2019 from a data directory.
fn figures(data: &Path) -> serde_json::Value {
    let d = data.to_str().expect("utf-8");
    table1(["--data", d], "2019-03-01", "2019-04-01", &[])
}

/// The figures of a one-shot import of `rows`.
fn imported(rows: &[String]) -> serde_json::Value {
    figures(&import_rows(rows).1)
}

#[test]
fn a_followed_log_survives_rotation_both_ways_kill_9_and_restart_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("queue_log");
    let mut w = Writer::new(CALLS);
    let mut child = tail(&data, &log, &[]);
    w.write_to(&mut open_append(&log), 25);
    // Everything written is committed within a second: kill -9 after it loses nothing.
    std::thread::sleep(Duration::from_millis(1_500));
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    assert_eq!(
        figures(&data),
        imported(w.written()),
        "committed within a second of writing"
    );
    // While stopped: more lines, then logrotate renames the file and a new one starts.
    w.write_to(&mut open_append(&log), 40);
    std::fs::rename(&log, dir.path().join("queue_log.1")).expect("rotate");
    w.write_to(&mut open_append(&log), 50);
    let child = tail(&data, &log, &[]);
    let mut old = open_append(&log);
    w.write_to(&mut old, 65);
    // Running: logrotate renames the file and creates an empty one; the writer goes on
    // appending to the renamed file until it reopens its log.
    std::fs::rename(&log, dir.path().join("queue_log.2")).expect("rotate");
    let mut new = open_append(&log);
    w.write_to(&mut old, 70);
    drop(old);
    w.write_to(&mut new, 85);
    // ... and a copytruncate, the writer going on at the start of the truncated file;
    // what was written after the last read is read from the copy. Known limit: a file
    // truncated while still queued behind the renamed one (not started yet) is read
    // from its new start, so logrotate's delay is given first (a debug build on a busy
    // machine needs a few seconds to read the rotated files).
    std::thread::sleep(Duration::from_millis(5_000));
    std::fs::copy(&log, dir.path().join("queue_log.3")).expect("copy");
    new.set_len(0).expect("truncate");
    w.write_to(&mut new, 100);
    // The restart read the rotated file again first: a debug build on a busy machine
    // needs a few seconds.
    std::thread::sleep(Duration::from_millis(5_000));
    // A clean stop: SIGTERM commits what was read.
    let out = sigterm(child);
    assert!(out.status.success(), "tail exits 0 on SIGTERM");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stopped: accepted"));
    let all = imported(&w.rows);
    assert_eq!(figures(&data), all);
    // Started again on the same file: nothing new, nothing counted twice.
    let child = tail(&data, &log, &[]);
    std::thread::sleep(Duration::from_millis(3_000));
    let out = sigterm(child);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "stopped: accepted 0 duplicate 0 rejected 0",
        "the lines before the position are context, not input"
    );
    assert_eq!(figures(&data), all);
}

/// Table 1 of March 2019 from a server, once it equals `want` (the followed log is
/// committed and published within a second of being written; a busy machine may take
/// longer: asked again for up to a minute).
fn served_figures(server: &Server, want: &serde_json::Value) -> serde_json::Value {
    let mut got = serde_json::Value::Null;
    for _ in 0..120 {
        got = table1(["--server", &server.url()], "2019-03-01", "2019-04-01", &[]);
        if got == *want {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    got
}

#[test]
fn serve_follows_the_logs_of_its_configuration_into_the_store_it_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("queue_log");
    let config = dir.path().join("netwait.toml");
    // A relative path is relative to the configuration file.
    std::fs::write(
        &config,
        "[[sources]]\nkind = \"tail\"\nformat = \"queue_log\"\npath = \"queue_log\"\n",
    )
    .expect("config");
    let cfg = config.to_str().expect("utf-8");
    let mut w = Writer::new(2_000);
    w.write_to(&mut open_append(&log), 30);
    let server = Server::start_with(&data, &["--config", cfg], Stdio::inherit());
    w.write_to(&mut open_append(&log), 60);
    let want = imported(w.written());
    assert_eq!(
        served_figures(&server, &want),
        want,
        "followed while served"
    );
    // Stopped cleanly, rotated while stopped, started again: nothing lost or counted twice.
    assert!(server.stop().success(), "serve exits 0 on SIGTERM");
    w.write_to(&mut open_append(&log), 80);
    std::fs::rename(&log, dir.path().join("queue_log.1")).expect("rotate");
    w.write_to(&mut open_append(&log), 100);
    let server = Server::start_with(&data, &["--config", cfg], Stdio::inherit());
    let want = imported(&w.rows);
    assert_eq!(served_figures(&server, &want), want, "after a restart");
    drop(server);
    // A bad entry stops serve before it serves, saying which entry and why.
    std::fs::write(
        &config,
        "[[sources]]\nkind = \"tail\"\nformat = \"queue_log\"\npath = \"queue_log\"\n[[sources]]\nkind = \"tail\"\nformat = \"queue_log\"\n",
    )
    .expect("config");
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg,
            "--data",
        ])
        .arg(&data)
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "a bad [[sources]] entry is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[[sources]] entry 2: path is missing"),
        "{err}"
    );
}
