//! The real servers of `deploy/` for end-to-end tests: the broker and ClickHouse named
//! by `NETWAIT_KAFKA` / `NETWAIT_CLICKHOUSE_URL` (`eval "$(deploy/up)"`), else started by
//! `deploy/up` (and left running); the independent Kafka client of
//! `tests/tools/kafka_events.py` (confluent-kafka). Nothing is skipped.

use super::{netwait, stdout};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `deploy/SCRIPT SERVER` (`up`, `down`), its stdout; fails the test on failure.
pub fn deploy(script: &str, server: &str) -> String {
    let out = Command::new(repo().join("deploy").join(script))
        .arg(server)
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

/// `deploy/python tests/tools/kafka_events.py BROKER ARGS...`, its stdout.
pub fn tool(args: &[&str]) -> String {
    let out = Command::new(repo().join("deploy/python"))
        .arg(repo().join("tests/tools/kafka_events.py"))
        .arg(broker())
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

/// A new topic of `partitions` partitions.
pub fn topic(partitions: u32) -> String {
    let t = unique("netwait-test");
    tool(&["create", &t, "--partitions", &partitions.to_string()]);
    t
}

/// The arguments of `netwait aggregate` on `topic` for `group`, into `--data data`.
pub fn aggregate_args<'a>(data: &'a str, topic: &'a str, group: &'a str) -> Vec<&'a str> {
    vec![
        "aggregate",
        "--data",
        data,
        "--kafka",
        broker(),
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
