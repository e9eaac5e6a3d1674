//! Per-interval cells: every call's figures (for the configured threshold) folded into
//! additive cells keyed by (Europe/Rome 15-minute interval of its anchor, line), so that
//! a query reads the cells of its period instead of every call of the book.
//!
//! A cell holds [`Figures`] (counts, sums, a maximum) and its member calls (every call
//! anchored in the interval on the line). Each call's part is made by the one rule of
//! the figures ([`Classifier::contribution`]), so a sum of cells is the tally of their
//! calls. Kept exact as records change ([`Cells::settle`]): a changed call's old part is
//! taken back and its new one added; a maximum, which cannot be taken back, is counted
//! with how many calls reach it, and found again from the members when the last of them
//! leaves.
//!
//! The clock (spec §2): cells are settled at the book's newest `ts`, which only grows.
//! Cells hold the calls resolved or already unresolved at that clock; the calls still
//! open then (at most 6 hours of traffic) are kept apart by anchor, and a query at a
//! later `now` (wall clock) counts those of them that are unresolved by `now`.
//!
//! Europe/Rome has used only whole-hour offsets since 1970, so its local quarter hours
//! are UTC quarter hours: an interval never straddles a local midnight, and the local
//! date of an interval's start is that of every call in it.
//!
//! The cells of one UTC day are kept in a shared chunk ([`Arc`]): a clone of [`Cells`]
//! (a published snapshot) costs the map of days, and settling copies only the chunks of
//! the days it changes while a snapshot still holds them (copy on write).
//!
//! A checkpoint keeps the cells (see [`stored`]): the days changed since the last one,
//! and a head (threshold, calendar, clock, open calls, which days there are). Cells
//! opened from it leave each day where it is kept until settling touches it, or until
//! [`Cells::load_all`] (before any query reads them).

use super::calendar::ServiceCalendar;
use super::call::{CallRecord, CallState, LineId, Outcome, UNRESOLVED_AFTER};
use super::callbook::{CallBook, Changes};
use super::derived::{CallRow, CellRow, DayRow, Derived};
use super::figures::{
    CallSource, Classifier, Figures, IntervalGrid, LineFilter, Records, tally, tally_grid,
};
use super::open_calls::{OpenCalls, timed_out_by};
use super::state_chunks::CHUNK;
use super::time::{DAY, Millis, SECOND, days_from_civil, local_date};
use jiff::civil::Date;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

pub mod stored;
pub use stored::{CellsHead, DaySource};

/// The length of a cell's interval.
pub const INTERVAL: Millis = 15 * 60 * SECOND;

/// (interval number since the epoch, line).
type CellKey = (i64, LineId);

/// Intervals in a UTC day: the cells of one day share a chunk.
const PER_DAY: i64 = DAY / INTERVAL;

/// The cells of one UTC day.
type DayCells = BTreeMap<CellKey, Cell>;

fn day_of((interval, _): CellKey) -> i64 {
    interval.div_euclid(PER_DAY)
}

/// The days of cells a query reads ([`Cells::read`]).
struct DaysRead<'a> {
    days: Vec<Cow<'a, DayCells>>,
    keys: std::ops::Range<CellKey>,
}

impl DaysRead<'_> {
    /// The cells of the intervals read, in order.
    fn cells(&self) -> impl Iterator<Item = (&CellKey, &Cell)> {
        let keys = self.keys.clone();
        self.days
            .iter()
            .flat_map(move |day| day.range(keys.clone()))
    }
}

/// What a view of the cells reads of the calls: their states by number and their lines.
/// A [`CallBook`] is one; a published snapshot of its states is another.
pub trait CallStates {
    /// The state of call number `i` (the cells' members, the open calls).
    fn state(&self, i: u32) -> &CallState;
    /// How many calls there are (numbered from 0).
    fn count(&self) -> usize;
    /// The interned id of a line name, if seen.
    fn line_id(&self, name: &str) -> Option<LineId>;
    /// The line a call counts on.
    fn line_of(&self, state: &CallState) -> LineId;
    /// The record of one call at clock `now`.
    fn record(&self, state: &CallState, now: Millis) -> CallRecord<'_>;
    /// How many chunks of [`CHUNK`] calls the states are kept in (the last one partial).
    fn chunk_count(&self) -> usize {
        self.count().div_ceil(CHUNK)
    }
    /// The states of chunks `chunks` in order, for one pass over them (a scan): those not
    /// in memory are read for the pass and not kept (see `StateChunks::walk`).
    fn walk(&self, chunks: Range<usize>) -> Box<dyn Iterator<Item = CallState> + '_> {
        let calls = chunks.start * CHUNK..(chunks.end * CHUNK).min(self.count());
        Box::new(calls.map(|i| *self.state(i as u32)))
    }
}

impl CallStates for CallBook {
    fn state(&self, i: u32) -> &CallState {
        CallBook::state(self, i)
    }
    fn count(&self) -> usize {
        self.calls()
    }
    fn line_id(&self, name: &str) -> Option<LineId> {
        CallBook::line_id(self, name)
    }
    fn line_of(&self, state: &CallState) -> LineId {
        CallBook::line_of(self, state)
    }
    fn record(&self, state: &CallState, now: Millis) -> CallRecord<'_> {
        CallBook::record(self, state, now)
    }
    fn walk(&self, chunks: Range<usize>) -> Box<dyn Iterator<Item = CallState> + '_> {
        Box::new(self.states().walk(chunks))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cell {
    /// Figures of the members that are not open at the cells' clock.
    figures: Figures,
    /// How many of those reach `figures.max_wait_ms`.
    at_max: u32,
    /// Every call anchored in the interval on the line, open ones included.
    members: Vec<u32>,
}

impl Cell {
    fn add(&mut self, part: &Figures) {
        if let Some(w) = part.max_wait_ms {
            match self.figures.max_wait_ms {
                Some(m) if m > w => {}
                Some(m) if m == w => self.at_max += 1,
                _ => self.at_max = 1,
            }
        }
        self.figures.merge(part);
    }

    /// Takes a part back; true when the cell's maximum must be found again.
    fn retract(&mut self, part: &Figures) -> bool {
        self.figures.retract_sums(part);
        if part.max_wait_ms.is_some() && part.max_wait_ms == self.figures.max_wait_ms {
            self.at_max -= 1;
            if self.at_max == 0 {
                self.figures.max_wait_ms = None;
                return true;
            }
        }
        false
    }
}

