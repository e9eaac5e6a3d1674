//! Two aggregators of one group share its partitions (issue 12: "two aggregators in one
//! group share the partitions; one killed, the other takes over; figures exact"), with
//! the real broker and ClickHouse of `deploy/up`: each writes the shards of the
//! partitions it holds; one is killed -9, the other takes its partitions and their
//! shards over and counts the rest; the figures are the seed's import's. A database
//! written by one writer of every partition cannot be shared, nor a shared one written
//! by an import.

mod common;
use common::servers::*;
use common::*;
use std::time::Duration;

/// The partitions an aggregator's log says it opened the shard of.
fn shards_opened(log: &str) -> usize {
    log.matches("writing the shard of the partition").count()
}

#[test]
fn two_aggregators_share_the_partitions_and_one_takes_over_from_the_other_killed() {
    let (url, db) = fresh_database("nwtest_shared");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = seed_file(tmp.path());
    let imported = tmp.path().join("imported");
    let imported_s = imported.to_str().expect("utf-8 path");
    netwait(&["import", "--data", imported_s, file.to_str().expect("path")]);
    let expected = year_2019(&["--data", imported_s]);

    // The year in two halves: the second produced once the first aggregator is dead.
    let text = std::fs::read_to_string(&file).expect("seed");
    let lines: Vec<&str> = text.lines().collect();
    let (first_half, second_half) = lines.split_at(lines.len() / 2);
    let halves = [first_half, second_half].map(|part| {
        let path = tmp.path().join(format!("part{}.ndjson", part.len()));
        std::fs::write(&path, part.join("\n") + "\n").expect("write");
        path
    });

    let topic = topic(3);
    // One event a message, keyed by its call id (every call in one partition).
    tool(&["produce", &topic, halves[0].to_str().expect("path")]);
    let group = unique("shared");
    let state = tmp.path().join("state");
    let unused = tmp.path().join("unused");
    let ch = ["--clickhouse", url.as_str(), "--database", db.as_str()];
    let mut args = aggregate_args(unused.to_str().expect("utf-8 path"), &topic, &group);
    args.extend_from_slice(&ch);
    // (An aggregator given only drained partitions idles until the first is killed:
    // the settling and the refused import take seconds on a loaded machine.)
    args.extend_from_slice(&[
        "--idle-exit",
        "20",
        "--share-partitions",
        "--state-dir",
        state.to_str().expect("utf-8 path"),
    ]);

    let mut first = Aggregator::spawn(&args);
    first.wait_log(
        "writing the shard of the partition",
        Duration::from_secs(90),
    );
    let second = Aggregator::spawn(&args);
    second.wait_log(
        "writing the shard of the partition",
        Duration::from_secs(90),
    );
    // The group settled with both: the first gave its three partitions up and was
    // given some of them back, the second the others.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (first.log(), second.log());
        if shards_opened(&b) > 0 && a.contains("handed over") && shards_opened(&a) > 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first never gave partitions up:\n{a}\n---\n{b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A writer of every partition is refused beside them, and says why.
    let mut import = vec!["import"];
    import.extend_from_slice(&ch);
    import.push(halves[1].to_str().expect("path"));
    refused(
        &import,
        "an import into a shared database",
        "is shared by the aggregators of a group",
    );

    std::thread::sleep(Duration::from_millis(1_000));
    assert!(first.running(), "still consuming");
    let before_kill = shards_opened(&second.log());
    first.kill();
    tool(&["produce", &topic, halves[1].to_str().expect("path")]);
    // The survivor is assigned every partition; it opens the shards it did not hold.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while shards_opened(&second.log()) < 3.max(before_kill + 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the survivor took nothing over: {}",
            second.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, total, log) = second.finish(Duration::from_secs(240));
    assert!(status.success(), "survivor: {status:?}\n{log}");
    assert!(total.contains("rejected 0"), "{total}");
    assert_eq!(year_2019(&ch), expected, "after the takeover");
    assert_committed(broker(), &topic, &group, lines.len() as u64);
    let shards = clickhouse_sql(&format!(
        "SELECT uniqExact(shard) FROM {db}.netwait_log WHERE kind = 6 AND shard != ''"
    ));
    assert_eq!(shards.trim(), "3", "a shard per partition");

    // The monthly BI view of shards sums them: its year is the seed's too.
    let answered: u64 = clickhouse_sql(&format!(
        "SELECT sum(answered) FROM {db}.netwait_monthly WHERE month >= '2019-01-01' AND month < '2020-01-01'"
    ))
    .trim()
    .parse()
    .expect("a count");
    assert_eq!(
        Some(answered),
        expected.0["answered"].as_u64(),
        "the monthly view's answered calls of the year"
    );
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn a_database_of_one_writer_is_not_shared() {
    let (url, db) = fresh_database("nwtest_unshared");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (text, _, _) = march_calls(20);
    let file = tmp.path().join("march.ndjson");
    std::fs::write(&file, text).expect("write");
    let ch = ["--clickhouse", url.as_str(), "--database", db.as_str()];
    let mut import = vec!["import"];
    import.extend_from_slice(&ch);
    import.push(file.to_str().expect("path"));
    netwait(&import);
    let topic = topic(1);
    let group = unique("unshared");
    let unused = tmp.path().join("unused");
    let mut share = aggregate_args(unused.to_str().expect("utf-8 path"), &topic, &group);
    share.push("--share-partitions");
    share.extend_from_slice(&ch);
    refused(
        &share,
        "sharing a database of one writer",
        "already holds commits",
    );
    // On the embedded store there is nothing to share.
    let data = tmp.path().join("data");
    refused(
        &[
            "aggregate",
            "--kafka",
            broker(),
            "--topic",
            &topic,
            "--share-partitions",
            "--data",
            data.to_str().expect("utf-8 path"),
        ],
        "sharing a data directory",
        "needs the ClickHouse store",
    );
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}
