//! queue_log import rate: `cargo run --release -p netwait-ingest --example
//! queue_log_speed -- CALLS [OUT]` generates a queue_log of CALLS calls (ENTERQUEUE, two
//! RINGNOANSWER, then CONNECT + COMPLETECALLER, or ABANDON for one in four, and a member
//! pause/unpause every 100 calls), optionally writes it to OUT (to time
//! `netwait import --format queue_log OUT`), and times reading, mapping, validating and
//! encoding it (no store; best of 3 passes) in rows per second.

use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_ingest::decoded::{Decodable, DecodeSettings, decode_inputs};
use netwait_ingest::format::Format;
use std::fmt::Write as _;
use std::time::Instant;

fn generate(calls: u64) -> String {
    let mut text = String::new();
    let mut t = 1_546_333_200u64; // 2019-01-01 09:00 Rome
    for i in 0..calls {
        let id = format!("{t}.{i}");
        let q = if i % 4 == 1 { "prelievi" } else { "cup" };
        let _ = writeln!(
            text,
            "{t}|{id}|{q}|NONE|ENTERQUEUE||3330{:06}|1",
            i % 1_000_000
        );
        let _ = writeln!(text, "{}|{id}|{q}|SIP/1|RINGNOANSWER|15000", t + 15);
        let _ = writeln!(text, "{}|{id}|{q}|SIP/2|RINGNOANSWER|15000", t + 30);
        if i % 4 == 3 {
            let _ = writeln!(text, "{}|{id}|{q}|NONE|ABANDON|1|1|40", t + 40);
        } else {
            let _ = writeln!(text, "{}|{id}|{q}|SIP/3|CONNECT|45|{id}9|3", t + 45);
            let _ = writeln!(text, "{}|{id}|{q}|SIP/3|COMPLETECALLER|45|180|1", t + 225);
        }
        if i % 100 == 0 {
            let _ = writeln!(text, "{t}|NONE|{q}|SIP/3|PAUSE|");
            let _ = writeln!(text, "{}|NONE|{q}|SIP/3|UNPAUSE|", t + 1);
        }
        t += 7;
    }
    text
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: u64 = std::env::args()
        .nth(1)
        .ok_or("usage: queue_log_speed CALLS [OUT]")?
        .parse()?;
    let text = generate(calls);
    if let Some(out) = std::env::args().nth(2) {
        std::fs::write(out, &text)?;
    }
    let rows = text.lines().count() as f64;
    let inputs = [Decodable {
        name: "queue_log".into(),
        format: Format::QueueLog,
        bytes: text.into_bytes(),
    }];
    let settings = DecodeSettings::default();
    let pseudo = Pseudonymizer::new([0; 32]);
    let hasher = KeyHasher::new([0; 16]);
    let mut best = f64::MAX;
    let mut events = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let chunks = decode_inputs(&inputs, &settings, &pseudo, &hasher);
        best = best.min(start.elapsed().as_secs_f64());
        events = chunks.iter().flatten().map(|c| c.events()).sum::<usize>();
    }
    println!(
        "{rows} rows, {events} events: {best:.3} s, {:.0} rows/s",
        rows / best
    );
    Ok(())
}
