//! The cells as a checkpoint keeps them: a head ([`CellsHead`]: for which threshold and
//! calendar, at which clock, the open calls, which days there are) and each day's cells
//! apart ([`Cells::encode_day`]), so that a checkpoint writes only the days changed since
//! the last one and opening reads a day only when it is needed. The bytes are the
//! store's to keep and checksum; this module only says what they hold.
//!
//! A day: the number of cells, then each cell in key order as its interval within the
//! day, its line, how many members reach its maximum, its figures and its members
//! (sorted, as deltas), all as LEB128 varints (signed values zigzagged).

use super::{Cell, Cells, DayCells, INTERVAL, PER_DAY};
use crate::calendar::ServiceCalendar;
use crate::call::LineId;
use crate::figures::Figures;
use crate::open_calls::OpenCalls;
use crate::time::Millis;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Where the days of cells opened from a checkpoint are kept.
pub trait DaySource: Send + Sync {
    /// The bytes of day `day` as [`Cells::encode_day`] wrote them, once the store found
    /// them intact; `None` when missing or damaged.
    fn day(&self, day: i64) -> Option<&[u8]>;
    /// How many calls the book has (members are call numbers below it).
    fn calls(&self) -> usize;
}

/// What a checkpoint keeps of the cells besides their days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellsHead {
    pub threshold_ms: Millis,
    /// The calendar, as [`calendar_tag`] writes it.
    pub calendar: String,
    pub clock: Millis,
    /// The calls open at `clock`: (anchor, line, call).
    pub open: Vec<(Millis, LineId, u32)>,
    /// The days that hold cells, in order.
    pub days: Vec<i64>,
}

/// The calendar written out, so that cells kept for one calendar are not read for another.
pub fn calendar_tag(c: &ServiceCalendar) -> String {
    let closures: BTreeSet<_> = c.extra_closures.iter().collect();
    format!(
        "{:?}|{:?}|{:?}|{}",
        c.week, c.patron_sites, closures, c.national_holidays
    )
}

impl Cells {
    /// What a checkpoint keeps besides the days.
    pub fn head(&self) -> CellsHead {
        let mut days: Vec<i64> = self.days.keys().chain(&self.stored).copied().collect();
        days.sort_unstable();
        CellsHead {
            threshold_ms: self.threshold_ms,
            calendar: calendar_tag(&self.calendar),
            clock: self.clock,
            open: self.open.calls().collect(),
            days,
        }
    }

    /// Cells opened from a checkpoint's `head`, their days left in `source`; `None` when
    /// they were kept for another threshold or calendar (they must then be built).
    pub fn stored(
        head: CellsHead,
        calendar: &ServiceCalendar,
        threshold_ms: Millis,
        source: Arc<dyn DaySource>,
    ) -> Option<Self> {
        if head.threshold_ms != threshold_ms || head.calendar != calendar_tag(calendar) {
            return None;
        }
        if head
            .open
            .iter()
            .any(|&(_, _, c)| c as usize >= source.calls())
        {
            return None; // not the cells of this book
        }
        Some(Self {
            threshold_ms,
            calendar: calendar.clone(),
            days: Default::default(),
            stored: head.days.into_iter().collect(),
            source: Some(source),
            dirty: BTreeSet::new(),
            damaged: false,
            open: OpenCalls::from_calls(head.open),
            clock: head.clock,
        })
    }

    /// The days changed since the last [`Self::clear_dirty`] that still hold cells: what
    /// the next checkpoint writes (with the head, which names every day).
    pub fn dirty_days(&self) -> Vec<i64> {
        self.dirty
            .iter()
            .copied()
            .filter(|d| self.days.contains_key(d))
            .collect()
    }

    /// Counts day `day` as changed (loaded first): the next checkpoint writes it again.
    pub fn rewrite_day(&mut self, day: i64) {
        self.load_day(day);
        self.touch(day);
    }

    /// After a checkpoint wrote every dirty day.
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Right after a checkpoint wrote every changed day (none dirty) to `source`: it
    /// becomes the days' source, and each day in memory that `settled` names leaves
    /// memory, read from `source` again when a change or a query needs it. Returns how
    /// many left.
    pub fn release_days(
        &mut self,
        source: Arc<dyn DaySource>,
        settled: impl Fn(i64) -> bool,
    ) -> usize {
        if !self.dirty.is_empty() {
            // A day changed since the checkpoint: its pack is not its cells.
            return 0;
        }
        self.source = Some(source);
        let leaving: Vec<i64> = self.days.keys().copied().filter(|&d| settled(d)).collect();
        for day in &leaving {
            self.days.remove(day);
            self.stored.insert(*day);
        }
        leaving.len()
    }

