//! `netwait tail FORMAT PATH`: a followed log into the embedded store, through the same
//! source driver as `import` (see `netwait_ingest::tail`).

use super::StoreArgs;
use super::config::{Use, open_engine};
use anyhow::Context;
use netwait_ingest::format::Format;
use netwait_ingest::pipeline::{PipelineOptions, drive};
use netwait_ingest::tail::TailSource;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn run(store: &StoreArgs, format: Format, path: &Path) -> anyhow::Result<()> {
    if !matches!(format, Format::QueueLog | Format::Ndjson) {
        anyhow::bail!("tail follows queue_log or ndjson, not {}", format.as_str());
    }
    let settings = super::config::load(store)?.decode;
    let mut source =
        TailSource::new(path, format).with_context(|| format!("following {}", path.display()))?;
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("catching signals")?;
    }
    eprintln!(
        "netwait: following {} ({})",
        source.name_for_humans(),
        format.as_str()
    );
    let sum = drive(
        &mut source,
        &mut engine,
        &pseudo,
        &settings,
        PipelineOptions::long_running(),
        Some(&stop),
        &mut |_| {},
    )?;
    engine.checkpoint_at(netwait_aggregator::engine::CheckpointMoment::Stopping);
    println!(
        "stopped: accepted {} duplicate {} rejected {}",
        sum.accepted, sum.duplicate, sum.rejected
    );
    Ok(())
}
