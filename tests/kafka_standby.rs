//! Two aggregators of one group on one store (issue 12: "one killed, the other takes
//! over; figures exact"), with the real broker and ClickHouse of `deploy/up`: the second
//! stands by while the first writes (a store has one writer: the data directory's lock,
//! the ClickHouse writer lease), takes over when the first is killed -9 and counts the
//! rest; the figures are the seed's import's. An import beside a running writer is
//! refused with a clear error.

mod common;
use common::servers::*;
use common::*;
use std::time::Duration;

/// The scenario on `store` (the arguments naming it to `aggregate` and `import`), read
/// back with `stats` and the arguments `query`.
fn one_killed_the_other_takes_over(store: &[&str], query: &[&str]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = seed_file(tmp.path());
    let imported = tmp.path().join("imported");
    let imported_s = imported.to_str().expect("utf-8 path");
    netwait(&["import", "--data", imported_s, file.to_str().expect("path")]);
    let expected = year_2019(&["--data", imported_s]);
    let lines = std::fs::read_to_string(&file)
        .expect("seed")
        .lines()
        .count();

    let topic = topic(3);
    tool(&["produce", &topic, file.to_str().expect("path")]);
    let group = unique("standby");
    let mut args = vec![
        "aggregate",
        "--kafka",
        broker(),
        "--topic",
        &topic,
        "--group",
        &group,
        "--idle-exit",
        "8",
    ];
    args.extend_from_slice(store);

    let mut first = Aggregator::spawn(&args);
    first.wait_assigned(Duration::from_secs(60));
    let second = Aggregator::spawn(&args);
    second.wait_log("standing by", Duration::from_secs(60));
    assert!(
        !second.log().contains("partitions assigned"),
        "the standby joined the group: {}",
        second.log()
    );
    // Another writer beside them is refused, and says why.
    let mut import = vec!["import"];
    import.extend_from_slice(store);
    import.push(file.to_str().expect("path"));
    refused(
        &import,
        "an import beside a running writer",
        "another netwait",
    );

    std::thread::sleep(Duration::from_millis(1_500));
    assert!(first.running(), "still consuming");
    first.kill();
    second.wait_assigned(Duration::from_secs(90));
    let (status, total, log) = second.finish(Duration::from_secs(180));
    assert!(status.success(), "standby: {status:?}\n{log}");
    let taken: u64 = total
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("total line: {total}"));
    assert!(taken > 0, "the standby counted the rest: {total}");
    assert!(total.contains("rejected 0"), "{total}");
    assert_eq!(year_2019(query), expected, "after the takeover");
    assert_committed(broker(), &topic, &group, lines as u64);
}

#[test]
fn on_clickhouse_a_standby_aggregator_takes_over_from_one_killed() {
    let url = clickhouse();
    let db = format!("nwtest_standby_{}", std::process::id());
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let unused = tmp.path().join("unused");
    let ch = ["--clickhouse", url.as_str(), "--database", db.as_str()];
    let mut store = vec!["--data", unused.to_str().expect("utf-8 path")];
    store.extend_from_slice(&ch);
    one_killed_the_other_takes_over(&store, &ch);
}

#[test]
fn on_a_data_directory_a_standby_aggregator_takes_over_from_one_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("shared");
    let store = ["--data", data.to_str().expect("utf-8 path")];
    one_killed_the_other_takes_over(&store, &store);
}

#[test]
fn a_writer_taken_over_on_clickhouse_commits_nothing_more() {
    let url = clickhouse();
    let db = format!("nwtest_fenced_{}", std::process::id());
    clickhouse_sql(&format!("DROP DATABASE IF EXISTS {db}"));
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (text, _, _) = march_calls(200);
    let (before, after) = text.split_at(text.len() / 2);
    let cut = before.rfind('\n').map_or(0, |i| i + 1);
    let (before, after) = (&text[..cut], format!("{}{after}", &before[cut..]));
    let first = tmp.path().join("first.ndjson");
    let second = tmp.path().join("second.ndjson");
    std::fs::write(&first, before).expect("write");
    std::fs::write(&second, after).expect("write");

    let topic = topic(1);
    tool(&["produce", &topic, first.to_str().expect("path")]);
    let unused = tmp.path().join("unused");
    let group = unique("fenced");
    let ch = ["--clickhouse", url.as_str(), "--database", db.as_str()];
    let mut args = aggregate_args(unused.to_str().expect("utf-8 path"), &topic, &group);
    args.extend_from_slice(&ch);
    let empty = year_2019(&ch);
    let writer = Aggregator::spawn(&args);
    writer.wait_assigned(Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while year_2019(&ch) == empty {
        assert!(
            std::time::Instant::now() < deadline,
            "the first half counted"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Idle again (the first half is one window).
    std::thread::sleep(Duration::from_secs(2));
    let counted = year_2019(&ch);
    // Another writer claims the next epoch (as a standby does once it finds the holder
    // silent): the running one must not commit again.
    clickhouse_sql(&format!(
        "INSERT INTO {db}.netwait_leases (shard, epoch, writer, since, at) \
         SELECT '', max(epoch) + 1, 'elsewhere/1/00', toUInt32(now()), toUInt32(now()) \
         FROM {db}.netwait_leases WHERE shard = ''"
    ));
    tool(&["produce", &topic, second.to_str().expect("path")]);
    writer.wait_log("took ClickHouse database", Duration::from_secs(60));
    let (status, _, log) = writer.finish(Duration::from_secs(60));
    assert!(
        !status.success(),
        "the writer taken over stops with an error: {log}"
    );
    assert_eq!(
        year_2019(&ch),
        counted,
        "nothing committed after the takeover"
    );
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}
