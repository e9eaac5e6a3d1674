//! The ClickHouse store (issue 12 items 2 and 4), against the real server `deploy/up
//! clickhouse` starts (never skipped: started when `NETWAIT_CLICKHOUSE_URL` is not set).
//! Each test has a database of its own.

mod common;
use common::servers::{clickhouse_sql, clickhouse_url};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A fresh database name for one test (dropped first if a run before left it).
fn database(name: &str) -> String {
    let db = format!("nwtest_{name}_{}", std::process::id());
    clickhouse_sql(&format!("DROP DATABASE IF EXISTS {db}"));
    db
}

fn migrate(db: &str) {
    let out = netwait(&[
        "migrate",
        "--clickhouse",
        clickhouse_url(),
        "--database",
        db,
    ]);
    assert!(
        stdout(&out).contains("schema version 7"),
        "{}",
        stdout(&out)
    );
}

fn import(db: &str, files: &[&str]) -> String {
    let mut args = vec!["import", "--clickhouse", clickhouse_url(), "--database", db];
    args.extend_from_slice(files);
    stdout(&netwait(&args))
}

fn ch_table1(db: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "stats",
        "table1",
        "--clickhouse",
        clickhouse_url(),
        "--database",
        db,
        "--from",
        "2019-01-01",
        "--to",
        "2020-01-01",
    ];
    args.extend_from_slice(extra);
    json(&args)
}

fn ch_sla(db: &str) -> Value {
    json(&[
        "stats",
        "sla",
        "--clickhouse",
        clickhouse_url(),
        "--database",
        db,
        "--year",
        "2019",
    ])
}

fn embedded(dir: &Path, files: &[&str]) -> (Value, Value) {
    let d = dir.to_str().expect("path");
    let mut args = vec!["import", "--data", d];
    args.extend_from_slice(files);
    netwait(&args);
    let t = table1(["--data", d], "2019-01-01", "2020-01-01", &[]);
    let s = json(&["stats", "sla", "--data", d, "--year", "2019"]);
    (t, s)
}

/// The seed's 2019 column (seed §1.2).
fn assert_seed(t: &Value) {
    let want = [
        ("calls_received", 181_795.0),
        ("answered", 97_385.0),
        ("overflow", 47_154.0),
        ("abandoned", 37_256.0),
        ("answered_without_wait", 13_745.0),
        ("answered_wait_within_threshold", 31_358.0),
        ("answered_wait_over_threshold", 52_282.0),
        ("bookings", 88_210.0),
        ("max_wait_s", 1240.0),
        ("avg_wait_s", 229.0),
        ("avg_talk_s", 184.0),
    ];
    for (k, w) in want {
        assert_eq!(t[k].as_f64(), Some(w), "{k}: {}", t[k]);
    }
}

/// Splits a file's lines into `n` files, line i going to file i % n (so every file
/// holds events of every call: each import reorders the calls' events).
fn split(src: &Path, dir: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(src).expect("read");
    let mut parts = vec![String::new(); n];
    for (i, line) in text.lines().enumerate() {
        parts[i % n].push_str(line);
        parts[i % n].push('\n');
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.join(format!("part{i}.ndjson"));
            std::fs::write(&path, p).expect("write");
            path.to_str().expect("path").to_owned()
        })
        .collect()
}

