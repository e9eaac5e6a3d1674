//! What a person meets at the edges of the CLI and of the gRPC arguments: closed pipes,
//! refused arguments (named as typed), quiet logs, inputs checked up front, a BOM,
//! files whose every line is rejected.

mod common;
use common::*;
use netwait_proto::v1::ingest_client::IngestClient;
use netwait_proto::v1::stats_client::StatsClient;
use netwait_proto::v1::{PushRequest, SlaYearRequest, Table1Request};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `netwait ARGS` (no RUST_LOG: the default log level) and returns what it did.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run netwait")
}

/// Runs `netwait ARGS`, expects a failure, returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "netwait {args:?} succeeded");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn offered_answered(n: usize, line_of: impl Fn(usize) -> &'static str) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"call_id\":\"c{i}\",\"type\":\"offered\",\"line\":\"{}\",\"ts\":\"2019-03-04T09:00:00+01:00\"}}\n\
             {{\"call_id\":\"c{i}\",\"type\":\"answered\",\"agent\":\"a\",\"ts\":\"2019-03-04T09:02:19.500+01:00\"}}\n",
            line_of(i)
        ));
    }
    text
}

/// A data directory with calls of lines `cup` and `prelievi`, each answered after
/// exactly 139.5 s.
fn small_store(dir: &Path) -> String {
    let file = dir.join("calls.ndjson");
    let lines = |i: usize| {
        if i.is_multiple_of(2) {
            "cup"
        } else {
            "prelievi"
        }
    };
    std::fs::write(&file, offered_answered(10, lines)).expect("write");
    let data = dir.join("data");
    let data_s = data.to_str().expect("utf-8").to_owned();
    netwait(&["import", "--data", &data_s, file.to_str().expect("utf-8")]);
    data_s
}

