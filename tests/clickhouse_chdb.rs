//! Every statement netwait sends to ClickHouse runs unchanged on current ClickHouse
//! too (issue 12 item 2): the DDL of every migration, the rows of the store's inserts
//! (RowBinary, as sent) and every query, run on the 18.16 server (`deploy/up`) and in
//! chdb 26.9 (`deploy/python`), give the same results.

mod common;
use common::*;
use netwait_aggregator::domain::figures::LineFilter;
use netwait_clickhouse::answers::{
    day_figures_sql, lines_sql, live_calls_sql, live_open_calls_sql,
};
use netwait_clickhouse::lease::{claim_sql, heartbeat_sql, holder_sql, latest_epoch_sql};
use netwait_clickhouse::log_state::{LogState, last_commits_sql, uncounted_sql};
use netwait_clickhouse::replays;
use netwait_clickhouse::schema::{Reading, all_statements, cells_sql, days_sql, views_of};
use netwait_clickhouse::shard::{Layout, Shard};
use netwait_clickhouse::store::{
    commit_sizes_sql, landed_sql, log_bytes_sql, positions_sql, replay_sql, shards_sql,
};
use std::path::Path;
use std::process::{Command, Stdio};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn server() -> String {
    match std::env::var("NETWAIT_CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let out = Command::new(repo().join("deploy/up"))
                .arg("clickhouse")
                .output()
                .expect("deploy/up");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("export NETWAIT_CLICKHOUSE_URL="))
                .expect("URL")
                .to_owned()
        }
    }
}

