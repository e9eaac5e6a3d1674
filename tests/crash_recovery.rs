//! `kill -9` of `serve` during a `push`, restart, push the same file again: the figures
//! are exact (nothing acknowledged lost, nothing counted twice).

mod common;
use common::*;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Calls on weekdays of March 2019 in service hours; every 4th abandoned, the rest answered
/// with a booking. Returns the file text and (answered, abandoned).
fn events(calls: u64) -> (String, u64, u64) {
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

#[test]
fn kill_9_during_push_then_push_again_is_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (text, answered, abandoned) = events(60_000);
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