/// The cells of a [`CallBook`] for one threshold and calendar (see the module doc).
#[derive(Clone)]
pub struct Cells {
    threshold_ms: Millis,
    calendar: ServiceCalendar,
    /// The cells, one shared chunk per UTC day (no empty chunk): the days in memory.
    days: BTreeMap<i64, Arc<DayCells>>,
    /// The days still where a checkpoint keeps them (`source`), none of them in `days`.
    stored: BTreeSet<i64>,
    source: Option<Arc<dyn DaySource>>,
    /// The days changed since [`Self::clear_dirty`] (still there or gone).
    dirty: BTreeSet<i64>,
    /// A stored day failed to load: the cells are wrong and must be built again.
    damaged: bool,
    /// Calls open at `clock` (by anchor, and by line).
    open: OpenCalls,
    /// The clock the cells are settled at: the book's newest `ts`.
    clock: Millis,
}

impl std::fmt::Debug for Cells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cells")
            .field("threshold_ms", &self.threshold_ms)
            .field("days", &self.days.len())
            .field("stored", &self.stored.len())
            .field("dirty", &self.dirty.len())
            .field("open", &self.open.len())
            .field("clock", &self.clock)
            .finish()
    }
}

/// Equal when they hold the same cells (wherever they are kept, changed or not).
impl PartialEq for Cells {
    fn eq(&self, o: &Self) -> bool {
        self.threshold_ms == o.threshold_ms
            && self.calendar == o.calendar
            && self.days == o.days
            && self.stored == o.stored
            && self.damaged == o.damaged
            && self.open == o.open
            && self.clock == o.clock
    }
}

impl Eq for Cells {}

/// Where a settling notes what it changed, when asked to: the rows, and the cells touched.
type Noting<'a> = Option<(&'a mut Derived, &'a mut Vec<CellKey>)>;

fn key_of(book: &CallBook, state: &CallState) -> CellKey {
    (state.anchor().div_euclid(INTERVAL), book.line_of(state))
}

impl Cells {
    /// The cells of every call of `book`.
    pub fn build(book: &CallBook, calendar: &ServiceCalendar, threshold_ms: Millis) -> Self {
        let clock = book.clock(Millis::MIN);
        let mut keyed: Vec<(CellKey, u32)> = book
            .states()
            .iter()
            .zip(0u32..)
            .map(|(s, i)| (key_of(book, s), i))
            .collect();
        keyed.sort_unstable();
        let mut place = Classifier::new(calendar);
        let mut open = Vec::new();
        let mut cells: Vec<(CellKey, Cell)> = Vec::new();
        for (key, i) in keyed {
            if cells.last().is_none_or(|(k, _)| *k != key) {
                cells.push((key, Cell::default()));
            }
            let Some((_, cell)) = cells.last_mut() else {
                continue;
            };
            cell.members.push(i);
            let rec = book.record(book.state(i), clock);
            if rec.outcome == Outcome::Open {
                open.push((rec.anchor, key.1, i));
            } else {
                cell.add(&place.contribution(&rec, threshold_ms));
            }
        }
        let mut days: BTreeMap<i64, Arc<DayCells>> = BTreeMap::new();
        for (key, cell) in cells {
            // Not shared yet: no copy.
            Arc::make_mut(days.entry(day_of(key)).or_default()).insert(key, cell);
        }
        Self {
            threshold_ms,
            calendar: calendar.clone(),
            // Nothing of them is kept yet.
            dirty: days.keys().copied().collect(),
            days,
            stored: BTreeSet::new(),
            source: None,
            damaged: false,
            // Comes sorted: built in bulk.
            open: OpenCalls::from_calls(open),
            clock,
        }
    }

    /// Brings the cells in step with `book` after the `changes` it reported (all of
    /// them since the cells were built or last settled).
    pub fn settle(&mut self, book: &CallBook, changes: Changes) {
        self.settle_into(book, changes, None);
    }

    /// [`Self::settle`], also noting in `derived` the cells it touched (their new state)
    /// and the call records it took back and counted in.
    pub fn settle_into(
        &mut self,
        book: &CallBook,
        changes: Changes,
        derived: Option<&mut Derived>,
    ) {
        // Lent out for the settling (the classifier borrows it).
        let calendar = std::mem::take(&mut self.calendar);
        let mut place = Classifier::new(&calendar);
        match derived {
            Some(out) => {
                let mut touched = Vec::new();
                self.settle_with(
                    book,
                    changes,
                    &mut place,
                    &mut Some((&mut *out, &mut touched)),
                );
                let mut days = Vec::with_capacity(touched.len());
                for key in touched {
                    let figures = self.cell(key).map(|c| c.figures).unwrap_or_default();
                    let (day, _) = place.place(key.0 * INTERVAL);
                    let line = book.line_name_of(key.1).to_owned();
                    let (interval, _) = key;
                    days.push((day, key.1));
                    out.cells.insert(
                        key,
                        CellRow {
                            interval,
                            day,
                            line,
                            figures,
                        },
                    );
                }
                days.sort_unstable();
                days.dedup();
                for &(day, _) in &days {
                    for d in day - 1..=day + 1 {
                        self.load_day(d);
                    }
                }
                for (day, line_id) in days {
                    let figures = self.local_day(day, line_id, &mut place);
                    let line = book.line_name_of(line_id).to_owned();
                    out.days
                        .insert((day, line_id), DayRow { day, line, figures });
                }
            }
            None => self.settle_with(book, changes, &mut place, &mut None),
        }
        self.calendar = calendar;
    }

    fn cell(&self, key: CellKey) -> Option<&Cell> {
        self.days.get(&day_of(key))?.get(&key)
    }

    /// Brings day `day` into memory if a checkpoint keeps it (a day that fails to load
    /// marks the cells damaged: see [`Self::is_damaged`]).
    fn load_day(&mut self, day: i64) {
        if !self.stored.remove(&day) {
            return;
        }
        match self.decode_kept(day) {
            Some(cells) if !cells.is_empty() => {
                self.days.insert(day, Arc::new(cells));
            }
            _ => self.damaged = true,
        }
    }

