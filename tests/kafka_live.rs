//! The live side in the Kafka/ClickHouse mode (issue 14 there), against the real broker
//! and ClickHouse of `deploy/up`: events produced into the topic by an independent client
//! (confluent-kafka), `netwait aggregate --clickhouse` filling the database, and the api
//! role `netwait serve --role api --clickhouse --kafka --topic --http-listen` following the topic
//! for its live state. A call crossing 120 s raises the long-wait alert in
//! `Live.WatchQueue` (`netwait watch`) and clears when answered; the month-to-date SLA
//! of the live state equals `stats sla` from ClickHouse for the month (yesterday's
//! calls are only in ClickHouse, one of yesterday's is also in the topic, today's are in
//! both: counted once each); the consumer lag and the live gauges are on `/metrics`. A
//! broker of the test's own killed: the `source_unreachable` alert, the api still
//! answering; back: cleared. On a clock the test moves, the live book starts again at
//! local midnight and holds none of the days before.

mod common;
use common::servers::*;
use common::*;
use netwait_aggregator::domain::time::{RomeClock, local_date, rome_midnight};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const S: i64 = 1000;
/// The SLA threshold (the spec's T) in ms.
const T: i64 = 140 * S;

/// An answered call of `line` `cup`: offered at `at`, the 40 s message, a net wait of
/// `wait`, two minutes of talk.
fn answered(id: &str, at: i64, wait: i64) -> Vec<String> {
    let ev = |kind: &str, ts: i64, extra: &str| {
        format!(r#"{{"call_id":"{id}","type":"{kind}","ts":{ts}{extra}}}"#)
    };
    vec![
        ev("offered", at, r#","line":"cup""#),
        ev("announcement_end", at + 40 * S, ""),
        ev("answered", at + 40 * S + wait, r#","agent":"op1""#),
        ev("ended", at + 160 * S + wait, ""),
    ]
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write events");
}

/// A configuration every process of the test reads: every hour is service time.
fn config(dir: &Path) -> String {
    let path = dir.join("netwait.toml");
    std::fs::write(&path, "[calendar]\nmode = \"24x7\"\n").expect("config");
    path.display().to_string()
}

/// Midnight (Europe/Rome) starting today, today's date and whether yesterday is of the
/// same month.
fn today() -> (i64, String, bool) {
    let (day, _) = RomeClock::default().local_day(now_ms());
    let date = local_date(day);
    let same_month = local_date(day - 1).month() == date.month();
    (rome_midnight(date), date.to_string(), same_month)
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn line<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["lines"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["line"] == name))
        .unwrap_or_else(|| panic!("no line {name} in {state}"))
}

fn open_alert(state: &Value, rule: &str) -> bool {
    state["open_alerts"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["rule"] == rule))
}

/// The configuration and the ClickHouse database, as every command of the test takes them.
fn store_args<'a>(cfg: &'a str, db: &'a str) -> [&'a str; 6] {
    [
        "--config",
        cfg,
        "--clickhouse",
        clickhouse_url(),
        "--database",
        db,
    ]
}

/// The api role on `db` following `topic` at `brokers`.
fn api_role(dir: &Path, cfg: &str, db: &str, brokers: &str, topic: &str) -> Server {
    let mut args = store_args(cfg, db).to_vec();
    args.extend_from_slice(&[
        "--role",
        "api",
        "--kafka",
        brokers,
        "--topic",
        topic,
        "--http-listen",
        "127.0.0.1:0",
    ]);
    Server::start_with(&dir.join("unused"), &args, Stdio::inherit())
}

fn migrated() -> String {
    let db = format!("live_{}", unique("t").replace('-', "_"));
    netwait(&[
        "migrate",
        "--clickhouse",
        clickhouse_url(),
        "--database",
        &db,
    ]);
    db
}

/// The gRPC health of the whole server (1: SERVING).
fn serving(url: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(url.to_owned())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .expect("health check")
            .into_inner()
            .status
    })
}

