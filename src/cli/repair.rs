//! `netwait repair`: every intact commit of a damaged store copied into a new data
//! directory (never in place), saying what was left behind.

use super::check::{describe, intact, torn, unproven};
use anyhow::{Context, bail};
use netwait_aggregator::store::embedded::EmbeddedStore;
use std::path::Path;

/// Files of a data directory copied as they are besides the log and the keys.
const COPIED: [&str; 1] = ["netwait.toml"];

pub fn run(data: &Path, out: &Path) -> anyhow::Result<()> {
    let store = EmbeddedStore::open_read_only(data)?;
    let holds_anything = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    if holds_anything {
        bail!(
            "{} is not empty: repair writes into a new directory only",
            out.display()
        );
    }
    let survey = store.salvage_into(out)?;
    for name in COPIED {
        let from = data.join(name);
        if from.exists() {
            std::fs::copy(&from, out.join(name))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    println!("kept in {}: {}", out.display(), intact(&survey));
    if let Some(u) = unproven(&survey) {
        println!("kept: {u}");
    }
    for d in &survey.damage {
        println!("lost: {}", describe(d));
    }
    if let Some(t) = torn(&survey) {
        println!("left out: torn tail at {t}");
    }
    if !survey.is_damaged() && survey.torn_tail.is_none() {
        println!("nothing lost: the log had no damage");
    }
    Ok(())
}
