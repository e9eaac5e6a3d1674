//! `serve` as an operator meets it: a port in use, signals with open streams, a full
//! disk; and `push` streaming from a pipe.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn a_port_in_use_fails_before_the_store_is_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = tmp.path().join("data");
    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netwait serve");
    assert!(!out.status.success(), "serve on a taken port must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"),
        "unclear message: {err}"
    );
    assert!(!data.exists(), "the data directory was created");
}

/// A tmpfs of `size` mounted on a fresh directory (we run as root, as CI does); lazily
/// unmounted on drop. Fails the test when it cannot be mounted: never skipped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs root to mount a small tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte with one file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let block = vec![0xa5u8; 1 << 16];
        loop {
            match f.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // The last partial block, byte by byte at most one block.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn health_of(url: &str) -> Vec<i32> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let mut all = Vec::new();
    for service in ["", "netwait.v1.Stats", "netwait.v1.Ingest"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check");
        all.push(r.into_inner().status);
    }
    all
}

/// The lines of `text` as one push message.
fn push_lines(text: &str, source: &str) -> netwait_proto::v1::PushRequest {
    netwait_proto::v1::PushRequest {
        ndjson_lines: text.lines().map(|l| l.as_bytes().to_vec()).collect(),
        source: source.into(),
        first_position: 1,
        ..Default::default()
    }
}