    /// Day `day` as the checkpoint keeps it, decoded; `None` when missing or damaged.
    fn decode_kept(&self, day: i64) -> Option<DayCells> {
        let source = self.source.as_ref()?;
        stored::decode_day(source.day(day)?, day, source.calls())
    }

    /// Brings every day a checkpoint keeps into memory, as queries need them (see
    /// [`Self::is_damaged`] for one that fails).
    pub fn load_all(&mut self) {
        while let Some(&day) = self.stored.first() {
            self.load_day(day);
        }
    }

    /// True when every day is in memory: what queries read (see [`Self::load_all`]).
    pub fn is_loaded(&self) -> bool {
        self.stored.is_empty()
    }

    /// True when a day kept by a checkpoint failed to load (its bytes passed their
    /// checksum but do not decode: a bug): the cells must be built again from the book.
    pub fn is_damaged(&self) -> bool {
        self.damaged
    }

    /// Day `day` changed: the next checkpoint writes it.
    fn touch(&mut self, day: i64) {
        self.dirty.insert(day);
    }

    /// The sum of `line`'s cells of Europe/Rome local day `day` (days since 1970), from
    /// the chunks of the UTC days it overlaps.
    fn local_day(&self, day: i64, line: LineId, place: &mut Classifier<'_>) -> Figures {
        let mut sum = Figures::default();
        for (_, chunk) in self.days.range(day - 1..=day + 1) {
            for (key, cell) in chunk.iter() {
                if key.1 == line && place.place(key.0 * INTERVAL).0 == day {
                    sum.merge(&cell.figures);
                }
            }
        }
        sum
    }

    fn settle_with(
        &mut self,
        book: &CallBook,
        changes: Changes,
        place: &mut Classifier<'_>,
        out: &mut Noting<'_>,
    ) {
        let mut lost_max = Vec::new();
        // 1. Take back the old part of each changed call, at the clock it was added at.
        for (i, before) in &changes.before {
            self.remove(book, *i, before, place, &mut lost_max, out);
        }
        // 2. Move the clock: calls open at the old one may be unresolved now.
        let clock = book.clock(Millis::MIN);
        if clock > self.clock {
            self.clock = clock;
            let line_of = |i: u32| book.line_of(book.state(i));
            while let Some((_, i)) = self.open.pop_anchored_by(timed_out_by(clock), line_of) {
                let state = book.state(i);
                let rec = book.record(state, clock);
                let part = place.contribution(&rec, self.threshold_ms);
                let key = key_of(book, state);
                if let Some(cell) = self.cell_mut(key) {
                    cell.add(&part);
                }
                if let Some((derived, touched)) = out {
                    let at = place.place(rec.anchor);
                    let was = CallRecord {
                        outcome: Outcome::Open,
                        ..rec
                    };
                    derived.calls.push(CallRow::new(-1, i, &was, at));
                    derived.calls.push(CallRow::new(1, i, &rec, at));
                    touched.push(key);
                }
            }
        }
        // 3. Add the new part of each changed or new call.
        let created = changes.created_from as u32..book.states().len() as u32;
        for i in changes.before.iter().map(|(i, _)| *i).chain(created) {
            self.insert(book, i, place, out);
        }
        // 4. Maximums whose last holder left: found again from the members, now that
        // every member's part is the current one.
        for key in lost_max {
            let (threshold_ms, clock) = (self.threshold_ms, self.clock);
            if let Some(cell) = self.cell_mut(key) {
                cell.figures.max_wait_ms = None;
                cell.at_max = 0;
                for at in 0..cell.members.len() {
                    let state = book.state(cell.members[at]);
                    let rec = book.record(state, clock);
                    let one = Figures {
                        max_wait_ms: place.contribution(&rec, threshold_ms).max_wait_ms,
                        ..Figures::default()
                    };
                    cell.add(&one);
                }
            }
        }
    }

    fn remove(
        &mut self,
        book: &CallBook,
        i: u32,
        before: &CallState,
        place: &mut Classifier<'_>,
        lost_max: &mut Vec<CellKey>,
        out: &mut Noting<'_>,
    ) {
        let key = key_of(book, before);
        if let Some((derived, touched)) = out {
            let rec = book.record(before, self.clock);
            derived
                .calls
                .push(CallRow::new(-1, i, &rec, place.place(rec.anchor)));
            touched.push(key);
        }
        self.load_day(day_of(key));
        self.touch(day_of(key));
        let Some(day) = self.days.get_mut(&day_of(key)) else {
            return;
        };
        let day = Arc::make_mut(day);
        let Some(cell) = day.get_mut(&key) else {
            return;
        };
        if let Some(at) = cell.members.iter().position(|&m| m == i) {
            cell.members.swap_remove(at);
        }
        let rec = book.record(before, self.clock);
        if rec.outcome == Outcome::Open {
            self.open.remove(rec.anchor, key.1, i);
        } else if cell.retract(&place.contribution(&rec, self.threshold_ms)) {
            lost_max.push(key);
        }
        if cell.members.is_empty() {
            day.remove(&key);
            if day.is_empty() {
                self.days.remove(&day_of(key));
            }
        }
    }

    /// The cell of `key`, copied out of a snapshot's chunk first if one shares it.
    fn cell_mut(&mut self, key: CellKey) -> Option<&mut Cell> {
        self.load_day(day_of(key));
        self.touch(day_of(key));
        let day = self.days.get_mut(&day_of(key))?;
        Arc::make_mut(day).get_mut(&key)
    }

    /// The days of cells over the intervals in `intervals`, in order: those in memory
    /// as they are, those a checkpoint keeps decoded for this read only (a store whose
    /// settled days left memory answers from them without loading them back). `None`
    /// when one of those does not decode (see [`Self::is_damaged`]).
    fn read(&self, intervals: std::ops::Range<i64>) -> Option<DaysRead<'_>> {
        // An empty range reads no chunk (and `range` refuses a reversed one).
        let end = intervals.end.max(intervals.start);
        let days = intervals.start.div_euclid(PER_DAY)..(end + PER_DAY - 1).div_euclid(PER_DAY);
        let mut read: Vec<(i64, Cow<'_, DayCells>)> = self
            .days
            .range(days.clone())
            .map(|(&day, cells)| (day, Cow::Borrowed(&**cells)))
            .collect();
        let mut kept = self.stored.range(days).peekable();
        if kept.peek().is_some() {
            for &day in kept {
                read.push((day, Cow::Owned(self.decode_kept(day)?)));
            }
            read.sort_unstable_by_key(|&(day, _)| day);
        }
        Some(DaysRead {
            days: read.into_iter().map(|(_, cells)| cells).collect(),
            keys: (intervals.start, 0)..(end, 0),
        })
    }

