//! TLS and bearer tokens with roles, from outside: a real server with a self-signed
//! certificate (rcgen) and token hashes in its configuration; the netwait CLI as the
//! gRPC client, curl as the HTTP one.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PUSH: &str = "push-token-0123";
const READ: &str = "read-token-4567";

fn hash(token: &str) -> String {
    let mut child = Command::new(BIN)
        .args(["token", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    writeln!(child.stdin.take().expect("stdin"), "{token}").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A data directory whose configuration turns TLS and tokens on; returns the CA path.
fn secured(dir: &Path) -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert_pem).expect("write cert");
    std::fs::write(&key_path, key_pem).expect("write key");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[auth]\npush = [{:?}]\nread = [{:?}]\n",
        cert_path.display().to_string(),
        key_path.display().to_string(),
        hash(PUSH),
        hash(READ),
    );
    assert!(!config.contains(PUSH) && !config.contains(READ));
    std::fs::write(data.join("netwait.toml"), config).expect("write config");
    cert_path.display().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NETWAIT_TOKEN")
        .output()
        .expect("run netwait")
}

fn table1(server: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "stats",
        "table1",
        "--server",
        server,
        "--from",
        "2019-03-01",
        "--to",
        "2019-04-01",
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `curl ARGS`: (HTTP status, body); status 0 when no HTTP answer came.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn tls_and_tokens_with_roles_on_grpc_and_http() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = secured(tmp.path());
    let data = tmp.path().join("data");
    let server = Server::start_with(&data, &["--http-listen", "127.0.0.1:0"], Stdio::inherit());
    let port = server.addr.rsplit(':').next().expect("port").to_owned();
    let grpc = format!("https://localhost:{port}");
    let read = ["--ca-cert", ca.as_str(), "--token", READ];

    // gRPC: a plain-text client cannot connect; TLS without a token is refused, a push
    // token on a stats call is refused, a read token works.
    let plain = table1(&server.addr, &["--token", READ]);
    assert!(!plain.status.success(), "plain text answered");
    let none = table1(&grpc, &["--ca-cert", &ca]);
    assert!(err(&none).contains("Unauthenticated"), "{}", err(&none));
    let push_on_stats = table1(&grpc, &["--ca-cert", &ca, "--token", PUSH]);
    assert!(
        err(&push_on_stats).contains("PermissionDenied"),
        "{}",
        err(&push_on_stats)
    );
    let wrong = table1(&grpc, &["--ca-cert", &ca, "--token", "nope"]);
    assert!(err(&wrong).contains("Unauthenticated"), "{}", err(&wrong));
    let ok = table1(&grpc, &read);
    assert!(ok.status.success(), "{}", err(&ok));
    let t: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(t["calls_received"], 0);

    // Push: a read token may not push, a push token may; then the read token sees it.
    let (text, answered, abandoned) = march_calls(40);
    let file = tmp.path().join("calls.ndjson");
    std::fs::write(&file, text).expect("write");
    let f = file.to_str().expect("path");
    let denied = run(&[
        "push",
        "--server",
        &grpc,
        "--ca-cert",
        &ca,
        "--token",
        READ,
        f,
    ]);
    assert!(
        err(&denied).contains("a push token is needed"),
        "{}",
        err(&denied)
    );
    let pushed = Command::new(BIN)
        .args(["push", "--server", &grpc, "--ca-cert", &ca, f])
        .env("NETWAIT_TOKEN", PUSH)
        .output()
        .expect("push");
    assert!(pushed.status.success(), "{}", err(&pushed));
    let t: serde_json::Value = serde_json::from_slice(&table1(&grpc, &read).stdout).expect("json");
    assert_eq!(t["answered"], answered);
    assert_eq!(t["abandoned"], abandoned);

    // HTTP: the same roles over TLS; plain HTTP gets no answer.
    let http_port = server
        .http
        .as_deref()
        .expect("http")
        .rsplit(':')
        .next()
        .expect("port");
    let base = format!("https://localhost:{http_port}");
    let metrics = format!("{base}/metrics");
    let (code, _) = curl(&[&format!("http://127.0.0.1:{http_port}/metrics")]);
    assert_eq!(code, 0, "plain HTTP must not be answered");
    let (code, _) = curl(&["--cacert", &ca, &metrics]);
    assert_eq!(code, 401);
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let (code, _) = curl(&["--cacert", &ca, "-H", &bearer(PUSH), &metrics]);
    assert_eq!(code, 403);
    let (code, body) = curl(&["--cacert", &ca, "-H", &bearer(READ), &metrics]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("netwait_commits_total"), "{body}");
    let events = format!("{base}/v1/events");
    let line = r#"{"call_id":"h1","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#;
    let post = |token: &str| {
        curl(&[
            "--cacert",
            &ca,
            "-H",
            &bearer(token),
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            line,
            &events,
        ])
    };
    assert_eq!(post(READ).0, 403);
    assert_eq!(post("nope").0, 401);
    let (code, body) = post(PUSH);
    assert_eq!(code, 200, "{body}");
    // The description stays open, as health and reflection do.
    let (code, _) = curl(&["--cacert", &ca, &format!("{base}/v1/openapi.json")]);
    assert_eq!(code, 200);
    // No token ever reaches the log or the configuration in clear.
    let config = std::fs::read_to_string(data.join("netwait.toml")).expect("config");
    assert!(!config.contains(PUSH));
    server.stop();
}

