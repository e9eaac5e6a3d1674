//! `serve`'s background check of the whole log. Opening starts from the checkpoint, so
//! damage in the part it covers would go unnoticed until the checkpoint is lost (and
//! then the store would not open): the server surveys every committed byte, as `netwait
//! check` does, on a thread of its own, and reports damage as an ERROR. It keeps serving:
//! the checkpoint still answers every query.

use super::check::describe;
use netwait_aggregator::store::embedded::EmbeddedStore;
use netwait_aggregator::store::verify::CommittedLog;
use std::path::Path;
use std::time::Instant;

/// Damaged regions named one by one in the log at most (the count says the rest).
const REGIONS_NAMED: usize = 8;

/// Starts the check of the log of `data` as committed now (call it before serving: what
/// is committed later is not read), once the store is opened for writing and kept open
/// for as long as the process runs.
pub fn spawn(data: &Path) {
    // SAFETY: `serve` calls this once its engine has opened the store of `data` for
    // writing (its log replayed, a torn tail cut), and keeps that store until it exits,
    // so no byte mapped is cut or changed while the check runs.
    let log = match unsafe { EmbeddedStore::map_committed(data) } {
        Ok(log) => log,
        Err(e) => {
            tracing::warn!(error = %e, "the log cannot be checked in the background");
            return;
        }
    };
    let dir = data.display().to_string();
    let started = std::thread::Builder::new()
        .name("log-check".into())
        .spawn(move || check(&log, &dir));
    if let Err(e) = started {
        tracing::warn!(error = %e, "the log cannot be checked in the background");
    }
}

fn check(log: &CommittedLog, dir: &str) {
    let started = Instant::now();
    let survey = log.survey();
    let ms = started.elapsed().as_millis() as u64;
    if !survey.is_damaged() {
        let (events, dead_letters) = survey.records();
        tracing::info!(
            bytes = log.len(),
            commits = survey.commits.len(),
            events,
            dead_letters,
            ms,
            "log checked: no damage"
        );
        return;
    }
    let bytes: u64 = survey.damage.iter().map(|d| d.end - d.at).sum();
    let mut regions: Vec<String> = survey
        .damage
        .iter()
        .take(REGIONS_NAMED)
        .map(describe)
        .collect();
    if survey.damage.len() > REGIONS_NAMED {
        regions.push(format!("and {} more", survey.damage.len() - REGIONS_NAMED));
    }
    tracing::error!(
        regions = survey.damage.len(),
        bytes,
        "the log of {dir} is damaged: {}. Queries are still answered from the checkpoint, but without it the store cannot be opened: stop the server, run `netwait check --data {dir}`, then `netwait repair --data {dir} --out NEWDIR` to salvage the {} intact commit(s)",
        regions.join("; "),
        survey.commits.len()
    );
}
