//! The SQL the domain generates for the figures ([`figures_sql`]) equals the rule of
//! [`Figures::add`] on random records, on the real server (`deploy/up clickhouse`).

use netwait_aggregator::domain::call::{CallRecord, Outcome};
use netwait_aggregator::domain::figures::Figures;
use netwait_aggregator::domain::figures_sql::{RowColumns, figures_sql, outcome_code};
use netwait_clickhouse::rows::DayFigures;
use netwait_clickhouse::{Conn, Target};
use std::path::Path;
use std::process::Command;

fn server() -> String {
    match std::env::var("NETWAIT_CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let up = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/up");
            let out = Command::new(up)
                .arg("clickhouse")
                .output()
                .expect("deploy/up");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("export NETWAIT_CLICKHOUSE_URL="))
                .expect("URL")
                .to_owned()
        }
    }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn generated_sql_counts_as_the_rust_rule_on_random_records() {
    let conn = Conn::new(Target {
        url: server(),
        database: "system".into(),
        retry: Default::default(),
    })
    .expect("conn");
    let outcomes = [
        Outcome::Open,
        Outcome::Answered,
        Outcome::Abandoned,
        Outcome::Overflow,
        Outcome::Unresolved,
    ];
    let waits = [
        0, 1, 999, 1_000, 1_001, 59_999, 60_000, 60_500, 139_999, 140_000, 140_001, 900_000,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..40 {
        let threshold = [1_000, 60_500, 140_000, 140_001, 86_400_000][round % 5];
        let mut want = Figures::default();
        let mut values = Vec::new();
        for _ in 0..(1 + rng.below(300)) {
            let outcome = outcomes[rng.below(5) as usize];
            let net_wait =
                (rng.below(6) > 0).then(|| waits[rng.below(waits.len() as u64) as usize]);
            let talk = (rng.below(3) > 0).then(|| rng.below(400_000) as i64);
            let bookings = rng.below(3) as u32;
            let in_hours = rng.below(4) > 0;
            let rec = CallRecord {
                anchor: 0,
                line: "cup",
                outcome,
                net_wait,
                talk,
                bookings,
            };
            want.add(&rec, in_hours, threshold);
            values.push(format!(
                "({}, {}, {}, {}, {})",
                outcome_code(outcome),
                u8::from(in_hours),
                net_wait.unwrap_or(-1),
                talk.unwrap_or(-1),
                bookings
            ));
        }
        let cols = RowColumns {
            outcome: "outcome",
            in_hours: "in_hours",
            net_wait_ms: "net_wait_ms",
            talk_ms: "talk_ms",
            bookings: "bookings",
        };
        let exprs = figures_sql(&cols, threshold)
            .into_iter()
            .map(|(n, e)| format!("{e} AS {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Rows as a subquery of literals (no table: nothing to clean up).
        let rows = values
            .iter()
            .map(|v| {
                let f: Vec<&str> = v.trim_matches(|c| c == '(' || c == ')').split(", ").collect();
                format!(
                    "SELECT toUInt8({}) AS outcome, toUInt8({}) AS in_hours, toInt64({}) AS net_wait_ms, toInt64({}) AS talk_ms, toUInt64({}) AS bookings",
                    f[0], f[1], f[2], f[3], f[4]
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let sql = format!("SELECT toUInt16(0) AS day, {exprs} FROM ({rows})");
        let got: DayFigures = conn
            .block_on(conn.client.query(&sql).fetch_one())
            .expect("query");
        assert_eq!(got.figures(), want, "round {round} T={threshold}");
    }
}
