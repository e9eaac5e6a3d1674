//! Validation speed on one thread: `cargo run --release -p netwait-aggregator --example
//! parse_speed -- FILE` prints lines, valid events and ns per line (best of 3 passes).

use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::domain::validate::validate_scanned;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: parse_speed FILE")?;
    let text = std::fs::read_to_string(path)?;
    let pseudo = Pseudonymizer::new([0; 32]);
    let mut best = f64::MAX;
    let (mut lines, mut valid) = (0u64, 0u64);
    for _ in 0..3 {
        let t = Instant::now();
        lines = 0;
        valid = 0;
        // As the import's workers do: one pass splits each line and locates its quotes.
        for scanned in scan_lines(text.as_bytes()) {
            lines += 1;
            valid += u64::from(validate_scanned(scanned, &pseudo).is_ok());
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{lines} lines, {valid} valid, {:.1} ns/line, {:.0} MB/s",
        best * 1e9 / lines as f64,
        text.len() as f64 / best / 1e6
    );
    Ok(())
}
