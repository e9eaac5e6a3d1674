//! The real servers of `deploy/` for end-to-end tests: the broker and ClickHouse named
//! by `NETWAIT_KAFKA` / `NETWAIT_CLICKHOUSE_URL` (`eval "$(deploy/up)"`), else started by
//! `deploy/up` (and left running); a broker of a test's own ([`OwnBroker`]) for tests that
//! stop or kill it; the independent Kafka client of `tests/tools/kafka_events.py`
//! (confluent-kafka); `netwait aggregate` as a process ([`Aggregator`]). Nothing is
//! skipped.

use super::{BIN, netwait, stdout};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `deploy/SCRIPT SERVER` (`up`, `down`, `kill`), its stdout; fails the test on failure.
pub fn deploy(script: &str, server: &str) -> String {
    deploy_with(script, server, &[])
}

/// `deploy/SCRIPT SERVER` with these environment variables set.
fn deploy_with(script: &str, server: &str, env: &[(&str, String)]) -> String {
    let out = Command::new(repo().join("deploy").join(script))
        .arg(server)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(repo())
        .output()
        .expect("run a deploy script");
    assert!(
        out.status.success(),
        "deploy/{script} {server} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The value `deploy/up SERVER` exports as `NAME`, or the environment's.
fn exported(name: &str, server: &str) -> String {
    if let Ok(v) = std::env::var(name)
        && !v.is_empty()
    {
        return v;
    }
    let out = deploy("up", server);
    out.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("export {name}="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("deploy/up {server} printed {out:?}"))
}

pub fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| exported("NETWAIT_KAFKA", "kafka"))
}

/// ClickHouse's URL: from the environment, else started by `deploy/up clickhouse`.
pub fn clickhouse_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| exported("NETWAIT_CLICKHOUSE_URL", "clickhouse"))
}

pub fn clickhouse() -> String {
    clickhouse_url().to_owned()
}

/// One statement over ClickHouse's HTTP interface: its answer's body.
pub fn clickhouse_sql(statement: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--data-binary",
            "@-",
            clickhouse_url(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(statement.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run curl");
    assert!(
        out.status.success(),
        "{statement}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `deploy/python tests/tools/kafka_events.py BROKER ARGS...` on the shared broker, its
/// stdout.
pub fn tool(args: &[&str]) -> String {
    tool_on(broker(), args)
}

/// `kafka_events.py` on the broker at `broker`.
pub fn tool_on(broker: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("deploy/python"))
        .arg(repo().join("tests/tools/kafka_events.py"))
        .arg(broker)
        .args(args)
        .output()
        .expect("run kafka_events.py");
    assert!(
        out.status.success(),
        "kafka_events.py {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), nanos())
}

/// A new topic of `partitions` partitions on the shared broker.
pub fn topic(partitions: u32) -> String {
    topic_on(broker(), partitions)
}

/// A new topic of `partitions` partitions on the broker at `broker`.
pub fn topic_on(broker: &str, partitions: u32) -> String {
    let t = unique("netwait-test");
    tool_on(
        broker,
        &["create", &t, "--partitions", &partitions.to_string()],
    );
    t
}

/// A database of its own on the ClickHouse server, migrated (dropped first, were it left
/// by an earlier run): the server's URL and the database's name.
pub fn fresh_database(prefix: &str) -> (String, String) {
    let url = clickhouse();
    let db = format!("{prefix}_{}", std::process::id());
    clickhouse_sql(&format!("DROP DATABASE IF EXISTS {db}"));
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    (url, db)
}

/// The arguments of `netwait aggregate` on `topic` for `group`, into `--data data`.
pub fn aggregate_args<'a>(data: &'a str, topic: &'a str, group: &'a str) -> Vec<&'a str> {
    aggregate_args_on(broker(), data, topic, group)
}

/// [`aggregate_args`] on the broker at `broker`.
pub fn aggregate_args_on<'a>(
    broker: &'a str,
    data: &'a str,
    topic: &'a str,
    group: &'a str,
) -> Vec<&'a str> {
    vec![
        "aggregate",
        "--data",
        data,
        "--kafka",
        broker,
        "--topic",
        topic,
        "--group",
        group,
    ]
}

/// `netwait aggregate ... --idle-exit 8`: consumes until the topic is quiet, then exits.
pub fn aggregate_until_idle(data: &str, topic: &str, group: &str, extra: &[&str]) -> Output {
    let mut args = aggregate_args(data, topic, group);
    args.extend_from_slice(&["--idle-exit", "8"]);
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = netwait(&args);
    eprintln!(
        "aggregate in {:?}: {}",
        started.elapsed(),
        stdout(&out).trim()
    );
    out
}

