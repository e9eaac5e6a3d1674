//! End-to-end: the HTTP listener of `netwait serve --http-listen`, with `curl` as the
//! client (the issue asks for it; Debian's curl), against the real binary.

mod common;

use common::{Server, march_calls, netwait, table1};
use std::path::Path;
use std::process::{Command, Stdio};

/// `curl -sS` with `args`; returns (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs (Debian's curl package)");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 answer");
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("HTTP status"), body.to_owned())
}

/// POST the file `body` to `url` with `headers`; (status, parsed JSON answer).
fn post(url: &str, body: &Path, headers: &[&str]) -> (u16, serde_json::Value) {
    let data = format!("@{}", body.display());
    let mut args = vec!["-X", "POST", "--data-binary", &data];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(url);
    let (status, text) = curl(&args);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

const NDJSON: &str = "Content-Type: application/x-ndjson";

fn start(data: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--http-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start_with(data, &args, Stdio::inherit())
}

#[test]
fn acceptance_100_000_events_in_100_requests_one_malformed_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, _, _) = march_calls(25_000);
    let valid: Vec<&str> = text.lines().take(99_900).collect();
    assert_eq!(valid.len(), 99_900);
    let server = start(&dir.path().join("served"), &[]);
    let url = format!("{}/v1/events?results=problems", server.http_url());
    let mut totals = (0, 0, 0);
    for (r, part) in valid.chunks(999).enumerate() {
        // The malformed line sits at a different place in each request.
        let bad_at = r % 1000;
        let mut body = String::new();
        for (i, line) in part.iter().enumerate() {
            if i == bad_at {
                body.push_str("{\"call_id\":\"x\",\"type\":\n");
            }
            body.push_str(line);
            body.push('\n');
        }
        if bad_at >= part.len() {
            body.push_str("{\"call_id\":\"x\",\"type\":\n");
        }
        let file = dir.path().join(format!("req{r}.ndjson"));
        std::fs::write(&file, body).expect("write");
        let (status, answer) = post(&url, &file, &[NDJSON]);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["lines"], 1000, "{answer}");
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), 1, "only the malformed line: {answer}");
        assert_eq!(results[0]["status"], "rejected");
        assert_eq!(results[0]["line"], bad_at as u64 + 1, "{answer}");
        assert_eq!(results[0]["code"], "invalid_json", "{answer}");
        assert!(
            results[0]["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{answer}"
        );
        totals.0 += answer["accepted"].as_u64().expect("accepted");
        totals.1 += answer["duplicate"].as_u64().expect("duplicate");
        totals.2 += answer["rejected"].as_u64().expect("rejected");
    }
    assert_eq!(totals, (99_900, 0, 100));
    // The same valid lines imported into another directory give the same figures.
    let file = dir.path().join("valid.ndjson");
    std::fs::write(&file, valid.join("\n") + "\n").expect("write");
    let imported = dir.path().join("imported");
    netwait(&[
        "import",
        "--data",
        imported.to_str().expect("utf-8"),
        file.to_str().expect("utf-8"),
    ]);
    let served = table1(["--server", &server.url()], "2019-03-01", "2019-04-01", &[]);
    let expected = table1(
        ["--data", imported.to_str().expect("utf-8")],
        "2019-03-01",
        "2019-04-01",
        &[],
    );
    assert_eq!(served, expected);
    assert!(served["calls_received"].as_u64().expect("calls") > 20_000);
    // The 100 rejects are dead letters of their requests, with their line numbers.
    assert!(server.stop().success());
    let dead = netwait(&[
        "deadletter",
        "--data",
        dir.path().join("served").to_str().expect("utf-8"),
        "--json",
    ]);
    let dead = String::from_utf8_lossy(&dead.stdout);
    assert_eq!(dead.matches("invalid_json").count(), 100, "{dead}");
}

