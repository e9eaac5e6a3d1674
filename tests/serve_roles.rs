//! `serve --role` and `--store`, against the real binary: role combinations that make no
//! sense are refused naming their flags; the command line wins over the environment,
//! which wins over the configuration; the servers' variables exported (as CI and `eval
//! "$(deploy/up)"` do) never move a command given `--data` off it; and, with the real
//! servers of `deploy/up`, `--role all` on ClickHouse takes pushes, publishes them,
//! aggregates them and answers from the database in one process, and the aggregator and
//! api roles run from a configuration file.

mod common;
use common::servers::*;
use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every variable of the store and roles (and the servers'), unset.
const VARS: [&str; 8] = [
    "NETWAIT_STORE",
    "NETWAIT_CLICKHOUSE_URL",
    "NETWAIT_CLICKHOUSE_DB",
    "NETWAIT_ROLE",
    "NETWAIT_KAFKA",
    "NETWAIT_KAFKA_TOPIC",
    "NETWAIT_KAFKA_GROUP",
    "NETWAIT_CLICKHOUSE_TIMEOUT",
];

/// `netwait ARGS` in `dir` with only `env` of [`VARS`] set; its output (any status).
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env("RUST_LOG", "warn");
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied()).output().expect("run netwait")
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fails_saying(dir: &Path, args: &[&str], env: &[(&str, &str)], says: &str) {
    let out = run_env(dir, args, env);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err(&out).contains(says), "{args:?}: {}", err(&out));
}

/// A small file of calls: its path, answered calls and lines.
fn calls_file(dir: &Path, calls: u64) -> (String, u64, usize) {
    let (text, answered, _) = march_calls(calls);
    let path = dir.join("calls.ndjson");
    std::fs::write(&path, &text).expect("write");
    (path.display().to_string(), answered, text.lines().count())
}

#[test]
fn role_and_store_combinations_that_make_no_sense_name_their_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (file, _, _) = calls_file(t, 3);
    let serve = |extra: &[&'static str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data", "d"];
        args.extend_from_slice(extra);
        args
    };
    fails_saying(t, &serve(&["--role", "api"]), &[], "--store clickhouse");
    fails_saying(
        t,
        &serve(&["--role", "all", "--kafka", "127.0.0.1:9", "--topic", "x"]),
        &[],
        "--role all with Kafka needs --store clickhouse",
    );
    // An aggregator on a ClickHouse that is never reached: the flags are refused first.
    let aggregator = |extra: &[&'static str]| {
        let mut args = serve(&[
            "--role",
            "aggregator",
            "--store",
            "clickhouse",
            "--clickhouse-url",
            "http://127.0.0.1:9",
        ]);
        args.extend_from_slice(extra);
        args
    };
    fails_saying(
        t,
        &aggregator(&[]),
        &[],
        "--role aggregator needs --kafka BROKERS",
    );
    // It serves no gRPC: `serve` gives every command here a `--listen`.
    fails_saying(
        t,
        &aggregator(&["--kafka", "127.0.0.1:9", "--topic", "x"]),
        &[],
        "--listen serves gRPC",
    );
    fails_saying(
        t,
        &serve(&["--role", "ingest", "--kafka", "127.0.0.1:9"]),
        &[],
        "--role ingest needs --topic T",
    );
    fails_saying(
        t,
        &serve(&[
            "--role",
            "ingest",
            "--kafka",
            "127.0.0.1:9",
            "--topic",
            "x",
            "--group",
            "g",
        ]),
        &[],
        "--group is the aggregators'",
    );
    fails_saying(
        t,
        &serve(&[
            "--clickhouse-url",
            "http://127.0.0.1:9",
            "--role",
            "api",
            "--group",
            "g",
        ]),
        &[],
        "not with --role api",
    );
    fails_saying(
        t,
        &[
            "import",
            "--store",
            "embedded",
            "--clickhouse-url",
            "http://x",
            &file,
        ],
        &[],
        "choose one store",
    );
    fails_saying(
        t,
        &["import", "--data", "d", "--clickhouse-db", "x", &file],
        &[],
        "--clickhouse-db goes with the ClickHouse store",
    );
    fails_saying(
        t,
        &["import", "--store", "clickhouse", &file],
        &[],
        "--clickhouse-url URL (or NETWAIT_CLICKHOUSE_URL",
    );
    fails_saying(
        t,
        &["serve", "--listen", "127.0.0.1:0", "--role", "leader"],
        &[],
        "invalid value 'leader'",
    );
    // Nothing was created by the refusals above.
    assert!(!t.join("d").exists());
}

