//! No clear calling number reaches the data directory or a log, whatever shape the line
//! has: a corpus of hostile lines, each carrying one planted number, is imported into one
//! store and pushed (raw lines and protobuf events) into another; then every file of both
//! directories, the dead-letter listings and every log line are searched for the number.

mod common;
use common::*;
use netwait_proto::v1::ingest_client::IngestClient;
use netwait_proto::v1::{CallEvent, PushRequest, call_event::Ts};
use std::path::Path;
use std::process::Command;

const PLANTED: &str = "393331234567";
/// The planted number as the corpus writes it, with and without separators.
const WRITTEN_AS: [&str; 4] = [PLANTED, "333 123 4567", "123-4567", "3331234567"];

/// Lines that carry the planted number somewhere a caller could be.
fn hostile_corpus() -> Vec<Vec<u8>> {
    let n = format!("+{PLANTED}");
    let mut lines: Vec<Vec<u8>> = [
        // Valid events: the caller is hashed.
        format!(r#"{{"call_id":"v1","type":"offered","ts":1551690000000,"caller":"{n}"}}"#),
        format!(r#"{{"call_id":"v2","type":"offered","ts":1551690000000,"c\u0061ller":"{n}"}}"#),
        // Valid JSON, rejected for a field rule.
        format!(r#"{{"call_id":"r1","type":"offered","ts":1551690000000,"caller":{PLANTED}}}"#),
        format!(r#"{{"type":"offered","caller":{{"cc":"+39","n":"{n}"}}}}"#),
        format!(r#"{{"type":"offered","caller":["+39","{n}","x"]}}"#),
        format!(r#"{{"call_id":"r2","type":"nope","ts":0,"caller":"{n}"}}"#),
        format!(r#"{{"caller":"x","caller":"{n}"}}"#),
        format!(r#"{{"Caller":"{n}","type":1}}"#),
        format!(r#"{{"x":{{"deep":[{{"caller":"{n}"}}]}}}}"#),
        format!(r#"{{"agent":{{"caller":"{n}"}},"type":"x"}}"#),
        format!(r#"{{"{n}":1,"{n}":2}}"#),
        format!(r#"["{n}"]"#),
        format!(r#""{n}""#),
        // Not JSON.
        format!(r#"{{"type":"offered",caller:"{n}"}}"#),
        format!(r#"{{'type':'offered','caller':'{n}'}}"#),
        format!(r#"{{"type":"offered","caller":"{n}""#),
        format!(r#"{{"type":"offered","caller" "{n}"}}"#),
        format!(r#"{{"type":"offered","caller":{n}}}"#),
        format!(r#"{{"type":"x","caller":"\ud800{n}"}}"#),
        format!(r#"{{"type":"x"}} {{"caller":"{n}"}}"#),
        format!("caller={n}"),
        r#"{"type":"offered",caller:"+39 333 123 4567"}"#.to_owned(),
        r#"{'type':'offered','caller':'(333) 123-4567'}"#.to_owned(),
        format!("{{\"type\":\"x\",\"caller\":\"{n}\u{1}\"}}"),
        format!(r#"{{"type":"x","caller":"{n}",}}"#),
        format!("{{\"caller\":\"{n}\"\t,,}}"),
        format!(r#"{{"type":"x","caller":[{{"n":"{n}"}}"#),
        format!("{} {n}", "x".repeat(70_000)),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let mut not_utf8 = format!(r#"{{"type":"offered","caller":"{n}"#).into_bytes();
    not_utf8.extend_from_slice(b"\xff\xfe\"}");
    lines.push(not_utf8);
    let mut nul = b"\0\0\0".to_vec();
    nul.extend_from_slice(format!(r#"{{"caller":"{n}"}}"#).as_bytes());
    lines.push(nul);
    lines
}

/// Every file under `dir` (recursively) that holds the planted number.
fn files_with_number(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if WRITTEN_AS
                .iter()
                .any(|n| contains(&std::fs::read(&path).expect("read"), n))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Runs `netwait ARGS` with every log level on; returns stdout + stderr.
fn run_logged(args: &[&str]) -> Vec<u8> {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run netwait");
    assert!(out.status.success(), "netwait {args:?} failed");
    [out.stdout, out.stderr].concat()
}

#[test]
fn no_clear_number_under_the_data_directory_nor_in_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("hostile.ndjson");
    let corpus = hostile_corpus();
    std::fs::write(&input, corpus.join(&b"\n"[..])).expect("write corpus");
    let input = input.to_str().expect("path");

    let imported = tmp.path().join("imported");
    let imported_s = imported.to_str().expect("path");
    let mut logs = run_logged(&["import", "--data", imported_s, input]);
    logs.extend(run_logged(&["deadletter", "--data", imported_s]));
    logs.extend(run_logged(&["deadletter", "--json", "--data", imported_s]));

    let pushed = tmp.path().join("pushed");
    let server = Server::start(&pushed);
    logs.extend(run_logged(&["push", "--server", &server.addr, input]));
    let n = format!("+{PLANTED}");
    let pb = |call: &str, kind: &str| CallEvent {
        call_id: Some(call.into()),
        r#type: kind.into(),
        ts: Some(Ts::TsMs(1_551_690_000_000)),
        caller: Some(n.clone()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut ingest = IngestClient::connect(server.url()).await.expect("connect");
        let msg = PushRequest {
            // One valid, one with an unknown type, one answered without an agent.
            events: vec![pb("g1", "offered"), pb("g2", "bogus"), pb("g3", "answered")],
            source: "grpc".into(),
            first_position: 1,
            ..Default::default()
        };
        let reply = ingest
            .push(tokio_stream::iter(vec![msg]))
            .await
            .expect("push")
            .into_inner();
        assert_eq!((reply.accepted, reply.rejected), (1, 2), "{reply:?}");
    });
    drop(rt); // closes the client's connection
    assert!(server.stop().success());
    logs.extend(run_logged(&[
        "deadletter",
        "--json",
        "--data",
        pushed.to_str().expect("path"),
    ]));

    for dir in [&imported, &pushed] {
        let found = files_with_number(dir);
        assert!(found.is_empty(), "clear number stored in {found:?}");
    }
    assert!(
        !WRITTEN_AS.iter().any(|n| contains(&logs, n)),
        "clear number in output or logs: {}",
        String::from_utf8_lossy(&logs)
    );
    // The corpus did reach both stores: valid events accepted, every other line rejected.
    let listed = stdout(&netwait(&["deadletter", "--json", "--data", imported_s]));
    assert_eq!(listed.lines().count(), corpus.len() - 2, "{listed}");
    assert!(
        listed.contains("redacted:"),
        "exact caller values are hashed: {listed}"
    );
}