/// `curl -N` on a server-sent event stream for `secs` seconds: what it printed.
fn stream_for(secs: &str, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", secs])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_wallboard_asks_for_a_read_token_once_and_streams_with_a_session_cookie() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = secured(tmp.path());
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let server = Server::start_with(&data, &["--http-listen", "127.0.0.1:0"], log.into());
    let port = server
        .http
        .as_deref()
        .expect("http")
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    let base = format!("https://localhost:{port}");
    let bearer = |t: &str| format!("Authorization: Bearer {t}");

    // The page holds no data: open; it asks for the token when the data are refused.
    let (code, page) = curl(&["--cacert", &ca, &format!("{base}/")]);
    assert_eq!(code, 200);
    assert!(page.contains("id=\"login\""), "{page}");
    let live = format!("{base}/v1/live");
    assert_eq!(curl(&["--cacert", &ca, &live]).0, 401);
    let events = format!("{base}/v1/live/events");
    assert_eq!(curl(&["--cacert", &ca, &events]).0, 401);

    // A session for a read token only; the token travels in the header, never a URL.
    let session = format!("{base}/v1/live/session");
    let open = |token: Option<&str>| {
        let headers = tmp.path().join("headers");
        let mut args = vec!["--cacert", ca.as_str(), "-X", "POST", "-D"];
        let h = headers.display().to_string();
        args.push(&h);
        let auth = token.map(bearer);
        if let Some(a) = &auth {
            args.extend(["-H", a.as_str()]);
        }
        args.push(&session);
        let (code, _) = curl(&args);
        (code, std::fs::read_to_string(&headers).unwrap_or_default())
    };
    assert_eq!(open(None).0, 401);
    assert_eq!(open(Some(PUSH)).0, 403);
    let (code, headers) = open(Some(READ));
    assert_eq!(code, 204, "{headers}");
    let set_cookie = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().to_owned())
        })
        .expect("a Set-Cookie header");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/v1/live"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let pair = set_cookie.split(';').next().expect("name=value").to_owned();
    let (name, id) = pair.split_once('=').expect("name=value");
    assert_eq!((name, id.len()), ("netwait_wallboard", 64), "{pair}");
    let cookie = format!("Cookie: {pair}");

    // With the cookie, as a browser's EventSource sends it: the data and the stream.
    let (code, body) = curl(&["--cacert", &ca, "-H", &cookie, &live]);
    assert_eq!(code, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(state["operators"].is_object(), "{state}");
    let streamed = stream_for("3", &["--cacert", &ca, "-H", &cookie, &events]);
    assert!(streamed.contains("data: {"), "{streamed}");
    // A made-up session is not one.
    let forged = format!("Cookie: netwait_wallboard={}", "ab".repeat(32));
    assert_eq!(curl(&["--cacert", &ca, "-H", &forged, &live]).0, 401);
    // The session opens the live data only, nothing else.
    let metrics = format!("{base}/metrics");
    assert_eq!(curl(&["--cacert", &ca, "-H", &cookie, &metrics]).0, 401);

    server.stop();
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(!log.contains(READ) && !log.contains(id), "{log}");
}