#[test]
fn a_reader_that_goes_away_ends_quietly_with_status_0() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Enough dead letters to fill a pipe many times over.
    let bad = tmp.path().join("bad.ndjson");
    std::fs::write(&bad, "not json\n".repeat(20_000)).expect("write");
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    netwait(&["import", "--data", data_s, bad.to_str().expect("utf-8")]);

    // `netwait deadletter | head -1`: one line read, then the pipe is closed.
    let mut child = Command::new(BIN)
        .args(["deadletter", "--data", data_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    assert!(first.contains("invalid_json"), "{first}");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}: {err}", out.status);
    assert!(err.is_empty(), "not quiet: {err}");

    // `netwait stats ... | head -1` where the reader is gone before the first line.
    for args in [
        &[
            "stats",
            "table1",
            "--data",
            data_s,
            "--from",
            "2019-01-01",
            "--to",
            "2020-01-01",
        ][..],
        &["stats", "sla", "--data", data_s, "--year", "2019", "--json"],
        &["deadletter", "--data", data_s, "--json"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .stdout(writer)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(err.is_empty(), "{args:?} not quiet: {err}");
    }
}

#[test]
fn thresholds_years_dates_and_targets_follow_one_rule_everywhere() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = small_store(tmp.path());
    let period = ["--from", "2019-01-01", "--to", "2020-01-01"];
    let table1_args = |at: [&str; 2], extra: &[&str]| -> Vec<String> {
        let mut a = vec!["stats", "table1", at[0], at[1]];
        a.extend(period);
        a.extend(extra);
        a.into_iter().map(str::to_owned).collect()
    };
    let server = Server::start(&tmp.path().join("served"));
    for at in [
        ["--data", data.as_str()],
        ["--server", server.addr.as_str()],
    ] {
        for bad in ["0.5", "140.0001", "-1", "0", "86400.5", "1e3"] {
            let args = table1_args(at, &["--threshold", bad]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let err = fails(&args);
            assert!(
                err.contains("--threshold") && err.contains("at most three decimals"),
                "{bad}: {err}"
            );
            assert!(!err.contains("Client specified"), "{err}");
        }
        let err = fails(&[
            "stats",
            "table1",
            at[0],
            at[1],
            "--from",
            "1800-01-01",
            "--to",
            "2020-01-01",
        ]);
        assert!(
            err.contains("--from") && err.contains("out of range"),
            "{err}"
        );
        let err = fails(&["stats", "sla", at[0], at[1], "--year", "1800"]);
        assert!(
            err.contains("--year") && err.contains("out of range"),
            "{err}"
        );
        let err = fails(&["stats", "volume", at[0], at[1], "--half", "1800-H1"]);
        assert!(
            err.contains("out of range") && !err.contains("YYYY-H1 or"),
            "{err}"
        );
    }
    // 139.5 s is a valid T; the calls answered after exactly 139.5 s are over it.
    let t = table1(
        ["--data", &data],
        "2019-01-01",
        "2020-01-01",
        &["--threshold", "139.5"],
    );
    assert_eq!(t["threshold_s"], 139.5);
    assert_eq!(t["answered_wait_over_threshold"], 10);
    let t = table1(
        ["--data", &data],
        "2019-01-01",
        "2020-01-01",
        &["--threshold", "139.501"],
    );
    assert_eq!(t["answered_wait_within_threshold"], 10);

    // The target must be above the grave floor, from the CLI and the configuration.
    let err = fails(&[
        "stats", "sla", "--data", &data, "--year", "2019", "--target", "0.3",
    ]);
    assert!(
        err.contains("--target") && err.contains("grave floor"),
        "{err}"
    );
    assert!(!err.contains("Client specified"), "{err}");
    let config = tmp.path().join("netwait.toml");
    std::fs::write(&config, "[sla]\ntarget = 0.35\n").expect("write");
    let config_s = config.to_str().expect("utf-8");
    let err = fails(&[
        "stats", "sla", "--data", &data, "--config", config_s, "--year", "2019",
    ]);
    assert!(
        err.contains("sla.target") && err.contains("grave floor"),
        "{err}"
    );
    std::fs::write(&config, "[sla]\nthreshold_s = 0.5\n").expect("write");
    let err = fails(&[
        "stats", "sla", "--data", &data, "--config", config_s, "--year", "2019",
    ]);
    assert!(err.contains("sla.threshold_s"), "{err}");
    // A configuration is not sent to a server: together they are an error.
    let err = fails(&[
        "stats",
        "sla",
        "--server",
        &server.addr,
        "--config",
        config_s,
        "--year",
        "2019",
    ]);
    assert!(
        err.contains("--config") && err.contains("--server"),
        "{err}"
    );
}

#[test]
fn grpc_refuses_bad_thresholds_and_unknown_lines_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = small_store(tmp.path());
    let server = Server::start(Path::new(&data));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut stats = StatsClient::connect(server.url()).await.expect("connect");
        let req = |line: Option<&str>, threshold_s: Option<f64>| Table1Request {
            from: "2019-01-01".into(),
            to: "2020-01-01".into(),
            line: line.map(str::to_owned),
            threshold_s,
        };
        for t in [0.5, 140.0001, 86_400.001] {
            let err = stats
                .get_table1(req(None, Some(t)))
                .await
                .expect_err("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{t}");
            assert!(
                err.message().starts_with("threshold_s: "),
                "{}",
                err.message()
            );
        }
        let t = stats
            .get_table1(req(Some("prelievi"), Some(139.5)))
            .await
            .expect("valid")
            .into_inner();
        assert_eq!((t.threshold_s, t.answered), (139.5, 5));
        let err = stats
            .get_table1(req(Some("PRELIEVI"), None))
            .await
            .expect_err("unknown line");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains(r#""cup", "prelievi""#),
            "{}",
            err.message()
        );
        let err = stats
            .get_sla_year(SlaYearRequest {
                year: 2019,
                line: Some("Cup".into()),
                threshold_s: None,
                target: None,
            })
            .await
            .expect_err("unknown line");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    });
    // The same from the CLI, from the server and from the data directory.
    drop(server);
    let err = fails(&[
        "stats",
        "table1",
        "--data",
        &data,
        "--from",
        "2019-01-01",
        "--to",
        "2020-01-01",
        "--line",
        "PRELIEVI",
    ]);
    assert!(
        err.starts_with("netwait: error: --line: unknown line \"PRELIEVI\"")
            && err.contains(r#""cup", "prelievi""#),
        "{err}"
    );
}

#[test]
fn logs_are_quiet_by_default_and_errors_say_each_cause_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = small_store(tmp.path());
    let out = run(&["stats", "volume", "--data", &data, "--half", "2019-H1"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "stats", "volume", "--data", &data, "--half", "2019-H1", "-v",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INFO") && err.contains("store opened"),
        "{err}"
    );
    assert!(!err.contains("events=0"), "{err}");
    // Nothing listens on port 1.
    let err = fails(&[
        "stats",
        "volume",
        "--server",
        "127.0.0.1:1",
        "--half",
        "2019-H1",
    ]);
    let causes: Vec<&str> = err.trim().split(": ").collect();
    let mut unique = causes.clone();
    unique.dedup();
    assert_eq!(causes, unique, "a cause said twice: {err}");
}

