//! End-to-end: the live side of `netwait serve` — a call crossing the 120 s long-wait
//! threshold raises an alert that the wallboard shows in a real browser (Debian's
//! headless `chromium`, driven over the DevTools protocol; a screenshot is kept under
//! target/) and `netwait watch --plain` prints; answering the call clears it.

mod common;

use common::{Server, wait_line, watch};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// POSTs NDJSON lines to the server's HTTP push.
fn push(server: &Server, lines: &[String]) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "@-",
        ])
        .arg(format!("{}/v1/events", server.http_url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(lines.join("\n").as_bytes())?;
            c.wait_with_output()
        })
        .expect("curl");
    assert!(out.status.success(), "push failed");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(&format!("\"accepted\":{}", lines.len())),
        "{body}"
    );
}

/// A headless Chromium on the page, and its DevTools connection.
struct Browser {
    child: Child,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium runs (Debian's chromium package)");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(ws.to_owned());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium's DevTools address");
        let port = browser_ws
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .expect("port")
            .to_owned();
        // The page's own endpoint, once the page target exists.
        let deadline = Instant::now() + Duration::from_secs(30);
        let page_ws = loop {
            let out = Command::new("curl")
                .args(["-sS", &format!("http://127.0.0.1:{port}/json/list")])
                .output()
                .expect("curl");
            let list: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            let page = list.as_array().and_then(|l| {
                l.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            });
            if let Some(ws) = page {
                break ws;
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let (socket, _) = tungstenite::connect(page_ws).expect("DevTools websocket");
        Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends one DevTools command and returns its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::Text(msg.to_string().into()))
            .expect("send");
        loop {
            let reply = self.socket.read().expect("read");
            if let tungstenite::Message::Text(text) = reply {
                let v: serde_json::Value = serde_json::from_str(&text).expect("json");
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    /// A JavaScript expression's value in the page.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page (the page updates itself).
    fn wait_for(&mut self, expression: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.eval(expression) != serde_json::Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "the page never showed {expression}: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        let data = r["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_call_crossing_120_s_is_an_alert_on_the_wallboard_and_in_watch_and_clears_when_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--http-listen", "127.0.0.1:0", "--calendar", "24x7"],
        Stdio::inherit(),
    );
    let (mut watcher, lines) = watch(&server);
    wait_line(&lines, "a first update", |l| l.starts_with("seq "));
    let mut browser = Browser::open(&server.http_url());
    browser.wait_for(
        "document.getElementById('status').textContent === 'live'",
        Duration::from_secs(30),
    );

    // An operator, a call answered within the threshold, and a caller whose net wait
    // reaches 120 s about 3 s from now (announcement ended 117 s ago).
    let t = now_ms();
    let ev = |call: &str, kind: &str, at: i64, extra: &str| {
        format!(r#"{{"call_id":"{call}","type":"{kind}","ts":{at}{extra}}}"#)
    };
    push(
        &server,
        &[
            format!(
                r#"{{"type":"agent_login","ts":{},"agent":"op1"}}"#,
                t - 600_000
            ),
            ev("fast", "offered", t - 500_000, r#","line":"cup""#),
            ev("fast", "announcement_end", t - 460_000, ""),
            ev("fast", "answered", t - 450_000, r#","agent":"op1""#),
            ev("fast", "ended", t - 300_000, ""),
            ev("slow", "offered", t - 157_000, r#","line":"cup""#),
            ev("slow", "announcement_end", t - 117_000, ""),
        ],
    );
    browser.wait_for(
        "document.querySelector('.line[data-line=cup] .waiting')?.textContent === '1'",
        Duration::from_secs(10),
    );
    assert_eq!(
        browser.eval("document.querySelector('li[data-rule=long_wait]') === null"),
        true,
        "no alert before the call crosses 120 s"
    );
    let raised = wait_line(&lines, "the long_wait alert", |l| {
        l.contains("ALERT") && l.contains("long_wait")
    });
    assert!(raised.contains("cup waiting 1 longest 12"), "{raised}");
    assert!(
        now_ms() - t >= 2_900,
        "raised before the call crossed 120 s"
    );
    browser.wait_for(
        "document.querySelector('li[data-rule=long_wait]')?.textContent.includes('cup') === true",
        Duration::from_secs(10),
    );
    let alert = browser.eval("document.querySelector('li[data-rule=long_wait]').textContent");
    assert!(
        alert
            .as_str()
            .is_some_and(|a| a.contains("warning") && a.contains("waited 12")),
        "{alert}"
    );
    // The longest wait is coloured against the threshold (120 s: warning, not yet 140 s).
    assert_eq!(
        browser.eval(
            "document.querySelector('.line[data-line=cup] .longest').classList.contains('warn')"
        ),
        true
    );
    assert_eq!(
        browser.eval("document.querySelector('.line[data-line=cup] .mtd').textContent"),
        "100.0 %"
    );
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let shot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wallboard-long-wait-alert.png");
    std::fs::write(&shot, &png).expect("screenshot kept");
    eprintln!("screenshot: {}", shot.display());

    // Answered: the alert clears on the page and in watch.
    push(
        &server,
        &[ev("slow", "answered", now_ms(), r#","agent":"op1""#)],
    );
    browser.wait_for(
        "document.querySelector('li[data-rule=long_wait]') === null",
        Duration::from_secs(10),
    );
    wait_line(&lines, "the alert cleared", |l| {
        !l.contains("long_wait") && l.contains("cup waiting 0")
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    drop(browser);
    assert!(server.stop().success());
}
