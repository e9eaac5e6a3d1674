//! The one place where call records become counts and sums (spec §4–§6 all read these).

use super::calendar::Hours;
use super::calendar::ServiceCalendar;
use super::call::{CallRecord, Outcome};
use super::cells::INTERVAL;
use super::time::{Millis, RomeClock, SECOND, local_date};
use jiff::civil::Date;

/// Counts and sums over a set of calls (one period, one line or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub answered: u64,
    pub abandoned: u64,
    pub overflow: u64,
    /// Answered with net wait < 1 s.
    pub answered_without_wait: u64,
    /// Answered with 1 s <= net wait < T.
    pub answered_wait_within_threshold: u64,
    /// Answered with net wait >= T.
    pub answered_wait_over_threshold: u64,
    /// Answered with net wait < T (the SLA numerator).
    pub answered_within_threshold: u64,
    pub max_wait_ms: Option<Millis>,
    pub wait_sum_ms: u128,
    pub talk_sum_ms: u128,
    pub talk_count: u64,
    pub bookings: u64,
    pub out_of_hours: u64,
    pub unresolved: u64,
}

impl Figures {
    /// Counts one record; `in_hours` is whether its anchor is inside service hours.
    pub fn add(&mut self, rec: &CallRecord<'_>, in_hours: bool, threshold_ms: Millis) {
        if rec.outcome == Outcome::Open {
            return; // not counted yet
        }
        if !in_hours {
            self.out_of_hours += 1;
            return;
        }
        match rec.outcome {
            Outcome::Open => {}
            Outcome::Unresolved => self.unresolved += 1,
            Outcome::Abandoned => self.abandoned += 1,
            Outcome::Overflow => self.overflow += 1,
            Outcome::Answered => {
                self.answered += 1;
                let w = rec.net_wait.unwrap_or(0);
                if w < SECOND {
                    self.answered_without_wait += 1;
                } else if w < threshold_ms {
                    self.answered_wait_within_threshold += 1;
                }
                if w >= threshold_ms {
                    self.answered_wait_over_threshold += 1;
                } else {
                    self.answered_within_threshold += 1;
                }
                self.max_wait_ms = Some(self.max_wait_ms.map_or(w, |m| m.max(w)));
                self.wait_sum_ms += w as u128;
                if let Some(t) = rec.talk {
                    self.talk_sum_ms += t as u128;
                    self.talk_count += 1;
                }
            }
        }
        if matches!(
            rec.outcome,
            Outcome::Answered | Outcome::Abandoned | Outcome::Overflow
        ) {
            self.bookings += u64::from(rec.bookings);
        }
    }

    pub fn calls_received(&self) -> u64 {
        self.answered + self.overflow + self.abandoned
    }

    pub fn max_wait_s(&self) -> Option<f64> {
        self.max_wait_ms.map(|m| m as f64 / 1000.0)
    }

    /// Mean net wait of answered calls, seconds; `None` when there is none.
    pub fn avg_wait_s(&self) -> Option<f64> {
        mean_s(self.wait_sum_ms, self.answered)
    }

    /// Mean talk time of answered calls that have one, seconds.
    pub fn avg_talk_s(&self) -> Option<f64> {
        mean_s(self.talk_sum_ms, self.talk_count)
    }
}

fn mean_s(sum_ms: u128, n: u64) -> Option<f64> {
    (n > 0).then(|| sum_ms as f64 / (u128::from(n) * 1000) as f64)
}

/// Which calls to count: one service line, or all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineFilter(pub Option<String>);

impl LineFilter {
    pub fn admits(&self, line: &str) -> bool {
        self.0.as_deref().is_none_or(|l| l == line)
    }
}

/// Decides where records count, one after another: the Europe/Rome local day of an
/// anchor and whether it is inside service hours. Records come roughly in time order:
/// the hours of the last local day seen serve most of them.
pub struct Classifier<'c> {
    calendar: &'c ServiceCalendar,
    clock: RomeClock,
    today: Option<(i64, Option<Hours>)>,
}

impl<'c> Classifier<'c> {
    pub fn new(calendar: &'c ServiceCalendar) -> Self {
        Self {
            calendar,
            clock: RomeClock::default(),
            today: None,
        }
    }

    /// The local day (days since 1970-01-01) of an instant, and whether it is in hours.
    pub fn place(&mut self, at: Millis) -> (i64, bool) {
        let (day, time) = self.clock.local_day(at);
        let hours = match self.today {
            Some((d, hours)) if d == day => hours,
            _ => {
                let hours = self.calendar.hours_on(local_date(day));
                self.today = Some((day, hours));
                hours
            }
        };
        (day, hours.is_some_and(|h| h.contains(time)))
    }

