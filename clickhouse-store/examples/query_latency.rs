//! Month SLA / year Table 1 latency from ClickHouse at N synthetic calls, and the
//! insert throughput of the store's rows.
//!
//! cargo run --release -p netwait-clickhouse --example query_latency -- URL DATABASE CALLS [SHARDS]
//!
//! With SHARDS (> 0) the database is shared by the partitions of a group: the cells are
//! dealt to that many partitions' shards (`calls/0` ...), each with its own commits and
//! day rows, and the queries sum the shards.
//!
//! The calls are not made one by one: their cells are inserted directly (what the
//! queries read), as the store writes them: 20 lines over 10 years (2011-2020), in the
//! contract's service intervals, CALLS / 40 cells (about 40 calls a cell), each with a
//! few states (older `seq`s) to make the latest-state grouping work, and the day rows
//! (each (day, line)'s cells summed, as the engine writes them). The database is
//! dropped and migrated first.

use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::derived::{CellRow, DayRow};
use netwait_aggregator::domain::figures::Figures;
use netwait_aggregator::domain::time::{days_from_civil, parse_date};
use netwait_aggregator::published::Answers;
use netwait_clickhouse::answers::SqlAnswers;
use netwait_clickhouse::rows::LogRow;
use netwait_clickhouse::shard::{Layout, Shard};
use netwait_clickhouse::{Conn, Target, migrate};
use std::time::Instant;

