//! `serve` as an operator meets it: a port in use, signals with open streams, a full
//! disk; and `push` streaming from a pipe.

mod common;
use common::*;
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