/// What `deploy/up` exports, pointing at nothing (a command that used them would fail),
/// with NETWAIT_STORE too.
const EXPORTED: [(&str, &str); 5] = [
    ("NETWAIT_STORE", "clickhouse"),
    ("NETWAIT_CLICKHOUSE_URL", "http://127.0.0.1:9"),
    ("NETWAIT_KAFKA", "127.0.0.1:9"),
    ("NETWAIT_KAFKA_TOPIC", "nowhere"),
    ("NETWAIT_CLICKHOUSE_TIMEOUT", "1"),
];

#[test]
fn the_environment_never_moves_a_command_given_data_off_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (file, answered, lines) = calls_file(t, 40);
    let data = t.join("data");
    let d = data.to_str().expect("path");
    let out = run_env(t, &["import", "--data", d, &file], &EXPORTED);
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        stdout(&out).contains(&format!("accepted {lines} ")),
        "{}",
        stdout(&out)
    );
    let out = run_env(
        t,
        &[
            "stats",
            "table1",
            "--data",
            d,
            "--from",
            "2019-03-01",
            "--to",
            "2019-04-01",
            "--json",
        ],
        &EXPORTED,
    );
    assert!(out.status.success(), "{}", err(&out));
    let t1: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(t1["answered"], answered, "{t1}");
    let out = run_env(t, &["deadletter", "list", "--data", d], &EXPORTED);
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(stdout(&out), "0 dead letter(s)\n");
    // serve --data: the embedded store with every role (not the ingest role to the
    // broker of NETWAIT_KAFKA, not the api role on NETWAIT_CLICKHOUSE_URL).
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data", d])
        .current_dir(t)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    for v in VARS {
        cmd.env_remove(v);
    }
    let (mut child, addr) = spawn_listening(cmd.envs(EXPORTED));
    let t1 = table1(["--server", &addr], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(t1["answered"], answered, "{t1}");
    let _ = child.kill();
    let _ = child.wait();
    // Without --data the environment applies: the store is ClickHouse at its URL.
    fails_saying(t, &["import", &file], &EXPORTED, "127.0.0.1:9");
    assert!(!t.join("netwait-data").exists());
}

#[test]
fn command_line_then_environment_then_configuration() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let (file, _, _) = calls_file(t, 3);
    let config = t.join("netwait.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"clickhouse\"\nclickhouse_url = \"http://127.0.0.1:7\"\n",
    )
    .expect("config");
    let c = config.to_str().expect("path");
    let quick = [("NETWAIT_CLICKHOUSE_TIMEOUT", "1")];
    let import = |extra: &[&'static str]| {
        let mut args = vec!["import", "--config", c, "--data", "d"];
        args.extend_from_slice(extra);
        args.push(&file);
        args
    };
    // The configuration's kind and URL (a configuration names its store on purpose).
    fails_saying(t, &import(&[]), &quick, "http://127.0.0.1:7");
    let env = [
        ("NETWAIT_CLICKHOUSE_TIMEOUT", "1"),
        ("NETWAIT_CLICKHOUSE_URL", "http://127.0.0.1:8"),
    ];
    fails_saying(t, &import(&[]), &env, "http://127.0.0.1:8");
    fails_saying(
        t,
        &import(&["--clickhouse-url", "http://127.0.0.1:6"]),
        &env,
        "http://127.0.0.1:6",
    );
    let out = run_env(t, &import(&["--store", "embedded"]), &env);
    assert!(out.status.success(), "{}", err(&out));
    // The role: environment over configuration, command line over both.
    std::fs::write(&config, "[serve]\nrole = \"aggregator\"\n").expect("config");
    let serve = |extra: &[&'static str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--config", c];
        args.extend_from_slice(extra);
        args
    };
    fails_saying(t, &serve(&[]), &[], "--role aggregator needs --kafka");
    fails_saying(
        t,
        &serve(&[]),
        &[("NETWAIT_ROLE", "api")],
        "--role api serves the figures of a ClickHouse database",
    );
    fails_saying(
        t,
        &serve(&["--role", "ingest"]),
        &[("NETWAIT_ROLE", "api")],
        "--role ingest needs --kafka",
    );
    fails_saying(
        t,
        &serve(&[]),
        &[("NETWAIT_ROLE", "boss")],
        "NETWAIT_ROLE \"boss\"",
    );
}