const LINES: usize = 20;
const YEARS: i64 = 10;
/// Service intervals a day (08:00-18:00 local).
const PER_DAY: i64 = 40;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, database, calls, shards) = match &args[..] {
        [_, url, database, calls] => (url, database, calls, "0"),
        [_, url, database, calls, shards] => (url, database, calls, shards.as_str()),
        _ => return Err("usage: query_latency URL DATABASE CALLS [SHARDS]".into()),
    };
    let calls: u64 = calls.parse()?;
    let shards: Vec<Shard> = match shards.parse::<u32>()? {
        0 => vec![Shard::whole()],
        n => (0..n as i32)
            .map(|p| Shard::partition("calls", p).ok_or("shard"))
            .collect::<Result<_, _>>()?,
    };
    let target = Target {
        url: url.clone(),
        database: database.clone(),
        retry: Default::default(),
    };
    let conn = Conn::new(target.clone())?;
    conn.block_on(
        conn.server
            .query(&format!("DROP DATABASE IF EXISTS {database}"))
            .execute(),
    )?;
    migrate(&conn)?;
    if !shards[0].is_whole() {
        conn.block_on(conn.client.query(&Layout::shards_sql()).execute())?;
        for sql in netwait_clickhouse::schema::views_of(Layout::Shards) {
            conn.block_on(conn.client.query(&sql).execute())?;
        }
    }
    let commits = |seq: u64| {
        shards
            .iter()
            .flat_map(move |s| {
                [
                    LogRow::commit(seq, 0).of(s),
                    LogRow::commit(seq + 1, 0).of(s),
                ]
            })
            .collect::<Vec<_>>()
    };
    let cells = (calls / 40).max(1);
    let first_day = days_from_civil(2011, 1, 1);
    let slots = YEARS * 365 * PER_DAY * LINES as i64;
    let stride = (slots as u64 / cells).max(1);
    let lines: Vec<String> = (0..LINES).map(|i| format!("line{i:02}")).collect();
    let started = Instant::now();
    let mut rows = Vec::with_capacity(200_000);
    let mut seq = 1u64;
    let mut written = 0u64;
    // The day rows the engine would write: each (day, line)'s cells summed.
    let mut days: std::collections::BTreeMap<(usize, i64, usize), Figures> = Default::default();
    let flush = |rows: &mut Vec<LogRow>| -> Result<(), Box<dyn std::error::Error>> {
        conn.block_on(async {
            let mut insert = conn.client.insert::<LogRow>("netwait_log").await?;
            for r in rows.iter() {
                insert.write(r).await?;
            }
            insert.end().await
        })?;
        rows.clear();
        Ok(())
    };
    for n in 0..cells {
        let slot = (n * stride) as i64;
        let line = (n % LINES as u64) as usize;
        let shard = (n / LINES as u64 % shards.len() as u64) as usize;
        let rest = slot / LINES as i64;
        let day = first_day + rest / PER_DAY;
        // 07:00 UTC + the slot's quarter hour (08:00 local in winter).
        let interval = day * 96 + 28 + rest % PER_DAY;
        let f = Figures {
            answered: 22,
            abandoned: 9,
            overflow: 9,
            answered_without_wait: 3,
            answered_wait_within_threshold: 7,
            answered_wait_over_threshold: 12,
            answered_within_threshold: 10,
            max_wait_ms: Some(100_000 + (n % 1000) as i64 * 100),
            wait_sum_ms: 22 * 200_000,
            talk_sum_ms: 22 * 180_000,
            talk_count: 22,
            bookings: 20,
            out_of_hours: 0,
            unresolved: 0,
        };
        days.entry((shard, day, line)).or_default().merge(&f);
        let row = CellRow {
            interval,
            day,
            line: lines[line].clone(),
            figures: f,
        };
        // One cell in four was touched by an earlier commit too.
        if n % 4 == 0 {
            rows.push(
                LogRow::cell(
                    seq,
                    0,
                    &CellRow {
                        figures: Figures::default(),
                        ..row.clone()
                    },
                )
                .of(&shards[shard]),
            );
        }
        rows.push(LogRow::cell(seq + 1, 0, &row).of(&shards[shard]));
        if rows.len() >= 200_000 {
            rows.extend(commits(seq));
            written += rows.len() as u64;
            flush(&mut rows)?;
            seq += 2;
        }
    }
    // The days, each also with an older state (as a day is rewritten by every commit
    // that touches one of its cells).
    for (i, ((shard, day, line), figures)) in days.into_iter().enumerate() {
        let row = DayRow {
            day,
            line: lines[line].clone(),
            figures,
        };
        if i % 4 == 0 {
            rows.push(
                LogRow::day(
                    seq,
                    0,
                    &DayRow {
                        figures: Figures::default(),
                        ..row.clone()
                    },
                )
                .of(&shards[shard]),
            );
        }
        rows.push(LogRow::day(seq + 1, 0, &row).of(&shards[shard]));
    }
    rows.extend(commits(seq));
    written += rows.len() as u64;
    flush(&mut rows)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "calls {calls}: {cells} cells, {written} rows inserted in {secs:.1} s ({:.0} rows/s)",
        written as f64 / secs
    );
    conn.block_on(
        conn.client
            .query("OPTIMIZE TABLE netwait_log FINAL")
            .execute(),
    )?;
    let answers = SqlAnswers::open(target, MetricsConfig::default())?;
    let now = netwait_aggregator::domain::time::parse_rfc3339("2021-01-01T00:00:00Z")
        .map_err(|e| format!("{e:?}"))?;
    let (from, to) = (
        parse_date("2019-01-01").ok_or("date")?,
        parse_date("2020-01-01").ok_or("date")?,
    );
    let measure = |name: &str,
                   run: &dyn Fn() -> Result<u64, Box<dyn std::error::Error>>|
     -> Result<(), Box<dyn std::error::Error>> {
        run()?; // warm
        let mut ms = Vec::new();
        let mut check = 0;
        for _ in 0..200 {
            let t = Instant::now();
            check = run()?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{name}: p50 {:.1} ms, p99 {:.1} ms (answered {check})",
            pct(&ms, 0.5),
            pct(&ms, 0.99)
        );
        Ok(())
    };
    measure("baseline: the lines query (no cells read)", &|| {
        Ok(answers.checked(|a| a.lines().map(|l| l.len() as u64))??)
    })?;
    measure("year Table 1 (2019, all lines)", &|| {
        Ok(answers
            .checked(|a| a.table1(now, from, to, None, None))?
            .figures
            .answered)
    })?;
    measure("year Table 1 (2019, one line)", &|| {
        Ok(answers
            .checked(|a| a.table1(now, from, to, Some("line03".into()), None))?
            .figures
            .answered)
    })?;
    let (mf, mt) = (
        parse_date("2019-03-01").ok_or("date")?,
        parse_date("2019-04-01").ok_or("date")?,
    );
    measure("month SLA (2019-03, all lines)", &|| {
        Ok(answers
            .checked(|a| a.table1(now, mf, mt, None, None))?
            .figures
            .answered_within_threshold)
    })?;
    measure("SLA year view (2019, 12 months)", &|| {
        Ok(answers
            .checked(|a| a.sla_year(now, 2019, None, None, None))?
            .months
            .iter()
            .map(|m| m.figures.answered)
            .sum())
    })?;
    Ok(())
}
