//! The rows a store that keeps figures of its own (ClickHouse) is handed with each
//! commit: the new state of every cell the commit touched and of the days they are in,
//! and its call records' changes
//! as cancel (`sign` −1) and new (`sign` +1) rows. Made by the cells ([`super::cells`])
//! from the one rule of the figures, so that a store only sums them.

use super::call::{CallRecord, LineId, Outcome};
use super::figures::Figures;
use super::time::Millis;
use std::collections::BTreeMap;

/// A cell as it is after a commit: (interval number since the epoch, line) → figures
/// (all zero when its last call left it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellRow {
    pub interval: i64,
    /// Europe/Rome local day (days since 1970-01-01) of the interval.
    pub day: i64,
    pub line: String,
    pub figures: Figures,
}

/// A line's figures of one Europe/Rome local day after a commit: the sum of its cells
/// (so that a store answers a month or a year from a row a day, not 96 cells a day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    /// Days since 1970-01-01.
    pub day: i64,
    pub line: String,
    pub figures: Figures,
}

/// One call record counted in (`sign` 1) or taken back (`sign` −1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    pub sign: i8,
    /// The call's number in the book (calls are numbered in the order first seen,
    /// which a replay of the same commits repeats).
    pub call: u32,
    pub anchor: Millis,
    /// Europe/Rome local day of the anchor.
    pub day: i64,
    pub line: String,
    pub outcome: Outcome,
    /// Whether the anchor is inside service hours.
    pub in_hours: bool,
    pub net_wait: Option<Millis>,
    pub talk: Option<Millis>,
    pub bookings: u32,
}

impl CallRow {
    pub fn new(sign: i8, call: u32, rec: &CallRecord<'_>, place: (i64, bool)) -> Self {
        Self {
            sign,
            call,
            anchor: rec.anchor,
            day: place.0,
            line: rec.line.to_owned(),
            outcome: rec.outcome,
            in_hours: place.1,
            net_wait: rec.net_wait,
            talk: rec.talk,
            bookings: rec.bookings,
        }
    }
}

/// What the commits since the last [`Derived::take`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    /// The latest state of each touched cell, by (interval, line).
    pub cells: BTreeMap<(i64, LineId), CellRow>,
    /// The latest figures of each local day (and line) a touched cell is in.
    pub days: BTreeMap<(i64, LineId), DayRow>,
    pub calls: Vec<CallRow>,
}

impl Derived {
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.days.is_empty() && self.calls.is_empty()
    }

    pub fn clear(&mut self) {
        self.cells.clear();
        self.days.clear();
        self.calls.clear();
    }
}
