//! End-to-end: the operators logged in and paused survive a restart of `serve` (a
//! graceful stop, then a kill -9): the live state is rebuilt from the store's agent
//! events at start, not from zero.

mod common;

use common::{Server, http_push, live_state, now_ms};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn start(data: &Path) -> Server {
    Server::start_with(
        data,
        &["--http-listen", "127.0.0.1:0", "--calendar", "24x7"],
        Stdio::inherit(),
    )
}

/// Waits (bounded) until the live state has `logged_in` and `paused` operators; the
/// last state read.
fn operators(server: &Server, logged_in: u64, paused: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = live_state(server);
        let o = &state["operators"];
        if o["logged_in"] == logged_in && o["paused"] == paused {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "operators {o}, expected logged in {logged_in}, paused {paused}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent(kind: &str, agent: &str, ts: i64) -> String {
    format!(r#"{{"type":"{kind}","ts":{ts},"agent":"{agent}"}}"#)
}

#[test]
fn operators_logged_in_and_paused_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let t = now_ms() - 2 * 3_600_000;
    let server = start(&data);
    let answer = http_push(
        &server,
        &[
            agent("agent_login", "op1", t),
            agent("agent_login", "op2", t),
            agent("agent_pause", "op2", t + 60_000),
            agent("agent_login", "op3", t),
            agent("agent_logout", "op3", t + 120_000),
            // A late login of op3 (older than its logout): changes nothing.
            agent("agent_login", "op3", t + 30_000),
        ],
    );
    assert_eq!(answer["accepted"], 6, "{answer}");
    operators(&server, 2, 1);
    assert!(server.stop().success());

    // A graceful restart: from the checkpoint and the log.
    let server = start(&data);
    let state = operators(&server, 2, 1);
    assert_eq!(state["operators"]["busy"], 0);
    // The restarted live state goes on from there.
    http_push(&server, &[agent("agent_resume", "op2", t + 600_000)]);
    operators(&server, 2, 0);
    http_push(&server, &[agent("agent_logout", "op1", t + 700_000)]);
    operators(&server, 1, 0);
    drop(server); // kill -9

    let server = start(&data);
    operators(&server, 1, 0);
    assert!(server.stop().success());
}
