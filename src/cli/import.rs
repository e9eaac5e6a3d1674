//! `netwait import`: NDJSON files into the embedded store.

use super::StoreArgs;
use super::config::{Use, open_engine};
use netwait_aggregator::engine::IngestSummary;
use netwait_ingest::pipeline::{PipelineOptions, import};
use netwait_ingest::source::{MappedSource, ReaderSource, Source};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Prints progress on a terminal, at most twice a second.
struct ProgressLine {
    name: String,
    size: Option<u64>,
    last: Instant,
    shown: bool,
}

impl ProgressLine {
    fn update(&mut self, done: u64) {
        if self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let mb = done as f64 / 1e6;
        match self.size {
            Some(total) if total > 0 => eprint!(
                "\r{}: {mb:.1} / {:.1} MB ({:.0}%)   ",
                self.name,
                total as f64 / 1e6,
                done as f64 * 100.0 / total as f64
            ),
            _ => eprint!("\r{}: {mb:.1} MB   ", self.name),
        }
        let _ = std::io::stderr().flush();
    }
}

pub fn run(store: &StoreArgs, files: &[String]) -> anyhow::Result<()> {
    // Open every input first: a typo in a file name must not leave a half import.
    let mut sources = Vec::with_capacity(files.len());
    for name in files {
        let source: Box<dyn Source> = if name == "-" {
            Box::new(ReaderSource::new("stdin", std::io::stdin(), None))
        } else {
            let f =
                std::fs::File::open(name).map_err(|e| anyhow::anyhow!("opening {name}: {e}"))?;
            let meta = f.metadata().ok();
            let size = meta.as_ref().map(std::fs::Metadata::len);
            let regular = meta.is_some_and(|m| m.is_file() && m.len() > 0);
            // Regular files are mapped; anything else (a FIFO, a device) is read.
            match regular.then(|| MappedSource::open(name.clone(), &f)) {
                Some(Ok(mapped)) => Box::new(mapped),
                _ => Box::new(ReaderSource::new(name.clone(), f, size)),
            }
        };
        sources.push((name, source));
    }
    let (mut engine, pseudo) = open_engine(store, Use::Ingest)?;
    let mut total = IngestSummary::default();
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let n_sources = sources.len();
    for (i, (name, mut source)) in sources.into_iter().enumerate() {
        if let Some(size) = source.size_hint() {
            // About 100 bytes a line: size the dedupe set and call index once.
            engine.reserve(usize::try_from(size / 100).unwrap_or(0));
        }
        let mut progress = ProgressLine {
            name: name.clone(),
            size: source.size_hint(),
            last: Instant::now(),
            shown: false,
        };
        let mut on_progress = |done: u64| {
            if tty {
                progress.update(done);
            }
        };
        let result = import(
            source.as_mut(),
            &mut engine,
            &pseudo,
            PipelineOptions {
                // After the last input, checkpoint while its last batch is written.
                checkpoint: i + 1 == n_sources,
                ..PipelineOptions::default()
            },
            &mut on_progress,
        );
        if progress.shown {
            eprintln!();
        }
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
        if files.len() > 1 {
            print_counts(name, &sum);
        }
        total += sum;
    }
    let imported = started.elapsed();
    // Normally written with the last input already (then a no-op). Every event is durable
    // by now: a checkpoint that cannot be written is a warning, not a failed import.
    if let Err(e) = engine.checkpoint() {
        tracing::warn!(error = %e, "events committed, but the checkpoint could not be written");
    }
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
    Ok(())
}

fn print_counts(label: &str, s: &IngestSummary) {
    println!(
        "{label}: accepted {} duplicate {} rejected {}",
        s.accepted, s.duplicate, s.rejected
    );
}
