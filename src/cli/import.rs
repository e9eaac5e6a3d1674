//! `netwait import`: NDJSON files (and PBX logs, call records) into the embedded store.

use super::StoreArgs;
use super::config::{Use, open_engine};
use super::decoded_inputs;
use super::inputs::{self, Input};
use super::interrupt::{Interrupt, Interrupted};
use super::progress::{Bar, Tally};
use anyhow::Context;
use netwait_aggregator::engine::{CheckpointMoment, IngestSummary};
use netwait_ingest::format::Format;
use netwait_ingest::pipeline::{PipelineOptions, Staged, import};
use netwait_ingest::source::{MappedSource, ReaderSource, Source};
use std::time::Instant;

/// `--format`.
pub fn format_arg(text: &str) -> Result<Format, String> {
    Format::parse(text)
        .ok_or_else(|| format!("{text:.32}: use ndjson, queue_log, queue_log_csv or cdr"))
}

pub fn run(
    store: &StoreArgs,
    files: &[String],
    strict: bool,
    format: Option<Format>,
    timezone: Option<&str>,
) -> anyhow::Result<()> {
    let mut sources = Vec::with_capacity(files.len());
    // Inputs of the sequential formats, read whole; their place in `sources` is `None`.
    let mut whole = Vec::new();
    for input in inputs::open_all(files)? {
        let name = input.name().to_owned();
        let input_format = decoded_inputs::format_of(&input, format)?;
        if input_format != Format::Ndjson {
            whole.push(decoded_inputs::read_whole(input, input_format)?);
            sources.push((name, None));
            continue;
        }
        let source: Box<dyn Source> = match input {
            Input::Stdin => Box::new(ReaderSource::new("stdin", std::io::stdin(), None)),
            Input::File {
                source,
                file,
                len,
                regular,
                ..
            } => {
                // Regular files are mapped; anything else (a FIFO, a device) is read.
                match (regular && len > 0).then(|| MappedSource::open(source.clone(), &file)) {
                    Some(Ok(mapped)) => Box::new(mapped),
                    _ => Box::new(
                        ReaderSource::new(source.clone(), file, Some(len)).positioned(source),
                    ),
                }
            }
        };
        sources.push((name, Some(source)));
    }
    let mut settings = super::config::load(store)?.decode;
    if let Some(zone) = timezone {
        settings.timezone = super::config::timezone(zone).context("--timezone")?;
    }
    // The counts printed are a report: a reader that goes away must not stop the import.
    crate::stdout::keep_working();
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    let mut decoded = decoded_inputs::decode(&whole, &settings, &engine, &pseudo).into_iter();
    // From here on, Ctrl-C stops reading at the next chunk; what was read is committed
    // and reported (a second Ctrl-C stops at once).
    let interrupt = Interrupt::catch().context("catching SIGINT")?;
    let mut total = IngestSummary::default();
    let started = Instant::now();
    let n_sources = sources.len();
    for (i, (name, source)) in sources.into_iter().enumerate() {
        if interrupt.happened() {
            break;
        }
        // After the last input, checkpoint while its last batch is written.
        let checkpoint = i + 1 == n_sources;
        let Some(source) = source else {
            let chunks = decoded.next().unwrap_or_default();
            let sum = netwait_ingest::decoded::stage(&mut engine, chunks, checkpoint)?;
            if files.len() > 1 {
                print_counts(&name, &sum);
            }
            warn_if_all_rejected(&name, &sum);
            total += sum;
            continue;
        };
        // A pipe or a device says 0: its size is not known.
        let size = source.size_hint().filter(|&n| n > 0);
        if let Some(size) = size {
            // About 100 bytes a line: size the dedupe set and call index once.
            engine.reserve(usize::try_from(size / 100).unwrap_or(0));
        }
        let mut source = interrupt.stops(source);
        let bar = Bar::new(&name, size, "staged");
        let mut on_progress = |s: Staged| {
            let rejected = s.lines.saturating_sub(s.events);
            bar.update(
                s.bytes,
                Tally {
                    lines: s.lines,
                    rejected: Some(rejected),
                },
            );
            if size.is_some_and(|n| s.bytes >= n) {
                bar.finishing("all staged: committing");
            }
        };
        let result = import(
            source.as_mut(),
            &mut engine,
            &pseudo,
            PipelineOptions {
                checkpoint,
                ..PipelineOptions::default()
            },
            &mut on_progress,
        );
        bar.finish();
        let sum = match result {
            Ok(sum) => sum,
            Err(e) => {
                if let netwait_ingest::pipeline::PipelineError::Read { committed, .. } = &e {
                    total += *committed;
                    print_counts("committed before the error", &total);
                }
                return Err(e.into());
            }
        };
        total += sum;
        if interrupt.happened() {
            break; // its counts are part of the total; the input was not read to its end
        }
        if files.len() > 1 {
            print_counts(&name, &sum);
        }
        warn_if_all_rejected(&name, &sum);
    }
    if interrupt.happened() {
        // Everything counted is durable: `import` returns only then.
        print_counts("committed before the interrupt", &total);
        std::mem::forget(engine);
        return Err(Interrupted.into());
    }
    let imported = started.elapsed();
    // Normally written with the last input already (then nothing is due).
    engine.checkpoint_at(CheckpointMoment::Stopping);
    print_counts("total", &total);
    tracing::debug!(
        import_ms = imported.as_millis() as u64,
        checkpoint_ms = (started.elapsed() - imported).as_millis() as u64,
        "import done"
    );
    // Everything is durable and the process is about to exit: let the OS take back the
    // call book's memory at once instead of freeing a million entries one by one. The
    // data directory's lock goes with the process.
    std::mem::forget(engine);
    refuse_rejected(strict, total.rejected)
}

/// A file whose every line was rejected is most likely not events at all (wrong file,
/// wrong format): say so, the counts alone are easy to miss.
pub fn warn_if_all_rejected(name: &str, s: &IngestSummary) {
    if s.rejected > 0 && s.accepted == 0 && s.duplicate == 0 {
        eprintln!(
            "netwait: warning: every line of {name} was rejected ({} lines); `netwait deadletter` says why",
            s.rejected
        );
    }
}

/// `--strict`: any rejected line fails the command (after everything valid is committed).
pub fn refuse_rejected(strict: bool, rejected: u64) -> anyhow::Result<()> {
    if strict && rejected > 0 {
        anyhow::bail!(
            "{rejected} line(s) rejected (--strict); the valid ones were committed, `netwait deadletter` lists the others"
        );
    }
    Ok(())
}

fn print_counts(label: &str, s: &IngestSummary) {
    println!(
        "{label}: accepted {} duplicate {} rejected {}",
        s.accepted, s.duplicate, s.rejected
    );
}