    /// What one record adds to the figures of its period: the figures of it alone
    /// (nothing for an open call), by the one rule of [`Figures::add`].
    pub fn contribution(&mut self, rec: &CallRecord<'_>, threshold_ms: Millis) -> Figures {
        let mut f = Figures::default();
        if rec.outcome != Outcome::Open {
            let (_, in_hours) = self.place(rec.anchor);
            f.add(rec, in_hours, threshold_ms);
        }
        f
    }
}

impl Figures {
    /// Adds the figures of other calls.
    pub fn merge(&mut self, o: &Figures) {
        self.answered += o.answered;
        self.abandoned += o.abandoned;
        self.overflow += o.overflow;
        self.answered_without_wait += o.answered_without_wait;
        self.answered_wait_within_threshold += o.answered_wait_within_threshold;
        self.answered_wait_over_threshold += o.answered_wait_over_threshold;
        self.answered_within_threshold += o.answered_within_threshold;
        self.max_wait_ms = match (self.max_wait_ms, o.max_wait_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.wait_sum_ms += o.wait_sum_ms;
        self.talk_sum_ms += o.talk_sum_ms;
        self.talk_count += o.talk_count;
        self.bookings += o.bookings;
        self.out_of_hours += o.out_of_hours;
        self.unresolved += o.unresolved;
    }

    /// Takes back the counts and sums of calls [`Self::merge`]d in before. A maximum
    /// cannot be taken back: `max_wait_ms` is left as it is, for the caller to settle.
    pub fn retract_sums(&mut self, o: &Figures) {
        self.answered -= o.answered;
        self.abandoned -= o.abandoned;
        self.overflow -= o.overflow;
        self.answered_without_wait -= o.answered_without_wait;
        self.answered_wait_within_threshold -= o.answered_wait_within_threshold;
        self.answered_wait_over_threshold -= o.answered_wait_over_threshold;
        self.answered_within_threshold -= o.answered_within_threshold;
        self.wait_sum_ms -= o.wait_sum_ms;
        self.talk_sum_ms -= o.talk_sum_ms;
        self.talk_count -= o.talk_count;
        self.bookings -= o.bookings;
        self.out_of_hours -= o.out_of_hours;
        self.unresolved -= o.unresolved;
    }
}

/// Where a report's figures are counted from: every record (a scan), or a book's
/// per-interval cells ([`super::cells`]).
pub trait CallSource {
    /// Folds the calls of `line` anchored on local dates in `[from, to)` into buckets:
    /// `bucket(local_date)` names the bucket of a call anchored on that date (always
    /// inside the period), or `None` to leave it out.
    fn tally(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        period: (Date, Date),
        bucket: &(dyn Fn(Date) -> Option<usize> + Sync),
        out: &mut [Figures],
    );

    /// Folds the calls of `line` anchored in the intervals of `grid` into its buckets
    /// (`out[k]` for bucket k).
    fn tally_intervals(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        grid: IntervalGrid,
        out: &mut [Figures],
    );
}

/// Buckets of whole 15-minute intervals ([`INTERVAL`]) in a row: bucket k holds the
/// intervals numbered `first + k * per_bucket ..` (since the epoch) up to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalGrid {
    pub first: i64,
    pub per_bucket: i64,
    pub buckets: usize,
}

impl IntervalGrid {
    /// The intervals the grid covers.
    pub fn intervals(&self) -> std::ops::Range<i64> {
        self.first..self.first + self.per_bucket * self.buckets as i64
    }

    /// The bucket of an interval, if the grid covers it.
    pub fn bucket(&self, interval: i64) -> Option<usize> {
        self.intervals()
            .contains(&interval)
            .then(|| ((interval - self.first) / self.per_bucket) as usize)
    }

    /// The first instant of bucket `k`.
    pub fn start_of(&self, k: usize) -> Millis {
        (self.first + k as i64 * self.per_bucket) * INTERVAL
    }
}

/// [`tally`] of records into the buckets of a grid, by the interval of their anchor.
pub fn tally_grid<'a>(
    records: impl Iterator<Item = CallRecord<'a>>,
    line: &LineFilter,
    calendar: &ServiceCalendar,
    threshold_ms: Millis,
    grid: IntervalGrid,
    out: &mut [Figures],
) {
    let mut place = Classifier::new(calendar);
    for rec in records {
        if rec.outcome == Outcome::Open || !line.admits(rec.line) {
            continue;
        }
        let Some(slot) = grid
            .bucket(rec.anchor.div_euclid(INTERVAL))
            .and_then(|k| out.get_mut(k))
        else {
            continue;
        };
        let (_, in_hours) = place.place(rec.anchor);
        slot.add(&rec, in_hours, threshold_ms);
    }
}

