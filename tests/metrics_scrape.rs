//! End-to-end: `GET /metrics` of `netwait serve`, scraped before and after pushes and
//! parsed by `prometheus_client`'s text parser (Python, in `deploy/python`'s venv): the
//! counters moved by what was pushed, and the gauges (dead letters, the live queue per
//! line, operators, open alerts) say what the pushes made.

mod common;

use common::{Server, curl_ok, http_push, now_ms};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Sample name and sorted labels → value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Scrapes `/metrics` and parses it with prometheus_client.
fn scrape(server: &Server) -> Samples {
    parse(&curl_ok(&[&format!("{}/metrics", server.http_url())]))
}

/// Prometheus text parsed by prometheus_client.
fn parse(text: &str) -> Samples {
    let mut child = Command::new(repo().join("deploy/python"))
        .arg(repo().join("tests/tools/prom_parse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deploy/python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = Samples::new();
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        let s: serde_json::Value = serde_json::from_str(line).expect("JSON");
        let labels = s["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_owned()))
            .collect();
        let name = s["name"].as_str().expect("name").to_owned();
        samples.insert((name, labels), s["value"].as_f64().expect("value"));
    }
    samples
}

/// A sample's value; 0 when absent (a labelled counter appears with its first count).
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

#[test]
fn metrics_parse_with_prometheus_client_and_move_with_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("d"),
        &["--http-listen", "127.0.0.1:0", "--calendar", "24x7"],
        Stdio::inherit(),
    );
    let before = scrape(&server);
    assert_eq!(value(&before, "netwait_dead_letters", &[]), 0.0);
    assert_eq!(
        value(&before, "netwait_alerts_open", &[("rule", "long_wait")]),
        0.0
    );

    let now = now_ms();
    let lines = vec![
        // A caller on `cup` has waited 130 s net (announcement ended 130 s ago).
        format!(
            r#"{{"call_id":"w1","type":"offered","ts":{},"line":"cup"}}"#,
            now - 170_000
        ),
        format!(
            r#"{{"call_id":"w1","type":"announcement_end","ts":{}}}"#,
            now - 130_000
        ),
        // Another, just arrived, on `prelievi`.
        format!(
            r#"{{"call_id":"w2","type":"offered","ts":{},"line":"prelievi"}}"#,
            now - 1_000
        ),
        // Three operators log in, one pauses.
        format!(
            r#"{{"type":"agent_login","ts":{},"agent":"op1"}}"#,
            now - 3_600_000
        ),
        format!(
            r#"{{"type":"agent_login","ts":{},"agent":"op2"}}"#,
            now - 3_600_000
        ),
        format!(
            r#"{{"type":"agent_login","ts":{},"agent":"op3"}}"#,
            now - 3_600_000
        ),
        format!(
            r#"{{"type":"agent_pause","ts":{},"agent":"op3"}}"#,
            now - 60_000
        ),
        // A malformed line: a dead letter.
        "{not json".to_owned(),
    ];
    let answer = http_push(&server, &lines);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(7), Some(1)),
        "{answer}"
    );

    // The live side publishes every second and at once on an alert: wait for the alert.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let s = scrape(&server);
        if value(&s, "netwait_alerts_open", &[("rule", "long_wait")]) == 1.0
            && value(&s, "netwait_live_waiting", &[("line", "prelievi")]) == 1.0
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no long_wait alert on /metrics");
        std::thread::sleep(Duration::from_millis(200));
    };

    // Counters moved by what was pushed.
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(moved("netwait_pushed_accepted_total", &[]), 7.0);
    assert_eq!(moved("netwait_pushed_rejected_total", &[]), 1.0);
    assert_eq!(moved("netwait_pushes_committed_total", &[]), 1.0);
    assert_eq!(
        moved("netwait_accepted_events_total", &[("source", "http")]),
        7.0
    );
    assert_eq!(
        moved("netwait_rejected_total", &[("code", "invalid_json")]),
        1.0,
        "{after:?}"
    );
    assert!(moved("netwait_commits_total", &[]) >= 1.0);
    assert!(moved("netwait_store_commit_seconds_count", &[]) >= 1.0);
    assert_eq!(
        moved("netwait_alerts_raised_total", &[("rule", "long_wait")]),
        1.0
    );
    // Gauges say what is now.
    assert_eq!(value(&after, "netwait_dead_letters", &[]), 1.0);
    assert_eq!(
        value(&after, "netwait_live_waiting", &[("line", "cup")]),
        1.0
    );
    let longest = value(
        &after,
        "netwait_live_longest_wait_seconds",
        &[("line", "cup")],
    );
    assert!((130.0..200.0).contains(&longest), "longest wait {longest}");
    for (state, n) in [("logged_in", 3.0), ("paused", 1.0), ("busy", 0.0)] {
        assert_eq!(
            value(&after, "netwait_live_operators", &[("state", state)]),
            n,
            "{state}"
        );
    }
    assert_eq!(
        value(&after, "netwait_alerts_open", &[("rule", "no_operator")]),
        0.0
    );
    server.stop();
}

#[test]
fn aggregate_serves_metrics_with_the_kafka_lag_family_on_its_own_listener() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    // No broker answers there: the consumer keeps trying, /metrics answers meanwhile.
    let mut child = Command::new(common::BIN)
        .args(["aggregate", "--kafka", "127.0.0.1:9", "--topic", "t"])
        .args(["--metrics-listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("d"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn aggregate");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let addr = line
        .trim()
        .strip_prefix("netwait metrics listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    let text = curl_ok(&[&format!("http://{addr}/metrics")]);
    let samples = parse(&text);
    assert!(
        text.contains("# TYPE netwait_kafka_consumer_lag_messages gauge"),
        "{text}"
    );
    assert_eq!(value(&samples, "netwait_commits_total", &[]), 0.0);
    let _ = child.kill();
    let _ = child.wait();
}
