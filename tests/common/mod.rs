//! Helpers for end-to-end tests: run the real `netwait` binary, start a real server on
//! `127.0.0.1:0`, and read its figures back as JSON.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_netwait");

/// Runs `netwait ARGS`, failing the test with its stderr if it exits non-zero.
pub fn netwait(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netwait");
    assert!(
        out.status.success(),
        "netwait {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `netwait ARGS --json`, parsed.
pub fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = netwait(&all);
    serde_json::from_slice(&out.stdout).expect("stats --json prints one JSON object")
}

/// A `netwait serve` child process; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(data: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn netwait serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("netwait listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the seed year (gen_seed2019.py, a copy of the project's shared tool) once per
/// test binary run and returns its path.
pub fn seed_file(dir: &Path) -> PathBuf {
    let out = dir.join("seed2019.ndjson");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/gen_seed2019.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .status()
        .expect("python3 runs the seed generator");
    assert!(status.success(), "seed generator failed");
    out
}

/// `netwait stats table1 AT --from F --to T EXTRA... --json`, parsed; `at` is
/// `["--server", addr]` or `["--data", dir]`.
pub fn table1(at: [&str; 2], from: &str, to: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["stats", "table1", at[0], at[1], "--from", from, "--to", to];
    args.extend_from_slice(extra);
    json(&args)
}