    /// Appends day `day` (in memory: see [`Self::dirty_days`]) to `out`; false when it is
    /// not in memory.
    pub fn encode_day(&self, day: i64, out: &mut Vec<u8>) -> bool {
        let Some(cells) = self.days.get(&day) else {
            return false;
        };
        varint(out, cells.len() as u64);
        for (&(interval, line), cell) in cells.iter() {
            varint(out, (interval - day * PER_DAY) as u64);
            varint(out, u64::from(line));
            varint(out, u64::from(cell.at_max));
            put_figures(out, &cell.figures);
            let mut members = cell.members.clone();
            members.sort_unstable();
            varint(out, members.len() as u64);
            let mut last = 0u32;
            for m in members {
                varint(out, u64::from(m - last));
                last = m;
            }
        }
        true
    }
}

/// The cells of day `day` from the bytes [`Cells::encode_day`] wrote; `None` unless they
/// decode whole, every cell in the day, and every member below `calls`.
pub(super) fn decode_day(bytes: &[u8], day: i64, calls: usize) -> Option<DayCells> {
    let mut r = Reader { b: bytes, at: 0 };
    let n = r.varint()?;
    let mut cells = DayCells::new();
    for _ in 0..n {
        let offset = i64::try_from(r.varint()?).ok().filter(|o| *o < PER_DAY)?;
        let line = LineId::try_from(r.varint()?).ok()?;
        let at_max = u32::try_from(r.varint()?).ok()?;
        let figures = r.figures()?;
        let count = usize::try_from(r.varint()?).ok()?;
        // At least a byte a member: a damaged count cannot make us allocate much.
        let mut members = Vec::with_capacity(count.min(bytes.len()));
        let mut last = 0u64;
        for k in 0..count {
            let d = r.varint()?;
            if k > 0 && d == 0 {
                return None; // a member twice
            }
            last = last.checked_add(d)?;
            members.push(u32::try_from(last).ok().filter(|&m| (m as usize) < calls)?);
        }
        let key = (day * PER_DAY + offset, line);
        let cell = Cell {
            figures,
            at_max,
            members,
        };
        if cell.members.is_empty() || cells.insert(key, cell).is_some() {
            return None;
        }
    }
    (r.at == bytes.len()).then_some(cells)
}

use crate::varint::put as varint;

fn wide(out: &mut Vec<u8>, v: u128) {
    varint(out, v as u64);
    varint(out, (v >> 64) as u64);
}

fn put_figures(out: &mut Vec<u8>, f: &Figures) {
    // Every field by name: a field added to `Figures` must be added here.
    let Figures {
        answered,
        abandoned,
        overflow,
        answered_without_wait,
        answered_wait_within_threshold,
        answered_wait_over_threshold,
        answered_within_threshold,
        max_wait_ms,
        wait_sum_ms,
        talk_sum_ms,
        talk_count,
        bookings,
        out_of_hours,
        unresolved,
    } = *f;
    for n in [
        answered,
        abandoned,
        overflow,
        answered_without_wait,
        answered_wait_within_threshold,
        answered_wait_over_threshold,
        answered_within_threshold,
        talk_count,
        bookings,
        out_of_hours,
        unresolved,
    ] {
        varint(out, n);
    }
    match max_wait_ms {
        None => varint(out, 0),
        Some(m) => {
            out.push(1);
            varint(out, crate::varint::zigzag(m));
        }
    }
    wide(out, wait_sum_ms);
    wide(out, talk_sum_ms);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Option<u64> {
        crate::varint::read(self.b, &mut self.at)
    }

    fn wide(&mut self) -> Option<u128> {
        Some(u128::from(self.varint()?) | u128::from(self.varint()?) << 64)
    }

    fn figures(&mut self) -> Option<Figures> {
        let mut n = [0u64; 11];
        for v in &mut n {
            *v = self.varint()?;
        }
        let max_wait_ms = match self.varint()? {
            0 => None,
            1 => {
                let z = self.varint()?;
                Some(crate::varint::unzigzag(z))
            }
            _ => return None,
        };
        let [
            answered,
            abandoned,
            overflow,
            answered_without_wait,
            answered_wait_within_threshold,
            answered_wait_over_threshold,
            answered_within_threshold,
            talk_count,
            bookings,
            out_of_hours,
            unresolved,
        ] = n;
        Some(Figures {
            answered,
            abandoned,
            overflow,
            answered_without_wait,
            answered_wait_within_threshold,
            answered_wait_over_threshold,
            answered_within_threshold,
            max_wait_ms,
            wait_sum_ms: self.wide()?,
            talk_sum_ms: self.wide()?,
            talk_count,
            bookings,
            out_of_hours,
            unresolved,
        })
    }
}

/// The interval length is what the day encoding assumes.
const _: () = assert!(INTERVAL * PER_DAY == crate::time::DAY);
