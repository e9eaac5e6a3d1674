//! Every line the binary prints goes through here: `main.rs` shadows `print!`, `println!`,
//! `eprint!` and `eprintln!` for the whole crate, so no command can panic on a closed pipe.
//!
//! A reader that goes away (`netwait deadletter | head -1`) ends a command quietly with
//! status 0, as it does `ls`. Commands that write to the store ask to [`keep_working`]
//! instead: their output is a report of work that must still be finished, so they stop
//! printing and carry on.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What stdout failing does: exit at once (queries) or stop printing (ingest).
static KEEP_WORKING: AtomicBool = AtomicBool::new(false);

const OPEN: u8 = 0;
const READER_GONE: u8 = 1;
const FAILED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Stdout failing no longer ends the process: the rest of the output is dropped.
pub fn keep_working() {
    KEEP_WORKING.store(true, Ordering::Relaxed);
}

/// True when writing to stdout failed for another reason than a reader that went away
/// (the exit status should say so).
pub fn failed() -> bool {
    STATE.load(Ordering::Relaxed) == FAILED
}

/// Writes `args` (and a newline) to stdout; see the module doc for what a failure does.
pub fn print(args: std::fmt::Arguments<'_>, newline: bool) {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    let Err(e) = written else { return };
    let gone = e.kind() == ErrorKind::BrokenPipe;
    if !gone {
        eprint(format_args!("netwait: error: writing to stdout: {e}\n"));
    }
    if !KEEP_WORKING.load(Ordering::Relaxed) {
        std::process::exit(if gone { 0 } else { 1 });
    }
    STATE.store(if gone { READER_GONE } else { FAILED }, Ordering::Relaxed);
}

/// Writes to stderr; a closed stderr is not worth a panic (there is nowhere to say so).
pub fn eprint(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}