#[test]
fn a_full_disk_under_serve_is_reported_and_recovered_without_restart() {
    use netwait_proto::v1::ingest_client::IngestClient;
    use tonic_health::pb::health_check_response::ServingStatus;
    let disk = SmallDisk::mount("8m");
    let data = disk.path().join("data");
    let (text, _, _) = march_calls(2_000);
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (first, second) = (first.join("\n"), second.join("\n"));
    let log = tempfile::NamedTempFile::new().expect("log file");
    let server = Server::start_with(
        &data,
        &[],
        std::process::Stdio::from(log.reopen().expect("log")),
    );
    let url = server.url();
    let serving = vec![ServingStatus::Serving as i32; 3];
    let not_serving = vec![ServingStatus::NotServing as i32; 3];
    rt().block_on(async {
        let mut ingest = IngestClient::connect(url.clone()).await.expect("connect");
        ingest
            .push(tokio_stream::iter([push_lines(&first, "first")]))
            .await
            .expect("push before the disk is full");
        let filler = disk.fill();
        let err = ingest
            .push(tokio_stream::iter([push_lines(&second, "second")]))
            .await
            .expect_err("the disk is full");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert_eq!(health_of(&url).await, not_serving);
        let logged = std::fs::read_to_string(log.path()).expect("server log");
        assert!(
            logged.contains("ERROR") && logged.contains("not serving until it recovers"),
            "no ERROR in the server log: {logged}"
        );
        std::fs::remove_file(filler).expect("free the disk");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while health_of(&url).await != serving {
            assert!(
                std::time::Instant::now() < deadline,
                "still not serving 10 s after the disk was freed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The failed message was not kept: pushed again, every event counts once.
        let sum = ingest
            .push(tokio_stream::iter([push_lines(&second, "second")]))
            .await
            .expect("push after recovery")
            .into_inner();
        assert_eq!(
            (sum.accepted, sum.duplicate, sum.rejected),
            (second.lines().count() as u64, 0, 0)
        );
    });
    let served = table1(["--server", &server.addr], "2019-03-01", "2019-04-01", &[]);
    assert!(server.stop().success());
    // Exactly the figures of the same events imported in one go.
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("all.ndjson");
    std::fs::write(&file, &text).expect("write");
    let imported = tmp.path().join("imported");
    let imported = imported.to_str().expect("path");
    netwait(&["import", "--data", imported, file.to_str().expect("path")]);
    assert_eq!(
        served,
        table1(["--data", imported], "2019-03-01", "2019-04-01", &[])
    );
    assert!(served["calls_received"].as_u64() == Some(2_000), "{served}");
}

type PushReply =
    tokio::task::JoinHandle<Result<tonic::Response<netwait_proto::v1::PushSummary>, tonic::Status>>;

/// Opens a push stream to `server`, sends `text` as one message and waits until it is
/// committed (queryable); the stream stays open while the sender is held.
async fn open_stream_with(
    server: &Server,
    text: &str,
) -> (
    tokio::sync::mpsc::Sender<netwait_proto::v1::PushRequest>,
    PushReply,
) {
    use netwait_proto::v1::ingest_client::IngestClient;
    let mut ingest = IngestClient::connect(server.url()).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(push_lines(text, "open")).await.expect("send");
    let reply = tokio::spawn(async move {
        ingest
            .push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while table1(["--server", &server.addr], "2019-03-01", "2019-04-01", &[])["calls_received"] == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the message was never committed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (tx, reply)
}

/// Sends SIGTERM to the server `times` times, 200 ms apart; how long it took to exit.
async fn terminate(mut server: Server, times: usize) -> std::time::Duration {
    let pid = server.child.id().to_string();
    let asked = std::time::Instant::now();
    for n in 0..times {
        if n > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
    tokio::task::spawn_blocking(move || {
        let status = server.child.wait().expect("wait");
        assert!(status.success(), "serve exited with {status}");
        asked.elapsed()
    })
    .await
    .expect("wait task")
}

#[test]
fn a_second_signal_stops_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::start_with(
        &data,
        &["--drain-timeout", "30"],
        std::process::Stdio::inherit(),
    );
    let (text, _, _) = march_calls(10);
    rt().block_on(async {
        let (tx, _reply) = open_stream_with(&server, &text).await;
        let took = terminate(server, 2).await;
        assert!(
            took < std::time::Duration::from_secs(3),
            "took {took:?} after two signals"
        );
        drop(tx);
    });
    // What was committed is kept (the log is replayed: no checkpoint was written).
    let t = table1(
        ["--data", data.to_str().expect("path")],
        "2019-03-01",
        "2019-04-01",
        &[],
    );
    assert_eq!(t["calls_received"], 10);
}

#[test]
fn sigterm_with_an_idle_push_stream_open_exits_within_the_drain_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::start_with(
        &data,
        &["--drain-timeout", "1"],
        std::process::Stdio::inherit(),
    );
    let (text, _, _) = march_calls(100);
    let err = rt().block_on(async {
        let (tx, reply) = open_stream_with(&server, &text).await;
        // The stream stays open and idle (`tx` is held) while the server is told to stop.
        let took = terminate(server, 1).await;
        assert!(
            took < std::time::Duration::from_secs(4),
            "serve took {took:?} to exit with a 1 s drain"
        );
        let err = reply
            .await
            .expect("task")
            .expect_err("closed by the server");
        drop(tx);
        err
    });
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let committed = format!(
        "committed before: 1 messages (accepted {}, duplicate 0, rejected 0)",
        text.lines().count()
    );
    assert!(err.message().contains(&committed), "{err:?}");
    let d = data.to_str().expect("path");
    let t = table1(["--data", d], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(t["calls_received"], 100);
}

#[test]
fn push_from_a_pipe_commits_lines_as_they_come() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&tmp.path().join("data"));
    let (text, _, _) = march_calls(20);
    // As `(cat small.ndjson; sleep 5) | netwait push -`: the input stays open.
    let mut push = Command::new(BIN)
        .args(["push", "--server", &server.addr, "-"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn netwait push");
    let mut stdin = push.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).expect("write");
    stdin.flush().expect("flush");
    let written = std::time::Instant::now();
    loop {
        let t = table1(["--server", &server.addr], "2019-03-01", "2019-04-01", &[]);
        if t["calls_received"] == 20 {
            break;
        }
        assert!(
            written.elapsed() < std::time::Duration::from_secs(1),
            "not queryable 1 s after the lines were written: {t}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        push.try_wait().expect("try_wait").is_none(),
        "push ended before its input"
    );
    drop(stdin);
    let out = push.wait_with_output().expect("wait");
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!(
            "-: accepted {} duplicate 0 rejected 0",
            text.lines().count()
        )),
        "{summary}"
    );
}

/// `tail -f f | netwait push -` against a server that stops: push reports the server's
/// error and exits, though its input never ends.
#[test]
fn push_from_an_endless_pipe_exits_when_the_server_ends_the_stream() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--drain-timeout", "1"],
        std::process::Stdio::inherit(),
    );
    let (text, _, _) = march_calls(5);
    let mut push = Command::new(BIN)
        .args(["push", "--server", &server.addr, "-"])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn netwait push");
    let mut stdin = push.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).expect("write");
    stdin.flush().expect("flush");
    // Committed once queryable; then the server is stopped while the input stays open.
    let written = std::time::Instant::now();
    while table1(["--server", &server.addr], "2019-03-01", "2019-04-01", &[])["calls_received"] != 5
    {
        assert!(written.elapsed() < std::time::Duration::from_secs(5));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stopped = rt().block_on(terminate(server, 1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = push.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "push still running 10 s after the server stopped (in {stopped:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(stdin);
    assert!(!status.success(), "the push was cut short: an error");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut push.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(
        err.contains("UNAVAILABLE") || err.contains("navailable"),
        "{err}"
    );
}
