//! The real servers that `deploy/up` starts (issue 12 item 1): ClickHouse 18.16 and
//! Apache Kafka 4 on loopback.
//!
//! The servers are the ones named by `NETWAIT_KAFKA` and `NETWAIT_CLICKHOUSE_URL` when both
//! are set (`.ci/run` does `eval "$(deploy/up)"`), else `deploy/up` starts them (and
//! leaves them running: `deploy/down` stops them). Nothing is skipped: a server that
//! cannot start fails the test with `deploy/up`'s report, which ends with the server's log
//! tail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(script: &str) -> PathBuf {
    repo().join("deploy").join(script)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[derive(Debug, Clone, PartialEq)]
struct Servers {
    kafka: String,
    clickhouse: String,
}

/// `deploy/up`'s stdout: exactly its two export lines, read into their values.
fn parse_exports(stdout: &str) -> Servers {
    let mut kafka = None;
    let mut clickhouse = None;
    for line in stdout.lines() {
        match line.split_once('=') {
            Some(("export NETWAIT_KAFKA", v)) => kafka = Some(v.to_string()),
            Some(("export NETWAIT_CLICKHOUSE_URL", v)) => clickhouse = Some(v.to_string()),
            _ => panic!("deploy/up printed a line that is not one of its exports: {line:?}"),
        }
    }
    Servers {
        kafka: kafka.unwrap_or_else(|| panic!("no NETWAIT_KAFKA in {stdout:?}")),
        clickhouse: clickhouse.unwrap_or_else(|| panic!("no NETWAIT_CLICKHOUSE_URL in {stdout:?}")),
    }
}

fn up() -> Servers {
    let started = Instant::now();
    let out = run(Command::new(deploy("up")).current_dir(repo()));
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/up failed ({}) after {:?}:\n{stderr}",
        out.status,
        started.elapsed()
    );
    eprintln!("deploy/up in {:?}:\n{stderr}", started.elapsed());
    parse_exports(&text(&out.stdout))
}

/// The servers for this run: from the environment, else started once by `deploy/up`.
fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        match (
            std::env::var("NETWAIT_KAFKA"),
            std::env::var("NETWAIT_CLICKHOUSE_URL"),
        ) {
            (Ok(kafka), Ok(clickhouse)) if !kafka.is_empty() && !clickhouse.is_empty() => {
                Servers { kafka, clickhouse }
            }
            _ => up(),
        }
    })
}

/// One statement over ClickHouse's HTTP interface (POST, the statement as the body):
/// the body of a 200 answer, or the status line and body of any other.
fn clickhouse(url: &str, sql: &str) -> Result<String, String> {
    let host = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"))
        .trim_end_matches('/');
    let mut conn = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        conn,
        "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let raw = text(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {raw:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    let chunked = head.lines().any(|h| {
        h.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| format!("bad chunk in {rest:?}"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(after.get(..size).ok_or("short chunk")?);
        rest = after.get(size + 2..).ok_or("short chunk")?;
    }
}

fn ok(url: &str, sql: &str) -> String {
    clickhouse(url, sql).unwrap_or_else(|e| panic!("ClickHouse refused {sql:?}: {e}"))
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

#[test]
fn clickhouse_is_18_16_and_keeps_what_is_inserted() {
    let url = &servers().clickhouse;
    let version = ok(url, "SELECT version()");
    assert!(
        version.trim().starts_with("18.16."),
        "ClickHouse {version:?}, want 18.16.x"
    );
    assert_eq!(ok(url, "SELECT 1"), "1\n");

    // DDL in the syntax current servers take too (no old-style MergeTree(date, key, 8192)).
    ok(url, "CREATE DATABASE IF NOT EXISTS netwait_deploy_test");
    let table = format!("netwait_deploy_test.{}", unique("calls"));
    ok(
        url,
        &format!(
            "CREATE TABLE {table} (day Date, line String, answered UInt64, wait_ms UInt64) \
             ENGINE = MergeTree() PARTITION BY toYYYYMM(day) ORDER BY (line, day)"
        ),
    );
    ok(
        url,
        &format!(
            "INSERT INTO {table} FORMAT TabSeparated\n\
             2019-01-02\tcup\t10\t140000\n2019-01-02\tprelievi\t3\t1000\n\
             2019-02-01\tcup\t5\t0\n2019-02-01\tcup\t1\t7000\n"
        ),
    );
    let got = ok(
        url,
        &format!(
            "SELECT toYYYYMM(day) AS month, line, sum(answered), max(wait_ms) FROM {table} \
             GROUP BY month, line ORDER BY month, line FORMAT TabSeparated"
        ),
    );
    ok(url, &format!("DROP TABLE {table}"));
    assert_eq!(
        got,
        "201901\tcup\t10\t140000\n201901\tprelievi\t3\t1000\n201902\tcup\t6\t7000\n"
    );

    // A refused statement is an error answer, not an empty success.
    let err = clickhouse(url, "SELECT no_such_column FROM system.one").unwrap_err();
    assert!(err.contains("no_such_column"), "{err}");
}

#[test]
fn kafka_answers_metadata_and_round_trips_messages_with_a_10_mb_one() {
    let broker = &servers().kafka;
    let started = Instant::now();
    let out = run(Command::new(deploy("python"))
        .arg(repo().join("tests/tools/kafka_roundtrip.py"))
        .arg(broker)
        .args(["--count", "1000", "--big-mb", "10"]));
    assert!(
        out.status.success(),
        "round trip through {broker} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)));
    eprintln!("kafka round trip in {:?}: {report}", started.elapsed());
    assert_eq!(report["brokers"], serde_json::json!([broker]));
    assert_eq!(report["produced"], 1001);
    assert_eq!(report["consumed"], 1001);
    assert_eq!(report["committed"], 1001);
    assert_eq!(report["big_bytes"], 10 * 1024 * 1024);
}

#[test]
fn up_again_reuses_the_running_servers_even_when_called_concurrently() {
    let servers = servers();
    let calls: Vec<_> = (0..3).map(|_| std::thread::spawn(up)).collect();
    for call in calls {
        assert_eq!(&call.join().expect("deploy/up thread"), servers);
    }
    let status = run(&mut Command::new(deploy("status")));
    let report = text(&status.stdout);
    assert!(status.status.success(), "deploy/status: {report}");
    assert!(
        report.contains("kafka running") && report.contains("clickhouse running"),
        "{report}"
    );
}
