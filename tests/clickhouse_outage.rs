//! ClickHouse stopped during an import (`deploy/down clickhouse`, then `deploy/up
//! clickhouse` a few seconds later): the store retries with backoff, the import waits
//! (its memory bounded by the commit it holds) and finishes once the server is back,
//! with nothing lost or counted twice. A test binary of its own: it stops the server
//! that the other ClickHouse tests share.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(script: &str) -> String {
    let out = Command::new(repo().join("deploy").join(script))
        .arg("clickhouse")
        .output()
        .expect("deploy script");
    assert!(
        out.status.success(),
        "deploy/{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn clickhouse_down_during_import_loses_nothing() {
    let url = deploy("up")
        .lines()
        .find_map(|l| {
            l.strip_prefix("export NETWAIT_CLICKHOUSE_URL=")
                .map(str::to_owned)
        })
        .expect("URL");
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let db = format!("nwoutage_{}", std::process::id());
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    let child = Command::new(BIN)
        .args(["import", "--clickhouse", &url, "--database", &db])
        .arg(&seed)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    // Killed (-9) while the import writes: a stop by SIGTERM lets the server finish the
    // inserts in flight, and a quiet machine imports the whole year in a few seconds.
    std::thread::sleep(Duration::from_millis(300));
    let dir = std::env::var("NETWAIT_DEPLOY_DIR").unwrap_or_else(|_| "/tmp/netwait-deploy".into());
    let pid = std::fs::read_to_string(Path::new(&dir).join("clickhouse/pid")).expect("server pid");
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_secs(5));
    deploy("up");
    let out = child.wait_with_output().expect("import");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {err}");
    assert!(
        err.contains("retrying"),
        "the outage was seen and retried: {err}"
    );
    let t = table1(
        ["--clickhouse", &url],
        "2019-01-01",
        "2020-01-01",
        &["--database", &db],
    );
    assert_eq!(t["calls_received"].as_u64(), Some(181_795), "{t}");
    assert_eq!(t["answered"].as_u64(), Some(97_385), "{t}");
    assert_eq!(t["bookings"].as_u64(), Some(88_210), "{t}");
}
