//! `netwait deadletter`: what was rejected, where from, and why.

use super::StoreArgs;
use super::config::{Use, open_engine};

pub fn run(store: &StoreArgs, as_json: bool) -> anyhow::Result<()> {
    let (mut engine, _) = open_engine(store, Use::Queries)?;
    let mut n = 0u64;
    engine.dead_letters(&mut |d| {
        n += 1;
        let raw = String::from_utf8_lossy(&d.raw);
        if as_json {
            let v = serde_json::json!({
                "source": d.source,
                "position": d.position,
                "code": d.code,
                "reason": d.reason,
                "raw": raw,
            });
            println!("{v}");
        } else {
            println!(
                "{}:{}: {} ({})\n    {}",
                d.source, d.position, d.reason, d.code, raw
            );
        }
    })?;
    if !as_json {
        println!("{n} dead letter(s)");
    }
    Ok(())
}
