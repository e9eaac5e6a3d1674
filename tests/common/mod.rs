//! Helpers for end-to-end tests: run the real `netwait` binary, start a real server on
//! `127.0.0.1:0`, and read its figures back as JSON.
#![allow(dead_code)]

pub mod grafana;
pub mod queue_log;
pub mod servers;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_netwait");

/// Runs `netwait ARGS`, failing the test unless it exits non-zero saying `why` (`what`:
/// the attempt, in the failure message); its stderr.
pub fn refused(args: &[&str], what: &str, why: &str) -> String {
    let out = Command::new(BIN).args(args).output().expect("run netwait");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: not refused");
    assert!(said.contains(why), "{what}: {said}");
    said
}

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

/// `netwait deadletter --data D --json`: one object a line.
pub fn dead_letters(data: &str) -> Vec<serde_json::Value> {
    let out = netwait(&["deadletter", "--data", data, "--json"]);
    let text = stdout(&out);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(rows)) => rows,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect(),
    }
}

/// The address of the next line of a server's stdout, which starts with `prefix`
/// (`netwait listening on `).
pub fn read_listening(reader: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("read the listening line");
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
        .to_owned()
}

/// A `netwait serve` child process spawned by `cmd` (its stdout piped): the child and
/// the gRPC address it listens on.
pub fn spawn_listening(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn netwait serve");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let addr = read_listening(&mut reader, "netwait listening on ");
    (child, addr)
}

/// A `netwait serve` child process; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The HTTP listener's address, when `--http-listen` was given.
    pub http: Option<String>,
}

impl Server {
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[], Stdio::inherit())
    }

    /// `netwait serve --data DATA EXTRA...`, its log to `stderr`.
    pub fn start_with(data: &Path, extra: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn netwait serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let addr = read_listening(&mut reader, "netwait listening on ");
        let http = extra
            .contains(&"--http-listen")
            .then(|| read_listening(&mut reader, "netwait http listening on "));
        Self { child, addr, http }
    }

    /// `http://ADDR` of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!(
            "http://{}",
            self.http.as_deref().expect("started with --http-listen")
        )
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

/// Table 1 and the SLA year of 2019 through `store` (`--data D`, `--server A`, or
/// `--clickhouse U --database D`), as JSON.
pub fn year_2019(store: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let mut t = vec![
        "stats",
        "table1",
        "--from",
        "2019-01-01",
        "--to",
        "2020-01-01",
    ];
    t.extend_from_slice(store);
    let mut sla = vec!["stats", "sla", "--year", "2019"];
    sla.extend_from_slice(store);
    (json(&t), json(&sla))
}

/// Calls on weekdays of March 2019 in service hours; every 4th abandoned, the rest answered
/// with a booking. Returns the file text and (answered, abandoned).
pub fn march_calls(calls: u64) -> (String, u64, u64) {
    let mut out = String::new();
    let (mut answered, mut abandoned) = (0, 0);
    // Monday 2019-03-04 08:00 local = 07:00Z; 10 s apart, within 08:00-17:00 each day.
    let day0 = 1_551_682_800_000i64;
    for i in 0..calls {
        let day = (i / 3_000) as i64; // 3,000 calls a day, Mon..Fri only
        let week_day = day % 5;
        let weeks = day / 5;
        let anchor = day0 + (weeks * 7 + week_day) * 86_400_000 + (i % 3_000) as i64 * 10_000;
        let id = format!("k{i}");
        let _ = writeln!(
            out,
            r#"{{"call_id":"{id}","type":"offered","ts":{anchor}}}"#
        );
        let _ = writeln!(
            out,
            r#"{{"call_id":"{id}","type":"announcement_end","ts":{}}}"#,
            anchor + 40_000
        );
        if i % 4 == 0 {
            abandoned += 1;
            let _ = writeln!(
                out,
                r#"{{"call_id":"{id}","type":"abandoned","ts":{}}}"#,
                anchor + 50_000
            );
        } else {
            answered += 1;
            let _ = writeln!(
                out,
                r#"{{"call_id":"{id}","type":"answered","ts":{},"agent":"a"}}"#,
                anchor + 60_000
            );
            let _ = writeln!(
                out,
                r#"{{"call_id":"{id}","type":"booking","ts":{},"booking":"book"}}"#,
                anchor + 70_000
            );
            let _ = writeln!(
                out,
                r#"{{"call_id":"{id}","type":"ended","ts":{}}}"#,
                anchor + 90_000
            );
        }
    }
    (out, answered, abandoned)
}

/// `curl -sS -f ARGS`: its stdout (the test fails on an HTTP error).
pub fn curl_ok(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f"])
        .args(args)
        .output()
        .expect("curl runs (Debian's curl package)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `curl -X POST --data-binary @FILE -H HEADER URL`: (status, body); curl itself must
/// not fail (an HTTP error status is returned).
pub fn post_file(url: &str, body: &Path, header: &str) -> (u16, String) {
    let data = format!("@{}", body.display());
    let out = Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "--data-binary",
            &data,
            "-H",
            header,
            url,
        ])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = String::from_utf8_lossy(&out.stdout);
    let (body, code) = all.rsplit_once('\n').expect("status line");
    (code.parse().expect("HTTP status"), body.to_owned())
}

/// POSTs NDJSON `lines` to the server's `POST /v1/events`; its JSON answer.
pub fn http_push(server: &Server, lines: &[String]) -> serde_json::Value {
    let body = lines.join("\n");
    let answer = curl_ok(&[
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        &body,
        &format!("{}/v1/events?results=none", server.http_url()),
    ]);
    serde_json::from_str(&answer).expect("JSON answer")
}

/// The server's latest live state (`GET /v1/live`).
pub fn live_state(server: &Server) -> serde_json::Value {
    let body = curl_ok(&[&format!("{}/v1/live", server.http_url())]);
    serde_json::from_str(&body).expect("JSON live state")
}

/// Now, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// `netwait watch --plain --server`'s lines, as they come.
pub fn watch(server: &Server) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["watch", "--plain", "--server", &server.url()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("netwait watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The first line from `watch` that is `ok`, within 30 s.
pub fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if ok(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("netwait watch never printed {what}: {e}"),
        }
    }
}
