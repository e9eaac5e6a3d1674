//! `netwait check`: the whole log verified, frame by frame; damage reported with its
//! byte positions. Reads only.

use anyhow::bail;
use netwait_aggregator::store::EventStore;
use netwait_aggregator::store::embedded::EmbeddedStore;
use netwait_aggregator::store::verify::{Damage, Survey};
use std::path::Path;

/// One line about a damaged region.
pub(super) fn describe(d: &Damage) -> String {
    let lost = match d.commits {
        Some(n) => format!("{n} commit(s) lost"),
        None => "commits lost: unknown (no readable frame header)".to_owned(),
    };
    format!(
        "bytes {}..{} ({} bytes): {}; {lost}, {} record(s) readable in it (not kept)",
        d.at,
        d.end,
        d.end - d.at,
        d.what,
        d.records_readable
    )
}

/// One line about the intact commits.
pub(super) fn intact(s: &Survey) -> String {
    let (events, dead) = s.records();
    let bytes: u64 = s.commits.iter().map(|c| c.bytes).sum();
    format!(
        "{} intact commit(s), {bytes} bytes: {events} event(s), {dead} dead letter(s)",
        s.commits.len()
    )
}

/// What the survey could not prove about the commits it found past damage.
pub(super) fn unproven(s: &Survey) -> Option<String> {
    let n = s.unproven();
    (n > 0).then(|| {
        format!(
            "{n} of them found past the damage in the old (untagged) frame format: taken as intact because the log holds no better, but nothing proves they are commits rather than bytes inside a damaged one (a rejected line's raw bytes)"
        )
    })
}

pub(super) fn torn(s: &Survey) -> Option<String> {
    s.torn_tail
        .map(|(at, n)| format!("byte {at} ({n} bytes): an unfinished (unacknowledged) last write"))
}

pub fn run(data: &Path) -> anyhow::Result<()> {
    let mut store = EmbeddedStore::open_read_only(data)?;
    let survey = store.survey()?;
    println!("events.log: {} bytes", survey.log_bytes);
    println!("  {}", intact(&survey));
    for d in &survey.damage {
        println!("  damaged: {}", describe(d));
    }
    if let Some(u) = unproven(&survey) {
        println!("  {u}");
    }
    if let Some(t) = torn(&survey) {
        println!("  torn tail at {t}, cut off by the next import or serve");
    }
    // Whether a checkpoint still hides damage from openings (they start from it).
    if let Some(cp) = store.load_checkpoint(false)? {
        println!("checkpoint at byte {}", cp.position);
        if survey.damage.iter().any(|d| d.at < cp.position) {
            println!(
                "  it covers damage: figures opened from it still count those commits, a replay of the log cannot"
            );
        }
    }
    if survey.is_damaged() {
        let bytes: u64 = survey.damage.iter().map(|d| d.end - d.at).sum();
        bail!(
            "the log of {} is damaged ({} region(s), {bytes} bytes): `netwait repair --data {} --out NEWDIR` salvages the {} intact commit(s) into a new directory",
            data.display(),
            survey.damage.len(),
            data.display(),
            survey.commits.len()
        );
    }
    println!("no damage");
    Ok(())
}