/// A statement over HTTP (`database` as the session's), its answer's bytes.
fn http(url: &str, database: Option<&str>, statement: &str) -> Vec<u8> {
    let target = match database {
        Some(db) => format!("{url}/?database={db}"),
        None => url.to_owned(),
    };
    let mut child = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--data-binary", "@-", &target])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(statement.as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("curl");
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

#[test]
fn ddl_rows_and_queries_run_alike_on_clickhouse_18_and_chdb_26() {
    let url = server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = format!("nwchdb_{}", std::process::id());
    http(&url, None, &format!("DROP DATABASE IF EXISTS {db}"));
    netwait(&["migrate", "--clickhouse", &url, "--database", &db]);
    // Calls of March 2019 plus late, reordered and open ones: every kind of row.
    let (text, _, _) = march_calls(3_000);
    let file = tmp.path().join("march.ndjson");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.reverse();
    let mut body = lines.join("\n");
    body.push_str("\n{\"type\":\"offered\",\"call_id\":\"open-1\",\"ts\":\"2019-03-29T10:00:00+01:00\",\"line\":\"prelievi\"}\n");
    std::fs::write(&file, body).expect("write");
    netwait(&[
        "import",
        "--clickhouse",
        &url,
        "--database",
        &db,
        file.to_str().expect("path"),
    ]);
    // Two replay marks of one dead letter and one of another (`deadletter replay`).
    http(
        &url,
        Some(&db),
        &format!(
            "INSERT INTO netwait_meta (key, value) VALUES ('{p}{a}', '1700000000500'), \
             ('{p}{a}', '1700000000100'), ('{p}{b}', '1700000000200')",
            p = replays::PREFIX,
            a = "0".repeat(32),
            b = "f".repeat(32)
        ),
    );
    // A second shard (a partition's, as when aggregators share the partitions): the
    // rows of the whole log's again, so that every query meets two shards whose seqs,
    // voids and fences overlap; the database made shared, its views those of shards.
    let shard = Shard::partition("calls", 1).expect("shard");
    let columns = String::from_utf8(http(
        &url,
        Some(&db),
        "SELECT name FROM system.columns WHERE database = currentDatabase() \
         AND table = 'netwait_log' AND name != 'shard' FORMAT TabSeparated",
    ))
    .expect("utf-8")
    .lines()
    .collect::<Vec<_>>()
    .join(", ");
    http(
        &url,
        Some(&db),
        &format!(
            "INSERT INTO netwait_log ({columns}, shard) SELECT {columns}, {} FROM netwait_log \
             WHERE shard = ''",
            shard.sql()
        ),
    );
    let shared = views_of(Layout::Shards);
    for sql in std::iter::once(Layout::shards_sql()).chain(shared.iter().cloned()) {
        http(&url, Some(&db), &sql);
    }
    // Each table's rows as RowBinary (the layout the store's inserts send).
    let tables: Vec<serde_json::Value> = [
        "netwait_log",
        "netwait_meta",
        "netwait_migrations",
        "netwait_writers",
        "netwait_leases",
    ]
    .iter()
    .map(|table| {
        let rows = tmp.path().join(format!("{table}.bin"));
        let sql = format!("SELECT * FROM {table} FORMAT RowBinary");
        std::fs::write(&rows, http(&url, Some(&db), &sql)).expect("rows");
        let columns = format!(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() \
                 AND table = '{table}' FORMAT TabSeparated"
        );
        let structure = String::from_utf8(http(&url, Some(&db), &columns))
            .expect("utf-8")
            .lines()
            .map(|l| l.replace('\t', " "))
            .collect::<Vec<_>>()
            .join(", ");
        serde_json::json!({"name": table, "structure": structure, "rows": rows})
    })
    .collect();
    // Every query the store and the api role send, with the arguments varied.
    let d = |s: &str| netwait_aggregator::domain::time::parse_date(s).expect("date");
    let mut queries = vec![shards_sql()];
    for shard in [Shard::whole(), shard.clone()] {
        queries.extend([
            positions_sql(&shard),
            landed_sql(&shard).replace('?', "1"),
            replay_sql(&shard)
                .replace("SELECT seq, payload", "SELECT seq, hex(payload)")
                .replacen('?', "0", 1)
                .replacen('?', "1000", 1),
            log_bytes_sql(&shard)
                .replacen('?', "0", 1)
                .replacen('?', "1000", 1),
            commit_sizes_sql(&shard)
                .replacen('?', "0", 1)
                .replacen('?', "1000", 1),
            latest_epoch_sql(&shard),
            holder_sql(&shard).replace("now()", "toDateTime(1900000000)"),
        ]);
    }
    // Each layout's rows as the views read them (subqueries of their own) and as a
    // report does (the log's state read first, as literals).
    let conn = netwait_clickhouse::Conn::new(netwait_clickhouse::Target {
        url: url.clone(),
        database: db.clone(),
        retry: Default::default(),
    })
    .expect("conn");
    let readings: Vec<Reading> = [Layout::Whole, Layout::Shards]
        .into_iter()
        .flat_map(|l| {
            [
                Reading::live(l),
                LogState::read(&conn, l).expect("state").reading(),
            ]
        })
        .collect();
    for reading in &readings {
        queries.extend([
            lines_sql(reading),
            cells_sql(reading, ""),
            days_sql(reading, ""),
            live_calls_sql(reading, ""),
            live_open_calls_sql(reading, ""),
        ]);
    }
    queries.extend([
        last_commits_sql(),
        uncounted_sql(),
        Layout::read_sql(),
        replays::replayed_sql(),
        "SELECT toUInt32(max(version)) FROM netwait_migrations".to_owned(),
        "SELECT key, length(any(value)) FROM netwait_meta WHERE key IN ('dedupe_key', 'caller_key') GROUP BY key".to_owned(),
        "SELECT * FROM netwait_interval_15m".to_owned(),
        "SELECT * FROM netwait_daily".to_owned(),
        "SELECT * FROM netwait_monthly".to_owned(),
        // The writer lease's (the server's clock fixed: the two servers read it apart).
        claim_sql()
            .replace("INSERT INTO netwait_leases (shard, epoch, writer, since, at) ", "")
            .replacen('?', "'calls/1'", 1)
            .replacen('?', "7", 1)
            .replacen('?', "'w'", 1)
            .replace("now()", "toDateTime(1900000000)"),
        heartbeat_sql()
            .replace("INSERT INTO netwait_leases (shard, epoch, writer, since, at) ", "")
            .replacen('?', "''", 1)
            .replacen('?', "7", 1)
            .replacen('?', "'w'", 1)
            .replacen('?', "1800000000", 1)
            .replace("now()", "toDateTime(1900000000)"),
    ]);
    let now = netwait_aggregator::domain::time::parse_rfc3339("2019-03-29T18:00:00Z").expect("ts");
    // A report's literal reading counts the rows the views' subqueries count, on the
    // rows of two shards with their fences.
    for pair in readings.chunks(2) {
        let [live, known] = pair else {
            panic!("a live and a literal reading per layout");
        };
        let rows = |sql: String| {
            let out = http(&url, Some(&db), &format!("{sql} FORMAT TabSeparated"));
            let mut rows: Vec<String> = String::from_utf8(out)
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect();
            rows.sort_unstable();
            rows
        };
        let year = (d("2019-01-01"), d("2020-01-01"));
        let makers: [&dyn Fn(&Reading) -> String; 7] = [
            &|r| lines_sql(r),
            &|r| cells_sql(r, ""),
            &|r| days_sql(r, ""),
            &|r| live_calls_sql(r, ""),
            &|r| live_open_calls_sql(r, ""),
            &|r| day_figures_sql(r, &LineFilter(None), year, 140_000, 140_000, now),
            &|r| day_figures_sql(r, &LineFilter(None), year, 60_500, 140_000, now),
        ];
        for make in makers {
            let expected = rows(make(live));
            assert!(!expected.is_empty(), "{}", make(live));
            assert_eq!(rows(make(known)), expected, "{}", make(known));
        }
    }
    for (reading, line) in readings
        .iter()
        .flat_map(|r| [None, Some("cup"), Some("prelievi")].map(|line| (r, line)))
    {
        for (from, to) in [("2019-01-01", "2020-01-01"), ("2019-03-04", "2019-03-05")] {
            for threshold in [140_000, 60_500] {
                for at in [now, now + 86_400_000] {
                    queries.push(day_figures_sql(
                        reading,
                        &LineFilter(line.map(String::from)),
                        (d(from), d(to)),
                        threshold,
                        140_000,
                        at,
                    ));
                }
            }
        }
    }
    // The Grafana dashboard's queries, as its data source sends them.
    for line in ["cup", "prelievi"] {
        for (from, to) in [("2019-01-01", "2019-12-31"), ("2019-03-04", "2019-03-05")] {
            queries.extend(grafana::queries(from, to, line).into_iter().map(|(_, q)| q));
        }
    }
    let cases: Vec<serde_json::Value> = queries
        .iter()
        .map(|q| {
            let out = String::from_utf8(http(&url, Some(&db), &format!("{q} FORMAT TabSeparated")))
                .expect("utf-8");
            let mut expected: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
            expected.sort_unstable();
            serde_json::json!({"sql": q, "expected": expected})
        })
        .collect();
    let nonempty = cases
        .iter()
        .filter(|c| !c["expected"].as_array().expect("array").is_empty())
        .count();
    assert!(nonempty > 20, "queries answer rows: {nonempty}");
    let case = serde_json::json!({
        "database": db,
        // The whole log's migrations, then the statements that make a database shared.
        "ddl": all_statements()
            .into_iter()
            .chain(std::iter::once(Layout::shards_sql()))
            .chain(shared)
            .collect::<Vec<_>>(),
        "tables": tables,
        "queries": cases,
    });
    let case_file = tmp.path().join("case.json");
    std::fs::write(&case_file, case.to_string()).expect("case");
    let out = Command::new(repo().join("deploy/python"))
        .arg(repo().join("tests/tools/chdb_compat.py"))
        .arg(&case_file)
        .output()
        .expect("deploy/python");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("chdb {} queries, 0 different", queries.len())),
        "{said}"
    );
    http(&url, None, &format!("DROP DATABASE {db}"));
}