#[test]
fn seed_year_imported_into_clickhouse_gives_the_seed_and_the_embedded_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let seed_s = seed.to_str().expect("path");
    let db = database("seed");
    migrate(&db);
    // Migrating again applies nothing.
    let again = netwait(&[
        "migrate",
        "--clickhouse",
        clickhouse_url(),
        "--database",
        &db,
    ]);
    assert!(
        stdout(&again).contains("(0 applied now)"),
        "{}",
        stdout(&again)
    );
    let printed = import(&db, &[seed_s]);
    assert!(printed.contains("duplicate 0 rejected 0"), "{printed}");
    let t = ch_table1(&db, &[]);
    assert_seed(&t);
    let (et, es) = embedded(&tmp.path().join("data"), &[seed_s]);
    assert_eq!(t, et, "Table 1: ClickHouse vs embedded");
    let s = ch_sla(&db);
    assert_eq!(s, es, "SLA year: ClickHouse vs embedded");
    // Another threshold: counted from the call records by the generated expressions.
    for extra in [["--threshold", "60"], ["--line", "cup"]] {
        let d = tmp.path().join("data");
        let embedded = table1(
            ["--data", d.to_str().expect("path")],
            "2019-01-01",
            "2020-01-01",
            &extra,
        );
        assert_eq!(ch_table1(&db, &extra), embedded, "{extra:?}");
    }
    // The monthly BI view, read with plain SQL, gives the API's monthly figures.
    let rows = clickhouse_sql(&format!(
        "SELECT toMonth(month), answered, sla_numerator, sla_denominator_answered, calls_received \
         FROM {db}.netwait_monthly WHERE line = 'cup' ORDER BY month FORMAT TabSeparated"
    ));
    let months = s["months"].as_array().expect("months");
    let mut seen = 0;
    for row in rows.lines() {
        let f: Vec<u64> = row
            .split('\t')
            .map(|x| x.parse().expect("number"))
            .collect();
        let m = &months[f[0] as usize - 1];
        assert_eq!(m["answered"].as_u64(), Some(f[1]), "{row} vs {m}");
        assert_eq!(
            m["answered_within_threshold"].as_u64(),
            Some(f[2]),
            "{row} vs {m}"
        );
        assert_eq!(m["answered"].as_u64(), Some(f[3]), "{row} vs {m}");
        let received = ["answered", "abandoned", "overflow"].map(|k| m[k].as_u64().expect("count"));
        assert_eq!(received.iter().sum::<u64>(), f[4], "{row} vs {m}");
        seen += 1;
    }
    assert_eq!(seen, 12, "{rows}");
    // A database of schema 4 (its day rows and its migrations from 5 taken away) migrated
    // again: the day rows made from its cells answer the same.
    for mutation in [
        format!("ALTER TABLE {db}.netwait_log DELETE WHERE kind = 8"),
        format!("ALTER TABLE {db}.netwait_migrations DELETE WHERE version >= 5"),
    ] {
        clickhouse_sql(&mutation);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while clickhouse_sql(&format!(
        "SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0"
    ))
    .trim()
        != "0"
    {
        assert!(std::time::Instant::now() < deadline, "mutations done");
        std::thread::sleep(Duration::from_millis(200));
    }
    let days = |db: &str| {
        clickhouse_sql(&format!(
            "SELECT count() FROM {db}.netwait_log WHERE kind = 8"
        ))
        .trim()
        .to_owned()
    };
    assert_eq!(days(&db), "0");
    migrate(&db);
    assert_ne!(days(&db), "0", "day rows made by migration 5");
    assert_eq!(ch_table1(&db, &[]), t, "Table 1 over the migrated day rows");
    assert_eq!(ch_sla(&db), s, "SLA year over the migrated day rows");
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn late_duplicate_and_reordered_events_stay_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let parts = split(&seed, tmp.path(), 5);
    let db = database("reorder");
    migrate(&db);
    // The parts in reverse order, in two imports, then two of them again (duplicates).
    let p: Vec<&str> = parts.iter().map(String::as_str).collect();
    import(&db, &[p[4], p[3]]);
    import(&db, &[p[2], p[1], p[0]]);
    let again = import(&db, &[p[3], p[0]]);
    assert!(again.contains("accepted 0"), "{again}");
    let t = ch_table1(&db, &[]);
    assert_seed(&t);
    let (et, es) = embedded(&tmp.path().join("data"), &[seed.to_str().expect("path")]);
    assert_eq!(t, et);
    assert_eq!(ch_sla(&db), es);
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn kill_9_during_import_then_import_again_is_exact() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let seed_s = seed.to_str().expect("path");
    let db = database("kill");
    migrate(&db);
    for wait_ms in [1500u64, 3000] {
        let mut child = Command::new(BIN)
            .args([
                "import",
                "--clickhouse",
                clickhouse_url(),
                "--database",
                &db,
                seed_s,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn import");
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().expect("kill -9");
        child.wait().expect("wait");
    }
    import(&db, &[seed_s]);
    let t = ch_table1(&db, &[]);
    assert_seed(&t);
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

/// What a writer killed mid-insert leaves on ClickHouse 18.16: the first rows of a
/// commit (cells, calls, records) without its commit row. None of it may count, replay
/// must pass over it, and the next commit must not share its seq.
#[test]
fn rows_of_a_commit_cut_short_are_not_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let parts = split(&seed, tmp.path(), 2);
    let db = database("cut");
    migrate(&db);
    import(&db, &[&parts[0]]);
    let before = ch_table1(&db, &[]);
    let top: u64 = clickhouse_sql(&format!("SELECT max(seq) FROM {db}.netwait_log"))
        .trim()
        .parse()
        .expect("seq");
    let cut = top + 1;
    clickhouse_sql(&format!(
        "INSERT INTO {db}.netwait_log (seq, kind, idx, payload, day, interval_n, line, sign, \
         call_n, anchor_ms, outcome, net_wait_ms, talk_ms, answered, max_wait_ms) VALUES \
         ({cut}, 1, 1, 'not an encoded record', '2019-03-04', 0, '', 0, 0, 0, 0, 0, 0, 0, 0), \
         ({cut}, 2, 2, '', '2019-03-04', 1718340, 'cut-line', 0, 0, 0, 0, 0, 0, 1000000, 9999000), \
         ({cut}, 3, 3, '', '2019-03-04', 1718340, 'cut-line', 1, 999999, 1551690000000, 1, 1000, 60000, 0, 0)"
    ));
    assert_eq!(ch_table1(&db, &[]), before, "rows of a cut commit counted");
    // The next import opens the store (replaying its records) and commits above the cut.
    import(&db, &[&parts[1]]);
    let t = ch_table1(&db, &[]);
    assert_seed(&t);
    let fenced = clickhouse_sql(&format!(
        "SELECT count() FROM {db}.netwait_log WHERE kind = 9 AND seq <= {cut} AND source_position >= {cut}"
    ));
    assert_eq!(fenced.trim(), "1", "the cut commit fenced off");
    // Nor is the line only the cut rows name.
    let line = Command::new(BIN)
        .args([
            "stats",
            "table1",
            "--clickhouse",
            clickhouse_url(),
            "--database",
            &db,
            "--from",
            "2019-01-01",
            "--to",
            "2020-01-01",
            "--line",
            "cut-line",
        ])
        .output()
        .expect("run stats");
    let said = String::from_utf8_lossy(&line.stderr);
    assert!(
        !line.status.success() && said.contains("unknown line \"cut-line\""),
        "{said}"
    );
    let (et, _) = embedded(&tmp.path().join("data"), &[seed.to_str().expect("path")]);
    assert_eq!(t, et);
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

/// A writer stalled past its lease (taken over by another) may still land an insert it
/// had under way: a whole commit, commit row and all, under a seq of its epoch.
/// The writer that took over fenced that range off when it opened: none of it counts,
/// in queries, in the BI views, or in the replay of the next writer.
#[test]
fn a_commit_landing_after_its_writer_was_taken_over_is_not_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let parts = split(&seed, tmp.path(), 2);
    let db = database("fenced");
    migrate(&db);
    import(&db, &[&parts[0]]);
    // A writer of the next epoch that stopped without handing the lease over (killed,
    // or stalled past its lease): silent for a minute, so the next writer takes over.
    let epoch: u64 = clickhouse_sql(&format!(
        "SELECT max(epoch) FROM {db}.netwait_leases WHERE shard = ''"
    ))
    .trim()
    .parse()
    .expect("epoch");
    let stalled = epoch + 1;
    clickhouse_sql(&format!(
        "INSERT INTO {db}.netwait_leases (shard, epoch, writer, since, at) \
         SELECT '', {stalled}, 'elsewhere/1/stalled', toUInt32(now()) - 60, toUInt32(now()) - 60"
    ));
    // The next writer (it takes the lease over) commits the rest of the year.
    import(&db, &[&parts[1]]);
    let t = ch_table1(&db, &[]);
    assert_seed(&t);
    let monthly = || {
        clickhouse_sql(&format!(
            "SELECT month, line, calls_received, answered, sla_numerator FROM {db}.netwait_monthly ORDER BY month, line"
        ))
    };
    let views_before = monthly();
    // The stalled writer's insert lands now, whole, under its first seq.
    let late = (stalled << 40) + 1;
    clickhouse_sql(&format!(
        "INSERT INTO {db}.netwait_log (seq, kind, idx, payload, day, interval_n, line, sign, \
         call_n, anchor_ms, outcome, net_wait_ms, talk_ms, answered, max_wait_ms) VALUES \
         ({late}, 1, 1, 'not an encoded record', '2019-03-04', 0, '', 0, 0, 0, 0, 0, 0, 0, 0), \
         ({late}, 2, 2, '', '2019-03-04', 1718340, 'late-line', 0, 0, 0, 0, 0, 0, 1000000, 9999000), \
         ({late}, 8, 3, '', '2019-03-04', 0, 'late-line', 0, 0, 0, 0, 0, 0, 1000000, 9999000), \
         ({late}, 3, 4, '', '2019-03-04', 1718340, 'late-line', 1, 999999, 1551690000000, 1, 1000, 60000, 0, 0)"
    ));
    clickhouse_sql(&format!(
        "INSERT INTO {db}.netwait_log (seq, kind, idx) VALUES ({late}, 6, 5)"
    ));
    assert_eq!(ch_table1(&db, &[]), t, "a fenced commit counted");
    assert_eq!(monthly(), views_before, "a fenced commit in the BI views");
    // A third writer replays the records: the fenced payload (not a record) is passed
    // over, and importing the year again counts nothing twice.
    import(&db, &[&parts[0], &parts[1]]);
    assert_eq!(ch_table1(&db, &[]), t);
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn serve_clickhouse_answers_as_serve_data_of_the_embedded_import() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let seed_s = seed.to_str().expect("path");
    let db = database("serve");
    migrate(&db);
    import(&db, &[seed_s]);
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("path");
    netwait(&["import", "--data", data_s, seed_s]);
    let embedded = Server::start(&data);
    // The api role: no data directory of its own.
    let ch = Server::start_with(
        &tmp.path().join("unused"),
        &["--clickhouse", clickhouse_url(), "--database", &db],
        Stdio::inherit(),
    );
    let queries: [&[&str]; 9] = [
        &["table1", "--from", "2019-01-01", "--to", "2020-01-01"],
        &[
            "table1",
            "--from",
            "2019-03-01",
            "--to",
            "2019-04-01",
            "--threshold",
            "60",
        ],
        &[
            "table1",
            "--from",
            "2019-01-01",
            "--to",
            "2020-01-01",
            "--line",
            "cup",
        ],
        &["sla", "--year", "2019"],
        &[
            "sla",
            "--year",
            "2019",
            "--threshold",
            "90",
            "--target",
            "0.7",
        ],
        &["intervals", "--from", "2019-03-04", "--to", "2019-03-11"],
        &[
            "intervals",
            "--from",
            "2019-01-01",
            "--to",
            "2020-01-01",
            "--every",
            "60m",
        ],
        &[
            "intervals",
            "--from",
            "2019-03-01",
            "--to",
            "2019-04-01",
            "--every",
            "30m",
            "--threshold",
            "60",
            "--line",
            "cup",
        ],
        &["volume", "--half", "2019-H1"],
    ];
    for q in queries {
        let ask = |at: &[&str]| {
            let mut args = vec!["stats"];
            args.extend_from_slice(q);
            args.extend_from_slice(at);
            json(&args)
        };
        let want = ask(&["--server", &embedded.addr]);
        assert_eq!(
            ask(&["--server", &ch.addr]),
            want,
            "serve --clickhouse: {q:?}"
        );
        // The same service without a server.
        assert_eq!(
            ask(&["--clickhouse", clickhouse_url(), "--database", &db]),
            want,
            "stats --clickhouse: {q:?}"
        );
    }
    // A refused argument is refused alike.
    let out = Command::new(BIN)
        .args([
            "stats",
            "table1",
            "--from",
            "2019-01-01",
            "--to",
            "2020-01-01",
            "--line",
            "nope",
        ])
        .args(["--server", &ch.addr])
        .output()
        .expect("run stats");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--line"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ch.stop().success());
    assert!(embedded.stop().success());
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}

#[test]
fn a_database_of_schema_6_upgraded_to_shards_keeps_its_figures_and_its_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = seed_file(tmp.path());
    let parts = split(&seed, tmp.path(), 2);
    // A database as netwait wrote it before shards: migrations 1 to 6, then the rows of
    // half the year written by one writer (copied from an import here, without the
    // column migration 7 adds).
    let (current, old) = (database("upgrade_src"), database("upgrade_old"));
    migrate(&current);
    import(&current, &[&parts[0]]);
    clickhouse_sql(&format!("CREATE DATABASE {old}"));
    let on_old = |sql: &str| {
        let url = format!("{}/?database={old}", clickhouse_url());
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--data-binary", sql, &url])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    on_old(netwait_clickhouse::schema::MIGRATIONS_TABLE);
    for m in &netwait_clickhouse::schema::MIGRATIONS[..6] {
        assert!(
            (m.columns)().is_empty(),
            "migration {} adds no column",
            m.version
        );
        for sql in (m.statements)() {
            on_old(&sql);
        }
        on_old(&format!(
            "INSERT INTO netwait_migrations (version, name) VALUES ({}, 'as before')",
            m.version
        ));
    }
    let columns = clickhouse_sql(&format!(
        "SELECT name FROM system.columns WHERE database = '{current}' \
         AND table = 'netwait_log' AND name != 'shard' FORMAT TabSeparated"
    ))
    .lines()
    .collect::<Vec<_>>()
    .join(", ");
    on_old(&format!(
        "INSERT INTO netwait_log ({columns}) SELECT {columns} FROM {current}.netwait_log"
    ));
    on_old(&format!(
        "INSERT INTO netwait_meta SELECT * FROM {current}.netwait_meta"
    ));
    on_old(&format!(
        "INSERT INTO netwait_writers SELECT epoch, writer, since, at FROM {current}.netwait_leases"
    ));
    // `migrate` adds the shard column (what it holds is the whole log's), the leases and
    // the views; the figures are the same, and the writer goes on from where it was.
    migrate(&old);
    let month = |db: &str| {
        clickhouse_sql(&format!(
            "SELECT * FROM {db}.netwait_monthly ORDER BY month, line FORMAT TabSeparated"
        ))
    };
    assert_eq!(month(&old), month(&current));
    assert_eq!(ch_table1(&old, &[]), ch_table1(&current, &[]));
    let again = import(&old, &[&parts[0]]);
    assert!(again.contains("accepted 0"), "{again}");
    import(&old, &[&parts[1]]);
    assert_seed(&ch_table1(&old, &[]));
    for db in [old, current] {
        clickhouse_sql(&format!("DROP DATABASE {db}"));
    }
}

#[test]
fn each_shard_has_a_writer_lease_of_its_own() {
    use netwait_clickhouse::lease::Lease;
    use netwait_clickhouse::{Conn, Error, Retry, Shard, Target, WhenHeld};
    let db = database("leases");
    migrate(&db);
    let conn = Conn::connect(Target {
        url: clickhouse_url().to_owned(),
        database: db.clone(),
        retry: Retry::default(),
    })
    .expect("connect");
    let partition = |p| Shard::partition("calls", p).expect("shard");
    let whole = Lease::acquire(&conn, &Shard::whole(), WhenHeld::Refuse).expect("whole log");
    // Another shard's writer is not held off by the whole log's, nor by another one's.
    let first = Lease::acquire(&conn, &partition(0), WhenHeld::Refuse).expect("partition 0");
    let second = Lease::acquire(&conn, &partition(1), WhenHeld::Refuse).expect("partition 1");
    for lease in [&whole, &first, &second] {
        lease.check(&conn).expect("still held");
    }
    // A second writer of a held shard is refused, naming the holder.
    for shard in [Shard::whole(), partition(0)] {
        match Lease::acquire(&conn, &shard, WhenHeld::Refuse) {
            Err(Error::Held { writer, .. }) => assert!(!writer.is_empty(), "{shard}"),
            Err(e) => panic!("{shard}: {e}"),
            Ok(_) => panic!("{shard}: a second writer took the lease"),
        }
    }
    // Handed over when dropped: that shard's next writer takes it at once, and the
    // other shards' writers hold theirs still.
    drop(first);
    let next = Lease::acquire(&conn, &partition(0), WhenHeld::Refuse).expect("handed over");
    assert!(next.epoch() > 1, "a new epoch: {}", next.epoch());
    for lease in [&whole, &second, &next] {
        lease.check(&conn).expect("still held");
    }
    drop((whole, second, next));
    clickhouse_sql(&format!("DROP DATABASE {db}"));
}
