//! End-to-end: `[log] format` and `level` in the configuration file decide how `serve`
//! logs; the command line (`--log-format`) wins over the file.

mod common;

use common::BIN;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts `serve` on `data` with `extra` flags (no RUST_LOG), stops it with SIGTERM once
/// it listens, and returns its stderr.
fn serve_log(data: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("NETWAIT_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    assert!(line.starts_with("netwait listening on"), "{line:?}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("read stderr");
    assert!(child.wait().expect("wait").success(), "{log}");
    log
}

#[test]
fn the_configuration_sets_json_logs_and_their_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    std::fs::create_dir_all(&data).expect("mkdir");
    let config = data.join("netwait.toml");

    std::fs::write(&config, "[log]\nformat = \"json\"\nlevel = \"info\"\n").expect("write");
    let log = serve_log(&data, &[]);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "serving"),
        "{log}"
    );

    // The level from the file: warnings only, so no "serving" line; the flag's format.
    std::fs::write(&config, "[log]\nformat = \"json\"\nlevel = \"warn\"\n").expect("write");
    let log = serve_log(&data, &["--log-format", "text"]);
    assert!(!log.contains("serving"), "{log}");
    assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
    let log = serve_log(&data, &["--log-format", "text", "-v"]);
    assert!(log.contains("serving") && !log.starts_with('{'), "{log}");

    // A bad value is refused, naming the key.
    std::fs::write(&config, "[log]\nformat = \"xml\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.format"), "{err}");
}
