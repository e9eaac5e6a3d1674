//! `netwait stats intervals` (the `GetIntervals` RPC): the intervals of each month,
//! summed, are that month's Table 1 and SLA figures, for all lines and each line, on the
//! seed year (through a server) and on random adversarial data (from the directory).

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn tool(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
        .display()
        .to_string()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The sums of a month's interval rows, in Table 1's keys.
fn summed(rows: &[Value]) -> Value {
    let keys = [
        "answered",
        "abandoned",
        "overflow",
        "answered_within_threshold",
        "answered_without_wait",
        "answered_wait_within_threshold",
        "answered_wait_over_threshold",
        "bookings",
        "out_of_hours",
        "unresolved",
        "wait_sum_ms",
        "talk_sum_ms",
        "talked",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        out.insert(k.into(), rows.iter().map(|r| u(r, k)).sum::<u64>().into());
    }
    out.insert(
        "calls_received".into(),
        rows.iter().map(|r| u(r, "offered")).sum::<u64>().into(),
    );
    let max = rows
        .iter()
        .filter_map(|r| r["max_wait_s"].as_f64())
        .reduce(f64::max);
    out.insert("max_wait_s".into(), max.into());
    Value::Object(out)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

/// Checks one month: its intervals summed against its Table 1 and its SLA month.
fn check_month(rows: &[Value], table: &Value, sla_month: &Value, what: &str) {
    let s = summed(rows);
    for k in [
        "calls_received",
        "answered",
        "abandoned",
        "overflow",
        "answered_without_wait",
        "answered_wait_within_threshold",
        "answered_wait_over_threshold",
        "bookings",
        "out_of_hours",
        "unresolved",
    ] {
        assert_eq!(s[k], table[k], "{what}: {k}");
    }
    assert_eq!(s["max_wait_s"], table["max_wait_s"], "{what}: max_wait_s");
    let answered = u(&s, "answered");
    let avg_wait = (answered > 0).then(|| u(&s, "wait_sum_ms") as f64 / answered as f64 / 1e3);
    assert!(
        close(avg_wait, table["avg_wait_s"].as_f64()),
        "{what}: avg_wait_s {avg_wait:?} vs {}",
        table["avg_wait_s"]
    );
    let talked = u(&s, "talked");
    let avg_talk = (talked > 0).then(|| u(&s, "talk_sum_ms") as f64 / talked as f64 / 1e3);
    assert!(
        close(avg_talk, table["avg_talk_s"].as_f64()),
        "{what}: avg_talk_s"
    );
    for k in [
        "answered",
        "answered_within_threshold",
        "abandoned",
        "overflow",
    ] {
        assert_eq!(s[k], sla_month[k], "{what}: SLA {k}");
    }
    // The month's SLA under each policy, from the summed counts.
    let within = u(&s, "answered_within_threshold") as f64;
    let share = |den: u64| (den > 0).then(|| within / den as f64);
    let (a, ab, o) = (answered, u(&s, "abandoned"), u(&s, "overflow"));
    let p = &sla_month["policies"];
    assert!(
        close(share(a), p["answered"].as_f64()),
        "{what}: sla answered"
    );
    assert!(
        close(share(a + ab), p["answered_and_abandoned"].as_f64()),
        "{what}: sla answered_and_abandoned"
    );
    assert!(
        close(share(a + ab + o), p["offered"].as_f64()),
        "{what}: sla offered"
    );
}

/// Every month of `year`, for each line filter, through `at`.
fn check_year(at: [&str; 2], year: i32, lines: &[Option<&str>], everies: &[&str]) {
    for (n, line) in lines.iter().enumerate() {
        let line_args: Vec<&str> = line.map_or(vec![], |l| vec!["--line", l]);
        let mut sla_args = vec!["stats", "sla", at[0], at[1]];
        let y = year.to_string();
        sla_args.extend(["--year", &y]);
        sla_args.extend(&line_args);
        let sla = json(&sla_args);
        for month in 1..=12u32 {
            let from = format!("{year}-{month:02}-01");
            let to = if month == 12 {
                format!("{}-01-01", year + 1)
            } else {
                format!("{year}-{:02}-01", month + 1)
            };
            let every = everies[(month as usize + n) % everies.len()];
            let mut args = vec![
                "stats",
                "intervals",
                at[0],
                at[1],
                "--from",
                &from,
                "--to",
                &to,
                "--every",
                every,
            ];
            args.extend(&line_args);
            let r = json(&args);
            let rows = r["intervals"].as_array().expect("intervals");
            let minutes = every.trim_end_matches('m').parse::<usize>().expect("every");
            assert_eq!(r["every_minutes"], minutes as u64);
            // Every interval of the month: 96 quarter hours a day, 4 fewer in March
            // (daylight saving starts), 4 more in October (it ends).
            let days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1]
                + usize::from(month == 2 && year % 4 == 0);
            let quarters =
                days * 96 + if month == 10 { 4 } else { 0 } - if month == 3 { 4 } else { 0 };
            assert_eq!(rows.len(), quarters * 15 / minutes, "{from} every {every}");
            let table = table1(at, &from, &to, &line_args);
            let what = format!("{from} {line:?} every {every}");
            check_month(rows, &table, &sla["months"][month as usize - 1], &what);
        }
    }
}

#[test]
fn seed_year_intervals_sum_to_each_months_table1_and_sla() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = tmp.path().join("seed.ndjson");
    let status = Command::new("python3")
        .arg(tool("gen_seed2019.py"))
        .arg(&seed)
        .args(["--prelievi", "0.25"])
        .status()
        .expect("python3 runs the seed generator");
    assert!(status.success());
    let data = tmp.path().join("data");
    let d = data.to_str().expect("path");
    netwait(&["import", "--data", d, seed.to_str().expect("path")]);
    let server = Server::start(&data);
    let at = ["--server", server.addr.as_str()];
    check_year(
        at,
        2019,
        &[None, Some("cup"), Some("prelievi")],
        &["15m", "30m", "60m"],
    );
    // The text and CSV forms: one row per interval, the CSV with its header.
    let out = netwait(&[
        "stats",
        "intervals",
        at[0],
        at[1],
        "--from",
        "2019-10-27",
        "--to",
        "2019-10-28",
        "--every",
        "60m",
        "--csv",
    ]);
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 25, "{csv}");
    assert!(
        lines[0].starts_with("start,end,offered,answered,"),
        "{}",
        lines[0]
    );
    assert!(
        lines[3].starts_with("2019-10-27T02:00:00+02:00,"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with("2019-10-27T02:00:00+01:00,"),
        "{}",
        lines[4]
    );
    let text = stdout(&netwait(&[
        "stats",
        "intervals",
        at[0],
        at[1],
        "--from",
        "2019-06-03",
        "--to",
        "2019-06-04",
        "--every",
        "30m",
    ]));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("2019-06-03T"))
            .count(),
        48,
        "{text}"
    );
    // Refused arguments are named as the flags.
    let bad = Command::new(BIN)
        .args(["stats", "intervals", at[0], at[1], "--from", "2019-01-01"])
        .args(["--to", "2021-01-01"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--to: at most 366 days"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = Command::new(BIN)
        .args(["stats", "intervals", at[0], at[1], "--from", "2019-01-01"])
        .args(["--to", "2019-01-02", "--every", "20m"])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("20m is not 15m, 30m or 60m"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn random_data_intervals_sum_to_each_months_table1_and_sla() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for seed in ["7", "20261125"] {
        let file = tmp.path().join(format!("adv-{seed}.ndjson"));
        let f = file.to_str().expect("path");
        let status = Command::new("python3")
            .args([
                &tool("adversarial_gen.py"),
                f,
                "--seed",
                seed,
                "--calls",
                "1500",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("python3 runs the generator");
        assert!(status.success());
        let data = tmp.path().join(format!("data-{seed}"));
        let d = data.to_str().expect("path");
        netwait(&["import", "--data", d, f]);
        for year in [2019, 2026] {
            check_year(
                ["--data", d],
                year,
                &[None, Some("prelievi")],
                &["15m", "60m"],
            );
        }
    }
}