#[test]
fn every_input_is_checked_before_anything_is_committed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = tmp.path().join("good.ndjson");
    std::fs::write(&good, offered_answered(3, |_| "cup")).expect("write");
    let good_s = good.to_str().expect("utf-8");
    let dir_s = tmp.path().to_str().expect("utf-8");
    let missing = tmp.path().join("missing.ndjson");
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    for bad in [dir_s, missing.to_str().expect("utf-8")] {
        let err = fails(&["import", "--data", data_s, good_s, bad]);
        assert!(err.contains(bad), "{err}");
        assert!(
            !data.exists(),
            "the store was opened before the inputs were checked"
        );
    }
    let served = tmp.path().join("served");
    let server = Server::start(&served);
    let err = fails(&["push", "--server", &server.addr, good_s, dir_s]);
    assert!(err.contains("is a directory"), "{err}");
    let t = table1(["--server", &server.addr], "2019-01-01", "2020-01-01", &[]);
    assert_eq!(
        t["calls_received"], 0,
        "the good file was pushed before the check"
    );
}

#[test]
fn a_bom_is_skipped_and_a_file_of_rejected_lines_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let with_bom = tmp.path().join("bom.ndjson");
    let text = format!("\u{feff}{}", offered_answered(2, |_| "cup"));
    std::fs::write(&with_bom, &text).expect("write");
    let bom_s = with_bom.to_str().expect("utf-8");
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8");
    let out = stdout(&netwait(&["import", "--data", data_s, bom_s]));
    assert_eq!(out.trim(), "total: accepted 4 duplicate 0 rejected 0");
    // From stdin (read, not mapped) too.
    let stdin_data = tmp.path().join("stdin-data");
    let from_stdin = Command::new(BIN)
        .args(["import", "--data", stdin_data.to_str().expect("utf-8"), "-"])
        .stdin(std::fs::File::open(&with_bom).expect("open"))
        .output()
        .expect("run");
    assert!(from_stdin.status.success());
    assert!(
        String::from_utf8_lossy(&from_stdin.stdout).contains("accepted 4 duplicate 0 rejected 0"),
        "{from_stdin:?}"
    );

    let served = tmp.path().join("served");
    let server = Server::start(&served);
    let out = stdout(&netwait(&["push", "--server", &server.addr, bom_s]));
    assert!(out.contains("accepted 4 duplicate 0 rejected 0"), "{out}");
    // A generic client's first line may carry one as well.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sum = rt.block_on(async {
        let mut ingest = IngestClient::connect(server.url()).await.expect("connect");
        let first = format!(
            "\u{feff}{}",
            r#"{"call_id":"g1","type":"offered","ts":"2019-03-05T09:00:00+01:00"}"#
        );
        let msg = PushRequest {
            ndjson_lines: vec![first.into_bytes()],
            source: "generic".into(),
            first_position: 1,
            ..Default::default()
        };
        ingest
            .push(tokio_stream::iter([msg]))
            .await
            .expect("push")
            .into_inner()
    });
    assert_eq!((sum.accepted, sum.rejected), (1, 0));

    // A file whose every line is rejected: a warning, and with --strict a failure.
    let junk = tmp.path().join("junk.ndjson");
    std::fs::write(&junk, "junk\nmore junk\n").expect("write");
    let junk_s = junk.to_str().expect("utf-8");
    let out = run(&["import", "--data", data_s, junk_s]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every line of") && err.contains("rejected"),
        "{err}"
    );
    let err = fails(&["import", "--data", data_s, "--strict", junk_s]);
    assert!(err.contains("--strict"), "{err}");
    let err = fails(&["push", "--server", &server.addr, "--strict", junk_s]);
    assert!(
        err.contains("every line of") && err.contains("--strict"),
        "{err}"
    );
    // --strict fails on any rejected line, not only when all are.
    let mixed = tmp.path().join("mixed.ndjson");
    std::fs::write(&mixed, format!("{}junk\n", offered_answered(1, |_| "cup"))).expect("write");
    let err = fails(&[
        "import",
        "--data",
        data_s,
        "--strict",
        mixed.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("1 line(s) rejected") && !err.contains("every line"),
        "{err}"
    );
    // ... and a clean file passes.
    netwait(&["import", "--data", data_s, "--strict", bom_s]);
}
