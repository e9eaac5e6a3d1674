//! `kill -9` of `serve` during a `push`, restart, push the same file again: the figures
//! are exact (nothing acknowledged lost, nothing counted twice).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn kill_9_during_push_then_push_again_is_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (text, answered, abandoned) = march_calls(60_000);
    let file = tmp.path().join("events.ndjson");
    std::fs::write(&file, &text).expect("write events");
    let file_s = file.to_str().expect("path");
    let data = tmp.path().join("data");

    let mut server = Server::start(&data);
    let mut push = Command::new(BIN)
        .args(["push", "--batch", "500", "--server", &server.addr, file_s])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn push");
    // Wait until part of the file is durably in the log, then kill -9 the server.
    let log = data.join("events.log");
    let started = Instant::now();
    loop {
        let len = std::fs::metadata(&log).map_or(0, |m| m.len());
        if len > 300_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "push made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    let push_status = push.wait().expect("push exits");
    assert!(
        !push_status.success(),
        "the interrupted push must report failure"
    );
    drop(server);

    let server = Server::start(&data);
    netwait(&["push", "--server", &server.addr, file_s]);
    let t = table1(["--server", &server.addr], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(t["answered"], answered);
    assert_eq!(t["abandoned"], abandoned);
    assert_eq!(t["bookings"], answered);
    assert_eq!(t["unresolved"], 0);
    assert_eq!(t["out_of_hours"], 0);
    assert_eq!(t["avg_wait_s"], 20.0);
    assert_eq!(t["avg_talk_s"], 30.0);
    assert!(server.stop().success());

    // Reopening after a graceful stop (from the checkpoint) gives the same figures.
    let d = data.to_str().expect("path");
    let again = table1(["--data", d], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(again, t);
}
