//! `netwait deadletter`: what was rejected, where from, and why.

use super::StoreArgs;
use super::config::{Use, open_engine};

pub fn run(store: &StoreArgs, as_json: bool) -> anyhow::Result<()> {
    let (mut engine, _) = open_engine(store, Use::Queries)?;
    let mut n = 0u64;
    engine.dead_letters(&mut |d| {
        n += 1;
        let raw = String::from_utf8_lossy(&d.raw);
        // Only the first bytes of a long input are stored: say so, with its size.
        let size = d.truncated_from.unwrap_or(d.raw.len() as u64);
        if as_json {
            let v = serde_json::json!({
                "source": d.source,
                "position": d.position,
                "code": d.code,
                "reason": d.reason,
                "raw": raw,
                "raw_size": size,
                "truncated": d.truncated_from.is_some(),
            });
            println!("{v}");
        } else {
            let cut = match d.truncated_from {
                Some(n) => format!(" [truncated: first {} of {n} bytes]", d.raw.len()),
                None => String::new(),
            };
            println!(
                "{}:{}: {} ({})\n    {}{cut}",
                d.source, d.position, d.reason, d.code, raw
            );
        }
    })?;
    if !as_json {
        println!("{n} dead letter(s)");
    }
    Ok(())
}