#[test]
fn gzip_json_array_and_a_second_push_that_only_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir.path().join("d"), &[]);
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        concat!(
            r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
            "\r\n",
            r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:01:00+01:00","agent":"x"}"#,
            "\n\n",
        ),
    )
    .expect("write");
    let status = Command::new("gzip")
        .args(["-k", events.to_str().expect("utf-8")])
        .status()
        .expect("gzip runs");
    assert!(status.success());
    let url = format!("{}/v1/events?source=pbx-1", server.http_url());
    let gz = dir.path().join("events.ndjson.gz");
    let (status, answer) = post(&url, &gz, &[NDJSON, "Content-Encoding: gzip"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["source"], "pbx-1");
    assert_eq!(
        (&answer["accepted"], &answer["rejected"]),
        (&2.into(), &1.into())
    );
    assert_eq!(answer["results"][2]["line"], 3);
    assert_eq!(answer["results"][2]["code"], "empty");
    // The same events as a JSON array (pretty-printed): duplicates, element by element.
    let array = dir.path().join("events.json");
    std::fs::write(
        &array,
        r#"[
  {"call_id": "a", "type": "offered", "ts": "2019-03-04T09:00:00+01:00"},
  {"call_id": "a",
   "type": "answered", "ts": "2019-03-04T09:01:00+01:00", "agent": "x"},
  {"call_id": "b", "type": "answered", "ts": "2019-03-04T09:01:00+01:00"},
  "not an object"
]"#,
    )
    .expect("write");
    let (status, answer) = post(&url, &array, &["Content-Type: application/json"]);
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<(u64, &str)> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "duplicate"),
            (2, "duplicate"),
            (3, "rejected"),
            (4, "rejected")
        ]
    );
    assert_eq!(answer["results"][2]["code"], "missing_field", "{answer}");
    // A JSON body that is not one array is a bad request; nothing is committed.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"[{"call_id":"c"}"#).expect("write");
    let (status, answer) = post(&url, &broken, &["Content-Type: application/json"]);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("JSON array")),
        "{answer}"
    );
    let (status, answer) = post(
        &url,
        &gz,
        &["Content-Type: application/x-www-form-urlencoded"],
    );
    assert_eq!(status, 415, "{answer}");
    let t = table1(["--server", &server.url()], "2019-03-04", "2019-03-05", &[]);
    assert_eq!(
        (&t["calls_received"], &t["answered"]),
        (&1.into(), &1.into())
    );
}

#[test]
fn a_body_over_the_limit_is_413_compressed_or_not_and_nothing_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir.path().join("d"), &["--http-max-body", "1000"]);
    let url = format!("{}/v1/events", server.http_url());
    let line = r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#;
    let big = dir.path().join("big.ndjson");
    std::fs::write(&big, format!("{line}\n").repeat(40)).expect("write");
    let (status, answer) = post(&url, &big, &[NDJSON]);
    assert_eq!(status, 413, "{answer}");
    let error = answer["error"].as_str().expect("error");
    assert!(
        error.contains("1000 bytes") && error.contains("--http-max-body"),
        "{error}"
    );
    // Small on the wire, over the limit once decompressed.
    let status = Command::new("gzip")
        .args(["-k", big.to_str().expect("utf-8")])
        .status()
        .expect("gzip runs");
    assert!(status.success());
    let gz = dir.path().join("big.ndjson.gz");
    assert!(std::fs::metadata(&gz).expect("gz").len() < 1000);
    let (status, answer) = post(&url, &gz, &[NDJSON, "Content-Encoding: gzip"]);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("decompressed")),
        "{answer}"
    );
    let small = dir.path().join("small.ndjson");
    std::fs::write(&small, format!("{line}\n")).expect("write");
    let (status, answer) = post(&url, &small, &[NDJSON]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let t = table1(["--server", &server.url()], "2019-03-04", "2019-03-05", &[]);
    // Its one `offered`, long past, is an unresolved call: the only one.
    assert_eq!(
        (&t["calls_received"], &t["unresolved"]),
        (&0.into(), &1.into()),
        "only the small request: {t}"
    );
}

