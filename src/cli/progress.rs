//! The live bar of `import` and `push`, on a terminal only (stderr a TTY; never in a
//! pipe, a file or a test): bytes of the input, lines and their rate, the outcome known
//! so far, ETA. Redrawn every 100 ms whatever the input does; callers only count.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often the bar is redrawn (the elapsed time and ETA move even while a commit waits).
const TICK: Duration = Duration::from_millis(100);

/// What the bar says besides the bytes: the lines so far and what is known of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub lines: u64,
    /// Of the lines, rejected (`None`: not known yet, as when pushing).
    pub rejected: Option<u64>,
}

/// The bar's text after the bytes: lines, lines a second, and the rejected ones.
pub fn describe(t: Tally, elapsed: Duration, verb: &str) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        format!("{:.0}", t.lines as f64 / secs)
    } else {
        "-".to_owned()
    };
    let rejected = t
        .rejected
        .map_or_else(String::new, |r| format!(", rejected {r}"));
    format!("{} lines {verb}, {rate} events/s{rejected}", t.lines)
}

#[derive(Clone)]
pub struct Bar {
    bar: ProgressBar,
    started: Instant,
    verb: &'static str,
}

impl Bar {
    /// A bar for input `name` of `size` bytes (when known: then a bar with an ETA, else
    /// a spinner); `verb` says what happened to the lines counted ("staged", "sent").
    /// Hidden unless stderr is a terminal.
    pub fn new(name: &str, size: Option<u64>, verb: &'static str) -> Self {
        let shown = std::io::stderr().is_terminal();
        Self::with_target(name, size, verb, shown)
    }

    fn with_target(name: &str, size: Option<u64>, verb: &'static str, shown: bool) -> Self {
        let target = if shown {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let template = match size {
            Some(_) => {
                "{prefix} [{bar:24}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {wide_msg}"
            }
            None => "{prefix} {spinner} {bytes} ({binary_bytes_per_sec}) {wide_msg}",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(size, target)
            .with_style(style)
            .with_prefix(super::terminal_text::escape_all(name));
        if shown {
            bar.enable_steady_tick(TICK);
        }
        Self {
            bar,
            started: Instant::now(),
            verb,
        }
    }

    /// Bytes of the input done, and the lines so far.
    pub fn update(&self, bytes: u64, tally: Tally) {
        self.bar.set_position(bytes);
        self.bar
            .set_message(describe(tally, self.started.elapsed(), self.verb));
    }

    /// Says what the end waits for (the last commits and the checkpoint).
    pub fn finishing(&self, what: &'static str) {
        self.bar.set_message(what);
    }

    /// Gone from the screen: the totals line printed next says how it ended.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    #[cfg(test)]
    fn position(&self) -> u64 {
        self.bar.position()
    }

    #[cfg(test)]
    fn message(&self) -> String {
        self.bar.message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_gives_lines_rate_and_what_is_known_of_them() {
        let t = Tally {
            lines: 30_000,
            rejected: Some(12),
        };
        assert_eq!(
            describe(t, Duration::from_secs(2), "staged"),
            "30000 lines staged, 15000 events/s, rejected 12"
        );
        let t = Tally {
            lines: 10,
            rejected: None,
        };
        assert_eq!(
            describe(t, Duration::ZERO, "sent"),
            "10 lines sent, - events/s"
        );
    }

    #[test]
    fn a_hidden_bar_keeps_its_state() {
        let bar = Bar::with_target("f\u{1b}.ndjson", Some(1_000), "staged", false);
        bar.update(
            400,
            Tally {
                lines: 4,
                rejected: Some(1),
            },
        );
        assert_eq!(bar.position(), 400);
        assert!(
            bar.message().starts_with("4 lines staged, "),
            "{}",
            bar.message()
        );
        assert!(bar.message().ends_with(" events/s, rejected 1"));
        bar.finishing("committing");
        assert_eq!(bar.message(), "committing");
        bar.finish();
        assert!(bar.bar.is_finished());
    }
}
