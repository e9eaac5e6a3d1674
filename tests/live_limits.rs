//! End-to-end: the server-wide limit on live streams (`[live] max_streams`), shared by
//! `Live.WatchQueue` and the wallboard's server-sent events: one over it is refused
//! (RESOURCE_EXHAUSTED / 503), and taken again once a stream ends.

mod common;

use common::{BIN, Server};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child whose stdout printed a first line starting with one of `first`: the stream
/// is open.
fn opened(mut child: Child, first: &[&str]) -> Child {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(first.iter().any(|f| line.starts_with(f)), "{line:?}");
    child
}

fn sse(server: &Server) -> Child {
    let url = format!("{}/v1/live/events", server.http_url());
    let child = Command::new("curl")
        .args(["-sS", "-N", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    opened(child, &["id:", "data:"])
}

/// Status of one more SSE request, and what it printed within 2 s.
fn sse_once(server: &Server) -> (u16, String) {
    let url = format!("{}/v1/live/events", server.http_url());
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "2", "-w", "\n%{http_code}", &url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn watch(server: &Server) -> Command {
    let mut c = Command::new(BIN);
    c.args(["watch", "--plain", "--server", &server.url()]);
    c
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn live_streams_over_the_server_limit_are_refused_until_one_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("netwait.toml"), "[live]\nmax_streams = 2\n").expect("config");
    let server = Server::start_with(&data, &["--http-listen", "127.0.0.1:0"], Stdio::inherit());

    let first = sse(&server);
    let second = watch(&server)
        .stdout(Stdio::piped())
        .spawn()
        .expect("netwait watch");
    let second = opened(second, &["seq "]);

    // Both kinds of stream count against the one limit.
    let (code, body) = sse_once(&server);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("max_streams"), "{body}");
    let refused = watch(&server).output().expect("netwait watch");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("ResourceExhausted"), "{err}");
    // Other requests are not streams: still answered.
    let latest = common::live_state(&server);
    assert!(latest["operators"].is_object(), "{latest}");

    // One ends (the server sees it at its next update, within a second): room again.
    stop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = sse_once(&server);
        if code == 200 {
            assert!(body.contains("data: {"), "{body}");
            break;
        }
        assert_eq!(code, 503);
        assert!(
            Instant::now() < deadline,
            "the ended stream's place was never freed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(second);
    server.stop();
}
