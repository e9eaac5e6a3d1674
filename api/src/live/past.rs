//! The days of the month before today, from the store that keeps them (ClickHouse), for
//! a live side whose own book holds only the recent events (the api role following
//! Kafka, see [`super::follower`]).
//!
//! A period's figures are split by each call's anchor day (Europe/Rome), which is how the
//! cells place it: the days before today are the store's, today is the live book's. So
//! the month to date is the store's `[first of month, today)` merged with the book's
//! today, and a call is counted once: in the day it was offered, from one of the two.
//! A thread reads the store every [`EVERY`] (late events change past days too), so the
//! live thread never waits on SQL; a view of another day than today is not used (its
//! split would be wrong): the month to date is then unknown (`-`) until the next read.

use super::clock::Clock;
use netwait_aggregator::domain::figures::Figures;
use netwait_aggregator::domain::time::{Millis, RomeClock, local_date};
use netwait_clickhouse::answers::SqlAnswers;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the store is read.
pub const EVERY: Duration = Duration::from_secs(15);

/// What the store said of the month before `day`.
#[derive(Debug, Default)]
pub struct PastView {
    /// The local day that was today when read.
    pub day: i64,
    /// One more per read.
    pub version: u64,
    /// The lines the store has calls of.
    pub lines: Vec<String>,
    /// Per line: `[first of month, day)`, and each of those days.
    pub month: HashMap<String, (Figures, Vec<Figures>)>,
}

impl PastView {
    /// The month before today of `line` (nothing when the store has no call of it).
    pub fn of(&self, line: &str) -> (Figures, Vec<Figures>) {
        self.month.get(line).cloned().unwrap_or_default()
    }
}

/// The latest view, shared by the reader thread and the live thread.
#[derive(Debug, Clone, Default)]
pub struct PastDays(Arc<Mutex<Option<Arc<PastView>>>>);

impl PastDays {
    /// The latest view when it is of `day`.
    pub fn of_day(&self, day: i64) -> Option<Arc<PastView>> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        (v.day == day).then_some(v)
    }

    pub(crate) fn set(&self, view: PastView) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(view));
    }

    /// Starts the thread reading `answers` every [`EVERY`] (at once first), on `clock`'s
    /// days; it runs for the life of the process.
    pub fn start(answers: SqlAnswers, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let past = Self::default();
        let shared = past.clone();
        std::thread::Builder::new()
            .name("netwait-live-past".into())
            .spawn(move || {
                let mut version = 0;
                let mut failing = false;
                loop {
                    version += 1;
                    match read(&answers, clock.now_ms(), version) {
                        Ok(view) => {
                            if failing {
                                tracing::info!("the store's past days are read again");
                            }
                            failing = false;
                            shared.set(view);
                        }
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "cannot read the store's past days: month to date unknown until it answers");
                        }
                        Err(_) => {}
                    }
                    std::thread::sleep(EVERY);
                }
            })?;
        Ok(past)
    }
}

/// The month before today at `now`, line by line, every line as of the same commits
/// (one reading of the log for the whole view).
fn read(
    answers: &SqlAnswers,
    now: Millis,
    version: u64,
) -> Result<PastView, netwait_clickhouse::Error> {
    answers.checked(|a| read_lines(a, now, version))?
}

fn read_lines(
    answers: &SqlAnswers,
    now: Millis,
    version: u64,
) -> Result<PastView, netwait_clickhouse::Error> {
    let (day, _) = RomeClock::default().local_day(now);
    let today = local_date(day);
    let first = today.first_of_month();
    let lines = answers.lines()?;
    let mut month = HashMap::new();
    for line in &lines {
        // One query a line: the days with calls, each as a report of that day says.
        let mut by_day: HashMap<_, _> = answers
            .days_of(line, (first, today), now)?
            .into_iter()
            .collect();
        let mut days = Vec::new();
        let mut d = first;
        while d < today {
            days.push(by_day.remove(&d).unwrap_or_default());
            d = d.tomorrow().unwrap_or(today);
        }
        // The month before today is the merge of its days (one reading, so the two can
        // never disagree).
        let whole = days.iter().fold(Figures::default(), |mut m, f| {
            m.merge(f);
            m
        });
        month.insert(line.clone(), (whole, days));
    }
    Ok(PastView {
        day,
        version,
        lines,
        month,
    })
}