    fn insert(
        &mut self,
        book: &CallBook,
        i: u32,
        place: &mut Classifier<'_>,
        out: &mut Noting<'_>,
    ) {
        let state = book.state(i);
        let key = key_of(book, state);
        if let Some((derived, touched)) = out {
            let rec = book.record(state, self.clock);
            derived
                .calls
                .push(CallRow::new(1, i, &rec, place.place(rec.anchor)));
            touched.push(key);
        }
        self.load_day(day_of(key));
        self.touch(day_of(key));
        let day = Arc::make_mut(self.days.entry(day_of(key)).or_default());
        let cell = day.entry(key).or_default();
        cell.members.push(i);
        let rec = book.record(state, self.clock);
        if rec.outcome == Outcome::Open {
            self.open.insert(rec.anchor, key.1, i);
        } else {
            cell.add(&place.contribution(&rec, self.threshold_ms));
        }
    }

    /// The calls open at [`Self::clock`].
    pub fn open_calls(&self) -> &OpenCalls {
        &self.open
    }

    /// The clock the cells are settled at: the book's newest `ts`.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    /// How many cells are in memory (for logs and benchmarks).
    pub fn len(&self) -> usize {
        self.days.values().map(|d| d.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty() && self.stored.is_empty()
    }
}

/// Intervals that hold every call anchored on local dates in `[from, to)` (and some
/// more around them: a day either side, whatever the UTC offset; callers filter by date).
fn intervals_around(from: Date, to: Date) -> std::ops::Range<i64> {
    let day = |d: Date| days_from_civil(i64::from(d.year()), d.month() as u32, d.day() as u32);
    ((day(from) - 1) * DAY).div_euclid(INTERVAL)..((day(to) + 1) * DAY).div_euclid(INTERVAL)
}

/// Remembers the bucket of the last local day seen (cells and calls come in time order).
struct Buckets<'b> {
    period: (Date, Date),
    bucket: &'b dyn Fn(Date) -> Option<usize>,
    today: Option<(i64, Option<usize>)>,
}

impl Buckets<'_> {
    fn of(&mut self, day: i64) -> Option<usize> {
        match self.today {
            Some((d, slot)) if d == day => slot,
            _ => {
                let date = local_date(day);
                let (from, to) = self.period;
                let slot = (from <= date && date < to)
                    .then(|| (self.bucket)(date))
                    .flatten();
                self.today = Some((day, slot));
                slot
            }
        }
    }
}

/// Every record of a book (or of a snapshot of its states) at clock `now`: the full
/// recount.
pub struct Scan<'a, B: ?Sized = CallBook> {
    pub book: &'a B,
    pub now: Millis,
}

impl<B: CallStates + ?Sized> Records for Scan<'_, B> {
    fn records(&self) -> impl Iterator<Item = CallRecord<'_>> {
        walk_records(self.book, self.now, 0..self.book.chunk_count())
    }
}

/// The records at clock `now` of the calls of chunks `chunks` of `book`, in order.
fn walk_records<B: CallStates + ?Sized>(
    book: &B,
    now: Millis,
    chunks: Range<usize>,
) -> impl Iterator<Item = CallRecord<'_>> {
    book.walk(chunks).map(move |state| book.record(&state, now))
}

/// The part of a [`Scan`] that reads the calls of chunks `chunks` only: threads may
/// count a scan share by share, their figures merged ([`Figures::merge`]).
pub struct ScanShare<'a, B: ?Sized = CallBook> {
    pub book: &'a B,
    pub now: Millis,
    pub chunks: Range<usize>,
}

impl<B: CallStates + ?Sized> Records for ScanShare<'_, B> {
    fn records(&self) -> impl Iterator<Item = CallRecord<'_>> {
        walk_records(self.book, self.now, self.chunks.clone())
    }
}

/// A book's cells at clock `now` (at least the book's own clock): the configured
/// threshold reads the cells of the period, another one recounts the calls anchored in
/// the period (the cells' members).
pub struct CellsView<'a, B: ?Sized = CallBook> {
    pub cells: &'a Cells,
    pub book: &'a B,
    pub now: Millis,
}

impl<B: CallStates + ?Sized> CallSource for CellsView<'_, B> {
    fn tally(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        period: (Date, Date),
        bucket: &(dyn Fn(Date) -> Option<usize> + Sync),
        out: &mut [Figures],
    ) {
        let Some(wanted) = self.wanted(line) else {
            return; // a line the book has not seen has no calls
        };
        let admits = |l: LineId| wanted.is_none_or(|w| w == l);
        let intervals = intervals_around(period.0, period.1);
        let Some(read) = self.cells.read(intervals.clone()) else {
            // A kept day that does not decode: every call counted instead.
            let scan = Scan {
                book: self.book,
                now: self.now,
            };
            return scan.tally(line, calendar, threshold_ms, period, bucket, out);
        };
        let range = read.cells();
        let in_period = |d: Date| (period.0 <= d && d < period.1).then(|| bucket(d)).flatten();
        if threshold_ms != self.cells.threshold_ms || *calendar != self.cells.calendar {
            let records = range
                .filter(|((_, l), _)| admits(*l))
                .flat_map(|(_, cell)| &cell.members)
                .map(|&i| self.book.record(self.book.state(i), self.now));
            tally(records, line, calendar, threshold_ms, in_period, out);
            return;
        }
        let mut place = Classifier::new(calendar);
        let mut buckets = Buckets {
            period,
            bucket,
            today: None,
        };
        for ((interval, _), cell) in range.filter(|((_, l), _)| admits(*l)) {
            let (day, _) = place.place(interval * INTERVAL);
            if let Some(f) = buckets.of(day).and_then(|i| out.get_mut(i)) {
                f.merge(&cell.figures);
            }
        }
        // Calls open at the cells' clock that are unresolved by `now`.
        let first = intervals.start * INTERVAL;
        let last = (intervals.end * INTERVAL).min(self.now.saturating_sub(UNRESOLVED_AFTER) + 1);
        if first >= last {
            return;
        }
        for (anchor, i) in self.cells.open.anchored_in(first, last) {
            let state = self.book.state(i);
            if !admits(self.book.line_of(state)) {
                continue;
            }
            let (day, _) = place.place(anchor);
            if let Some(f) = buckets.of(day).and_then(|i| out.get_mut(i)) {
                let rec = self.book.record(state, self.now);
                f.merge(&place.contribution(&rec, threshold_ms));
            }
        }
    }

    fn tally_intervals(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        grid: IntervalGrid,
        out: &mut [Figures],
    ) {
        self.fold_grid(line, calendar, threshold_ms, grid, out);
    }
}