/// Polls `stats table1 --server ADDR` until its total equals `want` (the aggregator
/// works behind the pushes' acknowledgements).
fn wait_for_total(addr: &str, want: &serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = table1(["--server", addr], "2019-03-01", "2019-04-01", &[]);
        if got == *want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn role_all_on_clickhouse_takes_pushes_and_answers_from_the_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (file, answered, lines) = calls_file(tmp.path(), 600);
    let reference = tmp.path().join("reference");
    let r = reference.to_str().expect("path");
    netwait(&["import", "--data", r, &file]);
    let want = table1(["--data", r], "2019-03-01", "2019-04-01", &[]);
    assert_eq!(want["answered"], answered);

    let url = clickhouse();
    let db = format!("nw_roles_{}", std::process::id());
    let topic = topic(2);
    let group = unique("roles");
    // A database not migrated: the process stops, saying so (its aggregator thread too).
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("unmigrated"))
        .args([
            "--role",
            "all",
            "--clickhouse-url",
            &url,
            "--clickhouse-db",
            &db,
        ])
        .args(["--kafka", broker(), "--topic", &topic, "--group", &group])
        .args(["--clickhouse-timeout", "5"])
        .output()
        .expect("serve");
    assert!(!out.status.success());
    assert!(err(&out).contains("netwait migrate"), "{}", err(&out));
    netwait(&["migrate", "--clickhouse-url", &url, "--clickhouse-db", &db]);
    // No --role: the ClickHouse store with a topic is all three.
    let server = Server::start_with(
        &tmp.path().join("ingest"),
        &[
            "--store",
            "clickhouse",
            "--clickhouse-url",
            &url,
            "--clickhouse-db",
            &db,
            "--kafka",
            broker(),
            "--topic",
            &topic,
            "--group",
            &group,
        ],
        Stdio::inherit(),
    );
    let out = netwait(&["push", "--server", &server.addr, &file]);
    assert!(
        stdout(&out).contains(&format!("accepted {lines} ")),
        "{}",
        stdout(&out)
    );
    let got = wait_for_total(&server.addr, &want);
    assert_eq!(got, want, "role all: {got}");
    let sql = json(&[
        "stats",
        "table1",
        "--clickhouse-url",
        &url,
        "--clickhouse-db",
        &db,
        "--from",
        "2019-03-01",
        "--to",
        "2019-04-01",
    ]);
    assert_eq!(sql, want);
    assert!(server.stop().success(), "SIGTERM: a clean stop");
    assert_committed(broker(), &topic, &group, lines as u64);

    // The aggregator and the api roles from one configuration file, the role (and the
    // URL) from the environment.
    let db2 = format!("{db}_cfg");
    netwait(&["migrate", "--clickhouse-url", &url, "--clickhouse-db", &db2]);
    let topic2 = common::servers::topic(1);
    tool(&["produce", &topic2, &file, "--lines-per-message", "50"]);
    let config = tmp.path().join("roles.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"clickhouse\"\nclickhouse_db = \"{db2}\"\n[kafka]\nbrokers = \"{}\"\ntopic = \"{topic2}\"\ngroup = \"{}\"\n[serve]\nrole = \"api\"\n",
            broker(),
            unique("cfg")
        ),
    )
    .expect("config");
    let c = config.to_str().expect("path");
    let mut aggregator = Command::new(BIN)
        .args(["serve", "--config", c])
        .env("NETWAIT_ROLE", "aggregator")
        .env("NETWAIT_CLICKHOUSE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("serve --role aggregator");
    // The api role (the configuration's) beside it: answers from the database.
    let (mut api, addr) = spawn_listening(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config", c])
            .env("NETWAIT_CLICKHOUSE_URL", &url)
            .env_remove("NETWAIT_ROLE")
            .env("RUST_LOG", "warn"),
    );
    let got = wait_for_total(&addr, &want);
    assert_eq!(got, want, "aggregator + api roles: {got}");
    for child in [&mut aggregator, &mut api] {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(child.wait().expect("wait").success(), "a clean stop");
    }
}