/// A source counted afresh from every record it holds: a scan of a book, a slice of
/// records. Each is a [`CallSource`] by the one recount below.
pub trait Records {
    /// Every record, once.
    fn records(&self) -> impl Iterator<Item = CallRecord<'_>>;
}

impl<R: Records + ?Sized> CallSource for R {
    fn tally(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        period: (Date, Date),
        bucket: &(dyn Fn(Date) -> Option<usize> + Sync),
        out: &mut [Figures],
    ) {
        tally_period(
            self.records(),
            line,
            calendar,
            threshold_ms,
            period,
            bucket,
            out,
        );
    }

    fn tally_intervals(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        grid: IntervalGrid,
        out: &mut [Figures],
    ) {
        tally_grid(self.records(), line, calendar, threshold_ms, grid, out);
    }
}

/// Records held in a slice are a source (for tests and small sets).
impl Records for [CallRecord<'_>] {
    fn records(&self) -> impl Iterator<Item = CallRecord<'_>> {
        self.iter().copied()
    }
}

/// [`tally`] of the calls anchored on the days of `[from, to)`, into `bucket(date)`.
pub fn tally_period<'a>(
    records: impl Iterator<Item = CallRecord<'a>>,
    line: &LineFilter,
    calendar: &ServiceCalendar,
    threshold_ms: Millis,
    (from, to): (Date, Date),
    bucket: &(dyn Fn(Date) -> Option<usize> + Sync),
    out: &mut [Figures],
) {
    let in_period = |d: Date| (from <= d && d < to).then(|| bucket(d)).flatten();
    tally(records, line, calendar, threshold_ms, in_period, out);
}

/// Folds records into buckets: `bucket(local_date)` names the bucket of a call anchored
/// on that Europe/Rome date, or `None` to leave it out.
pub fn tally<'a>(
    records: impl Iterator<Item = CallRecord<'a>>,
    line: &LineFilter,
    calendar: &ServiceCalendar,
    threshold_ms: Millis,
    bucket: impl Fn(Date) -> Option<usize>,
    out: &mut [Figures],
) {
    let mut place = Classifier::new(calendar);
    // The bucket of the last local day seen serves most calls (they come roughly in
    // time order).
    let mut today: Option<(i64, Option<usize>)> = None;
    for rec in records {
        if rec.outcome == Outcome::Open || !line.admits(rec.line) {
            continue;
        }
        let (day, in_hours) = place.place(rec.anchor);
        let slot = match today {
            Some((d, slot)) if d == day => slot,
            _ => {
                let slot = bucket(local_date(day));
                today = Some((day, slot));
                slot
            }
        };
        let Some(slot) = slot.and_then(|i| out.get_mut(i)) else {
            continue;
        };
        slot.add(&rec, in_hours, threshold_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(wait: Millis) -> CallRecord<'static> {
        CallRecord {
            anchor: 0,
            line: "cup",
            outcome: Outcome::Answered,
            net_wait: Some(wait),
            talk: None,
            bookings: 0,
        }
    }

    #[test]
    fn band_edges() {
        let mut f = Figures::default();
        for w in [0, 999, 1_000, 139_999, 140_000, 140_001] {
            f.add(&answered(w), true, 140_000);
        }
        assert_eq!(f.answered_without_wait, 2);
        assert_eq!(f.answered_wait_within_threshold, 2);
        assert_eq!(f.answered_wait_over_threshold, 2);
        assert_eq!(f.answered_within_threshold, 4);
        assert_eq!(f.max_wait_s(), Some(140.001));
        assert_eq!(f.avg_talk_s(), None);
    }

    #[test]
    fn counting_rules() {
        let mut f = Figures::default();
        let mut r = answered(5_000);
        r.talk = Some(0);
        r.bookings = 2;
        f.add(&r, true, 140_000);
        let mut r2 = answered(1_000);
        r2.outcome = Outcome::Overflow;
        r2.bookings = 1;
        f.add(&r2, true, 140_000);
        r2.outcome = Outcome::Unresolved;
        f.add(&r2, true, 140_000);
        r2.outcome = Outcome::Open;
        f.add(&r2, false, 140_000);
        r2.outcome = Outcome::Abandoned;
        f.add(&r2, false, 140_000);
        assert_eq!(f.calls_received(), 2);
        assert_eq!(
            f.bookings, 3,
            "unresolved and out-of-hours bookings are not counted"
        );
        assert_eq!(f.unresolved, 1);
        assert_eq!(f.out_of_hours, 1, "open calls are not counted yet");
        assert_eq!(f.avg_talk_s(), Some(0.0), "a zero talk time counts");
        assert_eq!(f.avg_wait_s(), Some(5.0));
    }
}
