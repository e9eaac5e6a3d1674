//! Ctrl-C (SIGINT) during `import`: the first stops reading at the next chunk boundary,
//! what was read is committed, and the command reports what is durable and exits 130; a
//! second stops the process at once (what it did not acknowledge, the next open cuts off).

use netwait_ingest::source::{Poll, Source, SourceCheckpoint, SourceError};
use signal_hook::consts::SIGINT;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status after SIGINT (128 + 2, as shells report it).
pub const EXIT_STATUS: u8 = 130;

/// The command was stopped by SIGINT after reporting what it committed.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted (SIGINT): only what is counted above was committed")
    }
}

impl std::error::Error for Interrupted {}

#[derive(Clone)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
}

impl Interrupt {
    /// Catches SIGINT from now on.
    pub fn catch() -> std::io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        // In this order: a SIGINT finding the flag already set (a second one) exits.
        signal_hook::flag::register_conditional_shutdown(
            SIGINT,
            i32::from(EXIT_STATUS),
            Arc::clone(&flag),
        )?;
        signal_hook::flag::register(SIGINT, Arc::clone(&flag))?;
        Ok(Self { flag })
    }

    pub fn happened(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// `source`, ending early (at a chunk boundary: no line is cut) once interrupted.
    pub fn stops(&self, source: Box<dyn Source>) -> Box<dyn Source> {
        Box::new(Stoppable {
            inner: source,
            interrupt: self.clone(),
        })
    }
}

struct Stoppable {
    inner: Box<dyn Source>,
    interrupt: Interrupt,
}

impl Source for Stoppable {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn resume(&mut self, checkpoint: &SourceCheckpoint) -> Result<(), SourceError> {
        self.inner.resume(checkpoint)
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        if self.interrupt.happened() {
            return Ok(Poll::End);
        }
        self.inner.poll()
    }

    fn on_durable(&mut self, checkpoint: &SourceCheckpoint) {
        self.inner.on_durable(checkpoint);
    }

    fn size_hint(&self) -> Option<u64> {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_ingest::source::ReaderSource;

    #[test]
    fn an_interrupted_source_ends_at_the_next_chunk() {
        let interrupt = Interrupt {
            flag: Arc::new(AtomicBool::new(false)),
        };
        let text = "{\"a\":1}\n".repeat(100_000).into_bytes();
        let input = std::io::Cursor::new(text);
        let mut source = interrupt.stops(Box::new(ReaderSource::new("t", input, None)));
        let Poll::Batch(first) = source.poll().expect("read") else {
            panic!("a chunk")
        };
        assert!(first.bytes.ends_with(b"\n"));
        interrupt.flag.store(true, Ordering::Relaxed);
        assert!(matches!(source.poll().expect("read"), Poll::End));
    }
}