#[test]
fn the_api_role_follows_the_topic_alerts_on_a_long_wait_and_its_month_to_date_is_clickhouses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let (mut midnight, date, mut same_month) = today();
    // Today's calls need room after midnight (a run just after it waits a little).
    if now_ms() - midnight < 15 * 60 * S {
        std::thread::sleep(Duration::from_millis(
            (midnight + 15 * 60 * S - now_ms()) as u64,
        ));
        (midnight, _, same_month) = today();
    }
    let id = |name: &str| format!("{}-{name}", unique("c"));
    let db = migrated();

    // Yesterday's calls are in ClickHouse only (the topic's look-back does not reach
    // them): two within the threshold, one over.
    let yesterday = midnight - 10 * 3600 * S;
    let mut past = Vec::new();
    for (i, wait) in [30, 60, 200].into_iter().enumerate() {
        past.extend(answered(&id("y"), yesterday + i as i64 * 600 * S, wait * S));
    }
    let past_file = tmp.path().join("past.ndjson");
    write_lines(&past_file, &past);
    let store = store_args(&cfg, &db);
    let mut import = vec!["import"];
    import.extend_from_slice(&store);
    import.push(past_file.to_str().expect("path"));
    netwait(&import);

    // In the topic: one of yesterday's calls published late (over the threshold), an
    // operator, and two of today's (one within, one over).
    let topic = topic(3);
    let early = midnight + 60 * S;
    let mut events = answered(&id("late"), midnight - 1800 * S, 250 * S);
    events.push(format!(
        r#"{{"type":"agent_login","ts":{early},"agent":"op1"}}"#
    ));
    events.extend(answered(&id("d1"), early, 20 * S));
    events.extend(answered(&id("d2"), early + 60 * S, 300 * S));
    let file = tmp.path().join("events.ndjson");
    write_lines(&file, &events);
    tool(&["produce", &topic, file.to_str().expect("path")]);

    let group = unique("live");
    let unused = tmp.path().join("unused");
    let mut aggregate = aggregate_args(unused.to_str().expect("path"), &topic, &group);
    aggregate.extend_from_slice(&store);
    let aggregator = Aggregator::spawn(&aggregate);
    aggregator.wait_assigned(Duration::from_secs(60));

    let server = api_role(tmp.path(), &cfg, &db, broker(), &topic);
    // Caught up: today's two calls answered, the operator logged in, nothing waits.
    wait_until(
        "the live state has today's calls",
        Duration::from_secs(60),
        || {
            let s = live_state(&server);
            s["operators"]["logged_in"] == 1 && line(&s, "cup")["today"]["answered"] == 0.5
        },
    );
    let (mut watcher, updates) = watch(&server);
    wait_line(&updates, "a first update", |l| l.starts_with("seq "));

    // A caller whose net wait reaches 120 s about 3 s from now.
    let t = now_ms();
    let slow = id("slow");
    let ev = |kind: &str, at: i64, extra: &str| {
        format!(r#"{{"call_id":"{slow}","type":"{kind}","ts":{at}{extra}}}"#)
    };
    let waiting = tmp.path().join("waiting.ndjson");
    write_lines(
        &waiting,
        &[
            ev("offered", t - 157 * S, r#","line":"cup""#),
            ev("announcement_end", t - 117 * S, ""),
        ],
    );
    tool(&["produce", &topic, waiting.to_str().expect("path")]);
    let raised = wait_line(&updates, "the long_wait alert", |l| {
        l.contains("ALERT") && l.contains("long_wait")
    });
    assert!(raised.contains("cup waiting 1 longest 12"), "{raised}");
    assert!(
        now_ms() - t >= 2_900,
        "raised before the call crossed 120 s"
    );
    let metrics = curl_ok(&[&format!("{}/metrics", server.http_url())]);
    for want in [
        "netwait_live_waiting{line=\"cup\"} 1\n".to_owned(),
        "netwait_alerts_open{rule=\"long_wait\"} 1\n".to_owned(),
        format!("netwait_kafka_consumer_lag_messages{{partition=\"{topic}/0\"}}"),
    ] {
        assert!(metrics.contains(&want), "{want} in {metrics}");
    }

    // Answered: cleared.
    let answered_at = now_ms();
    let answer = tmp.path().join("answer.ndjson");
    write_lines(
        &answer,
        &[
            ev("answered", answered_at, r#","agent":"op1""#),
            ev("ended", answered_at + S, ""),
        ],
    );
    tool(&["produce", &topic, answer.to_str().expect("path")]);
    wait_line(&updates, "the alert cleared", |l| {
        !l.contains("long_wait") && l.contains("cup waiting 0")
    });
    let _ = watcher.kill();
    let _ = watcher.wait();

    // Every message followed: the lag of each partition is 0 on /metrics.
    wait_until("no lag on /metrics", Duration::from_secs(30), || {
        let m = curl_ok(&[&format!("{}/metrics", server.http_url())]);
        (0..3).all(|p| {
            m.contains(&format!(
                "netwait_kafka_consumer_lag_messages{{partition=\"{topic}/{p}\"}} 0\n"
            ))
        })
    });

    // The month to date: ClickHouse's days before today and the live book's today, each
    // call counted once, as `stats sla` counts the month from ClickHouse.
    let slow_within = answered_at - (t - 117 * S) < T;
    let (mut within, mut calls): (u64, u64) = (1 + u64::from(slow_within), 3);
    if same_month {
        within += 2;
        calls += 4;
    }
    let month = &date[..7];
    let year = &date[..4];
    let stats_month = || -> Value {
        let mut sla = vec!["stats", "sla", "--year", year, "--line", "cup"];
        sla.extend_from_slice(&store);
        let y = json(&sla);
        y["months"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["month"] == month).cloned())
            .unwrap_or_else(|| panic!("no month {month} in {y}"))
    };
    let expected = within as f64 / calls as f64;
    wait_until(
        "ClickHouse has every call of the month",
        Duration::from_secs(60),
        || stats_month()["answered"] == calls,
    );
    wait_until(
        "the live month to date is ClickHouse's",
        Duration::from_secs(60),
        || {
            let s = live_state(&server);
            line(&s, "cup")["month_to_date"]["sla"]
                .as_f64()
                .is_some_and(|x| (x - expected).abs() < 1e-9)
        },
    );
    let live = live_state(&server);
    let mtd = &line(&live, "cup")["month_to_date"];
    let sql = stats_month();
    assert_eq!(mtd["sla"], sql["sla"], "{mtd} vs {sql}");
    for policy in ["answered", "answered_and_abandoned", "offered"] {
        assert_eq!(
            mtd[policy], sql["policies"][policy],
            "{policy}: {mtd} vs {sql}"
        );
    }
    let today_sla = line(&live, "cup")["today"]["answered"].as_f64();
    assert_eq!(
        today_sla,
        Some((1 + u64::from(slow_within)) as f64 / 3.0),
        "today: the live book's calls of today only"
    );
    assert!(server.stop().success(), "the api role stops on SIGTERM");
    drop(aggregator);
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn a_broker_outage_is_an_alert_and_the_api_role_keeps_answering() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let db = migrated();
    let mut own = OwnBroker::start("live");
    let topic = topic_on(&own.address, 2);
    let server = api_role(tmp.path(), &cfg, &db, &own.address, &topic);
    wait_until("a first live state", Duration::from_secs(30), || {
        live_state(&server)["seq"].as_u64().is_some_and(|s| s > 1)
    });
    assert!(!open_alert(&live_state(&server), "source_unreachable"));

    own.deploy("kill");
    wait_until(
        "the source_unreachable alert",
        Duration::from_secs(60),
        || open_alert(&live_state(&server), "source_unreachable"),
    );
    // The api still answers: its health, the Stats service from ClickHouse, /metrics.
    assert_eq!(serving(&server.url()), 1, "health: SERVING");
    netwait(&[
        "stats",
        "table1",
        "--server",
        &server.url(),
        "--from",
        "2019-01-01",
        "--to",
        "2019-02-01",
        "--json",
    ]);
    let metrics = curl_ok(&[&format!("{}/metrics", server.http_url())]);
    assert!(
        metrics.contains("netwait_alerts_open{rule=\"source_unreachable\"} 1\n"),
        "{metrics}"
    );

    own.up();
    wait_until(
        "the source_unreachable alert cleared",
        Duration::from_secs(60),
        || !open_alert(&live_state(&server), "source_unreachable"),
    );
    let recent = live_state(&server)["recent_alerts"].clone();
    assert!(
        recent.as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["rule"] == "source_unreachable" && a["cleared_ms"].is_i64())),
        "{recent}"
    );
    assert!(server.stop().success());
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn the_live_book_starts_again_at_local_midnight_and_forgets_the_days_before() {
    use netwait_aggregator::domain::config::MetricsConfig;
    use netwait_api::live::ManualClock;
    use netwait_api::live::follower::{FollowOptions, Follower};
    use std::sync::Arc;

    let tmp = tempfile::tempdir().expect("tempdir");
    let topic = topic(2);
    let t = now_ms();
    let mut events = Vec::new();
    for i in 0..3 {
        events.extend(answered(
            &format!("{}-{i}", unique("b")),
            t - 600 * S,
            30 * S,
        ));
    }
    let file = tmp.path().join("events.ndjson");
    write_lines(&file, &events);
    tool(&["produce", &topic, file.to_str().expect("path")]);

    // The follower and the live runner on a clock the test moves.
    let clock = ManualClock::new(t);
    let options = FollowOptions {
        brokers: broker().to_owned(),
        topic: topic.clone(),
        timeout: Duration::from_secs(10),
        config: MetricsConfig::default(),
    };
    let (opened, snapshots) = Follower::open(options, Arc::new(clock.clone())).expect("follow");
    let (feed, _live) = netwait_api::live::runner::start(
        netwait_api::live::LiveRules::default(),
        Arc::new(clock.clone()),
        snapshots.clone(),
        None,
    )
    .expect("live thread");
    let follower = opened.start(feed).expect("follower");
    let calls = || snapshots.borrow().calls();
    wait_until(
        "the book has the topic's calls",
        Duration::from_secs(30),
        || calls() == 3,
    );

    // Two days later: the new day's look-back starts after every message there is, so
    // the new book has none of them; what is published next is followed.
    clock.advance(2 * 24 * 3600 * S);
    wait_until(
        "the book of the new day, without the old calls",
        Duration::from_secs(30),
        || calls() == 0,
    );
    let later = tmp.path().join("later.ndjson");
    write_lines(&later, &answered(&unique("n"), now_ms(), 10 * S));
    tool(&["produce", &topic, later.to_str().expect("path")]);
    wait_until(
        "the new day's book follows the topic",
        Duration::from_secs(30),
        || calls() == 1,
    );
    drop(follower);
}