impl<B: CallStates + ?Sized> CellsView<'_, B> {
    /// The line id a filter admits (`Some(None)`: every line), `None` for a line the
    /// book has not seen (it has no calls).
    fn wanted(&self, line: &LineFilter) -> Option<Option<LineId>> {
        match &line.0 {
            None => Some(None),
            Some(name) => self.book.line_id(name).map(Some),
        }
    }

    /// The interval grid's counterpart of [`CallSource::tally`]: cells are whole
    /// intervals, so each goes into one bucket as it is.
    fn fold_grid(
        &self,
        line: &LineFilter,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        grid: IntervalGrid,
        out: &mut [Figures],
    ) {
        let Some(wanted) = self.wanted(line) else {
            return;
        };
        let admits = |l: LineId| wanted.is_none_or(|w| w == l);
        let intervals = grid.intervals();
        let Some(read) = self.cells.read(intervals.clone()) else {
            // A kept day that does not decode: every call counted instead.
            let scan = Scan {
                book: self.book,
                now: self.now,
            };
            return scan.tally_intervals(line, calendar, threshold_ms, grid, out);
        };
        let range = read.cells();
        if threshold_ms != self.cells.threshold_ms || *calendar != self.cells.calendar {
            let records = range
                .filter(|((_, l), _)| admits(*l))
                .flat_map(|(_, cell)| &cell.members)
                .map(|&i| self.book.record(self.book.state(i), self.now));
            tally_grid(records, line, calendar, threshold_ms, grid, out);
            return;
        }
        for ((interval, _), cell) in range.filter(|((_, l), _)| admits(*l)) {
            if let Some(f) = grid.bucket(*interval).and_then(|k| out.get_mut(k)) {
                f.merge(&cell.figures);
            }
        }
        // Calls open at the cells' clock that are unresolved by `now`.
        let first = intervals.start * INTERVAL;
        let last = (intervals.end * INTERVAL).min(self.now.saturating_sub(UNRESOLVED_AFTER) + 1);
        if first >= last {
            return;
        }
        let mut place = Classifier::new(calendar);
        for (anchor, i) in self.cells.open.anchored_in(first, last) {
            let state = self.book.state(i);
            if !admits(self.book.line_of(state)) {
                continue;
            }
            if let Some(f) = grid
                .bucket(anchor.div_euclid(INTERVAL))
                .and_then(|k| out.get_mut(k))
            {
                let rec = self.book.record(state, self.now);
                f.merge(&place.contribution(&rec, threshold_ms));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Differential: cells, kept in step event by event, equal a full recount (every
    //! record tallied) and cells rebuilt from scratch, over many random streams.
    use super::*;
    use crate::calendar::Hours;
    use crate::callbook::Fold;
    use crate::config::MetricsConfig;
    use crate::event::EventType::{self, *};
    use crate::random_edits::Rng;
    use crate::reports;
    use crate::time::{HOUR, parse_rfc3339};

    const LINES: [&str; 3] = ["cup", "prelievi", "zeta"];
    /// DST starts on 2019-03-31 and ends on 2019-10-27 (local); plus a plain Monday.
    const DAYS: [&str; 3] = ["2019-03-30", "2019-10-26", "2019-06-03"];
    /// Waits around the band edges (1 s, the default T = 140 s, the other T = 95.5 s).
    const WAITS_MS: [Millis; 9] = [
        0, 999, 1_000, 95_499, 95_500, 139_999, 140_000, 140_001, 400_000,
    ];

    /// One random event: (kind, ts, call number, line of an `offered`).
    type Ev = (EventType, Millis, u32, Option<&'static str>);

    fn random_call(rng: &mut Rng, call: u32, base: Millis, out: &mut Vec<Ev>) {
        // Anchors over three days from `base` (UTC midnight), at a few hours in and out
        // of service (the DST switch at 01:00 UTC among them), so that cells hold
        // several calls.
        let hour = *rng.pick(&[0, 1, 2, 6, 7, 9, 16, 17, 22, 23]);
        let anchor = base
            + rng.below(3) as Millis * DAY
            + hour * HOUR
            + rng.below(2) as Millis * INTERVAL
            + rng.below(60) as Millis * SECOND;
        let wait = *rng.pick(&WAITS_MS) + rng.below(2) as Millis;
        let line = Some(*rng.pick(&LINES)).filter(|_| rng.below(5) > 0);
        if rng.below(8) > 0 {
            out.push((Offered, anchor, call, line));
        }
        if rng.below(6) == 0 {
            // A second offered: the same instant (line tie) or later / earlier.
            let shift = [0, 3 * SECOND, -7 * HOUR, 9 * HOUR][rng.below(4)];
            out.push((Offered, anchor + shift, call, Some(*rng.pick(&LINES))));
        }
        let start = anchor + 40 * SECOND;
        match rng.below(3) {
            0 => out.push((AnnouncementEnd, start, call, None)),
            1 => out.push((Queued, start, call, None)),
            _ => {}
        }
        let end = start + wait;
        match rng.below(6) {
            0..=2 => {
                out.push((Answered, end, call, None));
                if rng.below(4) > 0 {
                    out.push((Ended, end + rng.below(300_000) as Millis, call, None));
                }
            }
            3 => out.push((Abandoned, end, call, None)),
            4 => out.push((Overflow, end, call, None)),
            _ => {} // open: unresolved 6 h after its anchor
        }
        if rng.below(3) == 0 {
            // A late outcome of the other kind (or at the same instant: a tie).
            let kind = *rng.pick(&[Abandoned, Overflow, Answered]);
            out.push((kind, end - rng.below(2) as Millis * 5 * SECOND, call, None));
        }
        for _ in 0..rng.below(3) {
            out.push((Booking, end + SECOND, call, None));
        }
    }

    struct Stream {
        book: CallBook,
        keys: Vec<u128>,
        /// Whether some events are sent twice (with the key of an earlier one).
        resend: bool,
    }

    impl Stream {
        fn apply(&mut self, rng: &mut Rng, ev: Ev) {
            let (kind, ts, call, line) = ev;
            // A resent event (same key) is a duplicate: it changes nothing.
            let key = if self.resend && !self.keys.is_empty() && rng.below(10) == 0 {
                *rng.pick(&self.keys)
            } else {
                let k = self.keys.len() as u128 + 1;
                self.keys.push(k);
                k
            };
            let fold = Fold {
                kind,
                ts,
                call: (!kind.is_agent_event()).then_some(u128::from(call) + 1),
                line: line.map(str::as_bytes),
                agent: None,
            };
            self.book.apply_fold(fold, key);
        }
    }

    /// Days kept as a checkpoint keeps them (see [`stored`]).
    #[derive(Default, Clone)]
    struct Kept {
        days: std::collections::HashMap<i64, Vec<u8>>,
        calls: usize,
    }

    impl DaySource for Kept {
        fn day(&self, day: i64) -> Option<&[u8]> {
            self.days.get(&day).map(Vec::as_slice)
        }
        fn calls(&self) -> usize {
            self.calls
        }
    }

    /// A checkpoint of `cells` (the days changed since the last one, into `kept`), and
    /// the cells opened from it, every day left in `kept`.
    fn reopened(cells: &mut Cells, kept: &mut Kept, book: &CallBook, cfg: &MetricsConfig) -> Cells {
        for day in cells.dirty_days() {
            let mut bytes = Vec::new();
            assert!(cells.encode_day(day, &mut bytes));
            kept.days.insert(day, bytes);
        }
        cells.clear_dirty();
        kept.calls = book.calls();
        let head = cells.head();
        for day in &head.days {
            assert!(kept.days.contains_key(day), "day {day} never written");
        }
        let other = Cells::stored(
            head.clone(),
            &cfg.calendar,
            cfg.threshold_ms + 1,
            Arc::new(kept.clone()),
        );
        assert!(other.is_none(), "kept for another threshold");
        let back = Cells::stored(
            head,
            &cfg.calendar,
            cfg.threshold_ms,
            Arc::new(kept.clone()),
        )
        .expect("same configuration");
        assert!(back.dirty_days().is_empty());
        let mut whole = back.clone();
        whole.load_all();
        assert!(!whole.is_damaged());
        let mut now = cells.clone();
        now.load_all();
        assert_eq!(normalized(whole), normalized(now));
        back
    }

    /// A checkpoint of `cells` into `kept`, then some of their days (as `rng` picks)
    /// out of memory (see [`Cells::release_days`]).
    fn released(cells: &mut Cells, kept: &mut Kept, book: &CallBook, rng: &mut Rng) {
        for day in cells.dirty_days() {
            let mut bytes = Vec::new();
            assert!(cells.encode_day(day, &mut bytes));
            kept.days.insert(day, bytes);
        }
        kept.calls = book.calls();
        let days: Vec<i64> = cells.days.keys().copied().collect();
        let leaving: Vec<i64> = days.into_iter().filter(|_| rng.below(2) == 0).collect();
        if !cells.dirty.is_empty() {
            assert_eq!(
                cells.release_days(Arc::new(kept.clone()), |_| true),
                0,
                "dirty days never leave"
            );
        }
        cells.clear_dirty();
        let left = cells.release_days(Arc::new(kept.clone()), |d| leaving.contains(&d));
        assert_eq!(left, leaving.len());
    }

    fn normalized(mut c: Cells) -> Cells {
        for day in c.days.values_mut() {
            for cell in Arc::make_mut(day).values_mut() {
                cell.members.sort_unstable();
            }
        }
        c
    }

    fn date(s: &str) -> Date {
        crate::time::parse_date(s).expect("date")
    }

    fn compare_queries(rng: &mut Rng, cells: &Cells, book: &CallBook, cfg: &MetricsConfig) {
        for _ in 0..6 {
            // Queries at the book's clock, or later by the wall clock (timeouts).
            let wall = [0, book.clock(0) + rng.below(14) as Millis * HOUR][rng.below(2)];
            let now = book.clock(wall);
            let (scan, view) = (Scan { book, now }, CellsView { cells, book, now });
            let line = [
                None,
                Some("cup"),
                Some("prelievi"),
                Some("zeta"),
                Some("nope"),
            ][rng.below(5)]
            .map(String::from);
            let threshold = [cfg.threshold_ms, 95_500][rng.below(2)];
            let from = date(DAYS[rng.below(DAYS.len())])
                .checked_add(jiff::Span::new().days(rng.below(6) as i64 - 1))
                .expect("date");
            let to = from
                .checked_add(jiff::Span::new().days(rng.below(4) as i64))
                .expect("date");
            let t = |s: &dyn CallSource| reports::table1(s, cfg, from, to, line.clone(), threshold);
            assert_eq!(
                t(&view),
                t(&scan),
                "table1 {from}..{to} {line:?} T={threshold} now={now}"
            );
            let q = reports::SlaQuery {
                year: 2019,
                line: line.clone(),
                threshold_ms: threshold,
                target: 0.6,
            };
            assert_eq!(
                reports::sla_year(&view, cfg, q.clone()),
                reports::sla_year(&scan, cfg, q)
            );
            if rng.below(3) == 0 {
                intervals_sum_to_the_reports(
                    &view,
                    &scan,
                    cfg,
                    (from, to),
                    line.clone(),
                    threshold,
                );
            }
            for second in [false, true] {
                let half = reports::Half { year: 2019, second };
                assert_eq!(
                    reports::volume_check(&view, cfg, half),
                    reports::volume_check(&scan, cfg, half)
                );
            }
        }
    }

    /// The interval report of the cells is the scan's, and its rows summed over the
    /// period are the period's Table 1; over a month (every bucket length), the month's
    /// SLA figures under each policy.
    fn intervals_sum_to_the_reports(
        view: &dyn CallSource,
        scan: &dyn CallSource,
        cfg: &MetricsConfig,
        (from, to): (Date, Date),
        line: Option<String>,
        threshold: Millis,
    ) {
        use reports::Every;
        for every in [Every::Min15, Every::Min30, Every::Min60] {
            let report = |s: &dyn CallSource| {
                reports::intervals(s, cfg, (from, to), line.clone(), threshold, every)
            };
            let r = report(view);
            assert_eq!(r, report(scan), "intervals {from}..{to} {line:?} {every:?}");
            let mut sum = Figures::default();
            for row in &r.rows {
                sum.merge(&row.figures);
            }
            let t = reports::table1(view, cfg, from, to, line.clone(), threshold);
            assert_eq!(
                sum, t.figures,
                "intervals summed {from}..{to} {line:?} {every:?}"
            );
            let days = i64::from((to - from).get_days());
            let quarters = r.rows.len() as i64 * every.minutes() as i64 / 15;
            assert!(
                (days * 96 - 4..=days * 96 + 4).contains(&quarters),
                "{days} days: {quarters} quarter hours"
            );
        }
        // A whole month: the SLA year's month is the sum of the month's intervals.
        let month = from.first_of_month();
        let next = month.last_of_month().tomorrow().expect("date");
        let r = reports::intervals(
            view,
            cfg,
            (month, next),
            line.clone(),
            threshold,
            Every::Min30,
        );
        let mut sum = Figures::default();
        for row in &r.rows {
            sum.merge(&row.figures);
        }
        let q = reports::SlaQuery {
            year: month.year(),
            line,
            threshold_ms: threshold,
            target: 0.6,
        };
        let y = reports::sla_year(view, cfg, q);
        let m = &y.months[(month.month() - 1) as usize];
        assert_eq!(m.figures, sum);
        assert_eq!(m.policies, reports::sla_shares(&sum));
    }

    #[test]
    fn dst_days_have_92_and_100_quarter_hours() {
        let cfg = MetricsConfig::default();
        let book = CallBook::new([7; 16]);
        let scan = Scan {
            book: &book,
            now: 0,
        };
        for (day, quarters, first, last) in [
            (
                "2019-03-31",
                92,
                "2019-03-31T00:00:00+01:00",
                "2019-03-31T23:45:00+02:00",
            ),
            (
                "2019-10-27",
                100,
                "2019-10-27T00:00:00+02:00",
                "2019-10-27T23:45:00+01:00",
            ),
            (
                "2019-06-03",
                96,
                "2019-06-03T00:00:00+02:00",
                "2019-06-03T23:45:00+02:00",
            ),
        ] {
            let d = date(day);
            let r = reports::intervals(
                &scan,
                &cfg,
                (d, d.tomorrow().expect("date")),
                None,
                cfg.threshold_ms,
                reports::Every::Min15,
            );
            assert_eq!(r.rows.len(), quarters, "{day}");
            let label = |ms| crate::time::rome_rfc3339(ms);
            assert_eq!(label(r.rows[0].start), first);
            assert_eq!(label(r.rows[quarters - 1].start), last);
        }
        // The hour that is repeated on 27 October has two rows of its own.
        let d = date("2019-10-27");
        let r = reports::intervals(
            &scan,
            &cfg,
            (d, d.tomorrow().expect("date")),
            None,
            cfg.threshold_ms,
            reports::Every::Min60,
        );
        let labels: Vec<String> = r.rows[2..4]
            .iter()
            .map(|row| crate::time::rome_rfc3339(row.start))
            .collect();
        assert_eq!(
            labels,
            ["2019-10-27T02:00:00+02:00", "2019-10-27T02:00:00+01:00"]
        );
    }

    fn run(seed: u64, cfg: &MetricsConfig) {
        let mut rng = Rng::new(seed);
        let mut events = Vec::new();
        let calls = 5 + rng.below(60) as u32;
        let base = parse_rfc3339(&format!("{}T00:00:00Z", rng.pick(&DAYS))).expect("ts");
        for call in 0..calls {
            random_call(&mut rng, call, base, &mut events);
        }
        // Reordered: any order (late events), roughly in time with a few far off.
        for i in (1..events.len()).rev() {
            let j = if rng.below(3) == 0 {
                rng.below(i + 1)
            } else {
                i
            };
            events.swap(i, j);
        }
        let mut s = Stream {
            book: CallBook::new([7; 16]),
            keys: Vec::new(),
            resend: true,
        };
        // Cells built at some point of the stream (maybe before any event), then kept,
        // and now and then checkpointed and opened again from the checkpoint.
        let build_at = rng.below(events.len() + 1);
        let mut cells = None;
        let mut kept = Kept::default();
        for (n, ev) in events.into_iter().enumerate() {
            if n == build_at {
                cells = Some(Cells::build(&s.book, &cfg.calendar, cfg.threshold_ms));
                s.book.track_changes();
            }
            s.apply(&mut rng, ev);
            if rng.below(12) == 0 {
                // An agent event hours later: moves the clock only (open calls time out).
                let ts = s.book.clock(0) + rng.below(8) as Millis * HOUR;
                s.apply(&mut rng, (AgentLogin, ts, 0, None));
            }
            if let Some(c) = &mut cells
                && rng.below(4) == 0
            {
                // Settled after a few events (one commit), not after each.
                let changes = s.book.take_changes().expect("tracked");
                c.settle(&s.book, changes);
                if rng.below(3) == 0 {
                    if rng.below(2) == 0 {
                        *c = reopened(c, &mut kept, &s.book, cfg);
                    } else {
                        released(c, &mut kept, &s.book, &mut rng);
                    }
                    // Settled while some days are still kept: they load as touched.
                    continue;
                }
                // Queries read the kept days in place, or once they are loaded.
                if rng.below(2) == 0 {
                    c.load_all();
                }
                compare_queries(&mut rng, c, &s.book, cfg);
            }
        }
        let mut cells =
            cells.unwrap_or_else(|| Cells::build(&s.book, &cfg.calendar, cfg.threshold_ms));
        if let Some(changes) = s.book.take_changes() {
            cells.settle(&s.book, changes);
        }
        cells.load_all();
        assert!(!cells.is_damaged());
        compare_queries(&mut rng, &cells, &s.book, cfg);
        let rebuilt = Cells::build(&s.book, &cfg.calendar, cfg.threshold_ms);
        assert_eq!(normalized(cells), normalized(rebuilt), "seed {seed}");
    }

    /// The rows handed to a store that derives ([`Cells::settle_into`]), applied as a
    /// store applies them (a cell's latest state wins; call rows sum by sign), equal the
    /// cells and the records of every call.
    #[test]
    fn derived_rows_rebuild_the_cells_and_the_records() {
        let cfg = MetricsConfig::default();
        for seed in 1..=150 {
            let mut rng = Rng::new(seed);
            let mut events = Vec::new();
            let base = parse_rfc3339(&format!("{}T00:00:00Z", rng.pick(&DAYS))).expect("ts");
            for call in 0..(5 + rng.below(40) as u32) {
                random_call(&mut rng, call, base, &mut events);
            }
            for i in (1..events.len()).rev() {
                let j = rng.below(i + 1);
                events.swap(i, j);
            }
            let mut s = Stream {
                book: CallBook::new([7; 16]),
                keys: Vec::new(),
                resend: true,
            };
            let mut cells = Cells::build(&s.book, &cfg.calendar, cfg.threshold_ms);
            s.book.track_changes();
            let mut latest: BTreeMap<CellKey, Figures> = BTreeMap::new();
            let mut latest_days: BTreeMap<(i64, LineId), Figures> = BTreeMap::new();
            let mut calls: BTreeMap<String, i64> = BTreeMap::new();
            let mut settle = |cells: &mut Cells, s: &mut Stream| {
                let mut d = Derived::default();
                let changes = s.book.take_changes().expect("tracked");
                cells.settle_into(&s.book, changes, Some(&mut d));
                for (k, row) in d.cells {
                    latest.insert(k, row.figures);
                }
                for (k, row) in d.days {
                    latest_days.insert(k, row.figures);
                }
                for row in d.calls {
                    let key = format!(
                        "{:?}",
                        CallRow {
                            sign: 1,
                            ..row.clone()
                        }
                    );
                    *calls.entry(key).or_default() += i64::from(row.sign);
                }
            };
            for ev in events {
                s.apply(&mut rng, ev);
                if rng.below(4) == 0 {
                    settle(&mut cells, &mut s);
                }
            }
            settle(&mut cells, &mut s);
            for (key, f) in &latest {
                let want = cells.cell(*key).map(|c| c.figures).unwrap_or_default();
                assert_eq!(*f, want, "seed {seed} cell {key:?}");
            }
            assert_eq!(
                latest.len(),
                cells.len() + latest.keys().filter(|k| cells.cell(**k).is_none()).count()
            );
            // Each day noted is the sum of its cells as they stand (the last state noted
            // of each), and every day of a cell noted is noted.
            let mut place = Classifier::new(&cfg.calendar);
            let mut sums: BTreeMap<(i64, LineId), Figures> = BTreeMap::new();
            for (key, f) in &latest {
                let day = place.place(key.0 * INTERVAL).0;
                sums.entry((day, key.1)).or_default().merge(f);
            }
            assert_eq!(latest_days, sums, "seed {seed}: days");
            let live: Vec<&String> = calls
                .iter()
                .filter(|(_, n)| **n != 0)
                .map(|(k, _)| k)
                .collect();
            assert!(
                calls.values().all(|n| *n == 0 || *n == 1),
                "seed {seed}: {calls:?}"
            );
            let mut place = Classifier::new(&cfg.calendar);
            let mut want: Vec<String> = (0..s.book.calls() as u32)
                .map(|i| {
                    let rec = s.book.record(s.book.state(i), cells.clock());
                    format!("{:?}", CallRow::new(1, i, &rec, place.place(rec.anchor)))
                })
                .collect();
            want.sort();
            assert_eq!(live, want.iter().collect::<Vec<_>>(), "seed {seed}");
        }
    }

    #[test]
    fn cells_equal_a_full_recount_over_random_streams() {
        let cfg = MetricsConfig::default();
        for seed in 1..=400 {
            run(seed, &cfg);
        }
    }

    #[test]
    fn cells_equal_a_full_recount_with_hours_off_the_quarter_hours() {
        let mut cfg = MetricsConfig::default();
        let odd = Hours::parse("02:07-17:53").expect("hours");
        cfg.calendar.week = [Some(odd); 7];
        cfg.calendar.extra_closures.insert(date("2019-10-27"));
        cfg.threshold_ms = 95_500;
        for seed in 1000..1200 {
            run(seed, &cfg);
        }
    }

    #[test]
    fn a_lost_maximum_is_found_again_from_the_members() {
        let cfg = MetricsConfig::default();
        let at = parse_rfc3339("2019-06-03T10:00:00+02:00").expect("ts");
        let mut s = Stream {
            book: CallBook::new([7; 16]),
            keys: Vec::new(),
            resend: false,
        };
        let mut rng = Rng::new(1);
        let mut cells = Cells::build(&s.book, &cfg.calendar, cfg.threshold_ms);
        s.book.track_changes();
        for (call, wait) in [(0, 50_000), (1, 90_000), (2, 90_000)] {
            s.apply(&mut rng, (Offered, at, call, None));
            s.apply(&mut rng, (Answered, at + wait, call, None));
        }
        let settle = |cells: &mut Cells, s: &mut Stream| {
            let changes = s.book.take_changes().expect("tracked");
            cells.settle(&s.book, changes);
        };
        settle(&mut cells, &mut s);
        let max = |cells: &Cells, s: &Stream| {
            let view = CellsView {
                cells,
                book: &s.book,
                now: s.book.clock(0),
            };
            let (from, to) = (date("2019-06-03"), date("2019-06-04"));
            reports::table1(&view, &cfg, from, to, None, cfg.threshold_ms)
                .figures
                .max_wait_ms
        };
        assert_eq!(max(&cells, &s), Some(90_000));
        // Earlier answers of the two longest waits: one holder left, then none.
        for (call, wait, expected) in [(1, 10_000, 90_000), (2, 20_000, 50_000)] {
            s.apply(&mut rng, (Answered, at + wait, call, None));
            settle(&mut cells, &mut s);
            assert_eq!(max(&cells, &s), Some(expected));
        }
    }
}