/// Asserts that `group`'s committed offsets on `topic` (at `broker`) add up to `messages`:
/// every message read was acknowledged.
pub fn assert_committed(broker: &str, topic: &str, group: &str, messages: u64) {
    let committed: serde_json::Value =
        serde_json::from_str(&tool_on(broker, &["committed", topic, group])).expect("JSON");
    let sum: i64 = committed
        .as_object()
        .expect("object")
        .values()
        .map(|v| v.as_i64().expect("offset"))
        .sum();
    assert_eq!(sum as u64, messages, "committed offsets {committed}");
}

/// A Kafka broker of a test's own, for tests that stop or kill it: restarting the shared
/// one would disturb the tests running beside them on it. Started by `deploy/up kafka`
/// with a data directory beside the shared one's (`$NETWAIT_DEPLOY_DIR-NAME`) and ports
/// 100 above the shared broker's (`NETWAIT_KAFKA_PORT`, default 19092: 19192 and 19193 in
/// CI), outside the ephemeral range as the shared ones, and one pair per shared pair (two
/// sessions with servers of their own do not meet). A broker left by a run killed midway
/// is stopped at the next start; stopped (`deploy/down`) on drop, its directory removed
/// unless the test failed (its logs stay, the path is printed).
pub struct OwnBroker {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    pub address: String,
}

impl OwnBroker {
    pub fn start(name: &str) -> Self {
        let port = |var: &str, default: u16| {
            std::env::var(var)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(default)
                + 100
        };
        let shared = std::env::var("NETWAIT_DEPLOY_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/tmp/netwait-deploy".into());
        let dir = PathBuf::from(format!("{}-{name}", shared.trim_end_matches('/')));
        let env = vec![
            ("NETWAIT_DEPLOY_DIR", dir.display().to_string()),
            (
                "NETWAIT_KAFKA_PORT",
                port("NETWAIT_KAFKA_PORT", 19092).to_string(),
            ),
            (
                "NETWAIT_KAFKA_CONTROLLER_PORT",
                port("NETWAIT_KAFKA_CONTROLLER_PORT", 19093).to_string(),
            ),
        ];
        let mut broker = Self {
            dir,
            env,
            address: String::new(),
        };
        // A fresh data directory: nothing of an earlier run (a broker it left running
        // is stopped first).
        broker.deploy("down");
        if broker.dir.exists() {
            std::fs::remove_dir_all(&broker.dir).expect("remove the old broker directory");
        }
        broker.up();
        broker
    }

    /// `deploy/SCRIPT kafka` on this broker, its stdout.
    pub fn deploy(&self, script: &str) -> String {
        deploy_with(script, "kafka", &self.env)
    }

    /// `deploy/up kafka`: started (again, on the same data), ready.
    pub fn up(&mut self) {
        let out = self.deploy("up");
        self.address = out
            .lines()
            .find_map(|l| l.strip_prefix("export NETWAIT_KAFKA="))
            .unwrap_or_else(|| panic!("deploy/up kafka printed {out:?}"))
            .to_owned();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("deploy/down"))
            .arg("kafka")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
        if std::thread::panicking() {
            eprintln!("the test's broker's data and logs: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A `netwait aggregate` process (`RUST_LOG=info`): its log collected, the partitions'
/// assignment watched for; killed on drop.
pub struct Aggregator {
    child: Child,
    log: Arc<Mutex<String>>,
    assigned: Receiver<()>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Aggregator {
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            // (NETWAIT_TEST_RUST_LOG: more of it, e.g. with NETWAIT_KAFKA_DEBUG)
            .env(
                "RUST_LOG",
                std::env::var("NETWAIT_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netwait aggregate");
        let log = Arc::new(Mutex::new(String::new()));
        let (assigned_tx, assigned) = channel();
        let stderr = child.stderr.take().expect("stderr");
        let reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("kafka partitions assigned") {
                        let _ = assigned_tx.send(());
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        Self {
            child,
            log,
            assigned,
            reader: Some(reader),
        }
    }

    /// Waits until partitions are assigned (the next assignment not waited for yet).
    pub fn wait_assigned(&self, timeout: Duration) {
        if self.assigned.recv_timeout(timeout).is_err() {
            panic!("no partitions assigned within {timeout:?}: {}", self.log());
        }
    }

    /// Waits until its stderr has a line with `what`.
    pub fn wait_log(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} within {timeout:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// Waits for it to exit (killed after `timeout`, failing the test): its status,
    /// stdout and log.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "netwait aggregate still running after {timeout:?}: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).expect("stdout");
        }
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        (status, out, self.log())
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