#[test]
fn with_a_token_requests_without_it_or_with_another_are_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("write");
    let server = start(
        &dir.path().join("d"),
        &["--http-token-file", token_file.to_str().expect("utf-8")],
    );
    let url = format!("{}/v1/events", server.http_url());
    let body = dir.path().join("b.ndjson");
    std::fs::write(
        &body,
        r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
    )
    .expect("write");
    let (status, answer) = post(&url, &body, &[NDJSON]);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("Bearer"))
    );
    let (status, _) = post(&url, &body, &[NDJSON, "Authorization: Bearer s3cret-tokeN"]);
    assert_eq!(status, 401);
    let (status, _) = post(&url, &body, &[NDJSON, "Authorization: Bearer s3cret"]);
    assert_eq!(status, 401);
    let (status, _) = curl(&[&format!("{}/metrics", server.http_url())]);
    assert_eq!(status, 401, "metrics are behind the token too");
    let (status, answer) = post(&url, &body, &[NDJSON, "Authorization: Bearer s3cret-token"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
}

/// A counter of the Prometheus text.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn metrics_move_with_commits_and_openapi_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir.path().join("d"), &[]);
    let metrics_url = format!("{}/metrics", server.http_url());
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", &metrics_url])
        .output()
        .expect("curl");
    let before = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        before
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{before}"
    );
    let body = dir.path().join("b.ndjson");
    std::fs::write(
        &body,
        concat!(
            r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
            "\n{bad\n"
        ),
    )
    .expect("write");
    let (status, _) = post(
        &format!("{}/v1/events", server.http_url()),
        &body,
        &[NDJSON],
    );
    assert_eq!(status, 200);
    let (_, after) = curl(&[&metrics_url]);
    for (name, moved) in [
        ("netwait_commits_total", 1),
        ("netwait_committed_records_total", 2),
        ("netwait_pushes_committed_total", 1),
        ("netwait_pushed_accepted_total", 1),
        ("netwait_pushed_rejected_total", 1),
    ] {
        assert_eq!(
            counter(&after, name),
            counter(&before, name) + moved,
            "{name}: {after}"
        );
    }
    let (status, doc) = curl(&[&format!("{}/v1/openapi.json", server.http_url())]);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("JSON");
    let paths: Vec<&String> = doc["paths"].as_object().expect("paths").keys().collect();
    assert_eq!(
        paths,
        ["/metrics", "/v1/cdrs", "/v1/events", "/v1/openapi.json"]
    );
    let (status, _) = curl(&[&format!("{}/nothing", server.http_url())]);
    assert_eq!(status, 404);
}

#[test]
fn call_records_first_incomplete_then_complete_add_only_what_is_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir.path().join("d"), &[]);
    let url = format!("{}/v1/cdrs", server.http_url());
    let first = dir.path().join("first.ndjson");
    std::fs::write(
        &first,
        concat!(
            r#"{"call_id":"c1","line":"cup","offered_at":"2019-03-04T09:00:00+01:00","announcement_end_at":"2019-03-04T09:00:40+01:00"}"#,
            "\n",
            r#"{"call_id":"c2"}"#,
            "\n"
        ),
    )
    .expect("write");
    let (status, answer) = post(&url, &first, &[NDJSON]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["new_events"], 2, "{answer}");
    assert_eq!(answer["results"][1]["code"], "no_instant", "{answer}");
    let complete = dir.path().join("complete.csv");
    std::fs::write(
        &complete,
        "call_id,line,offered_at,announcement_end_at,answered_at,agent,ended_at,bookings\n\
         c1,cup,2019-03-04T09:00:00+01:00,2019-03-04T09:00:40+01:00,2019-03-04T09:01:00+01:00,a7,2019-03-04T09:05:00+01:00,book@2019-03-04T09:04:00+01:00\n",
    )
    .expect("write");
    let (status, answer) = post(&url, &complete, &["Content-Type: text/csv"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["line"], 2, "{answer}");
    assert_eq!(answer["results"][0]["new_events"], 3, "{answer}");
    assert_eq!(answer["events"]["duplicate"], 2, "{answer}");
    let (status, answer) = post(&url, &complete, &["Content-Type: text/csv"]);
    assert_eq!(status, 200);
    assert_eq!(answer["results"][0]["status"], "duplicate", "{answer}");
    let t = table1(["--server", &server.url()], "2019-03-04", "2019-03-05", &[]);
    assert_eq!(
        (&t["calls_received"], &t["answered"], &t["bookings"]),
        (&1.into(), &1.into(), &1.into()),
        "{t}"
    );
}
