//! The rows of `netwait_log` as written (RowBinary, every column) and read back.

use crate::schema::kind;
use clickhouse::Row;
use netwait_aggregator::domain::derived::{CallRow, CellRow, DayRow};
use netwait_aggregator::domain::figures::Figures;
use netwait_aggregator::domain::figures_sql::outcome_code;
use serde::{Deserialize, Serialize};

/// One row of `netwait_log`, every column (a kind leaves the others at zero).
/// The constructors leave `shard` to [`LogRow::of`].
#[derive(Debug, Clone, Default, Row, Serialize)]
pub struct LogRow {
    pub seq: u64,
    pub kind: u8,
    pub idx: u32,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Days since 1970-01-01 (a `Date`).
    pub day: u16,
    pub interval_n: i64,
    pub line: String,
    pub sign: i8,
    pub call_n: u32,
    pub anchor_ms: i64,
    pub outcome: u8,
    pub in_hours: u8,
    pub net_wait_ms: i64,
    pub talk_ms: i64,
    pub answered: u64,
    pub abandoned: u64,
    pub overflow: u64,
    pub answered_without_wait: u64,
    pub answered_wait_within_threshold: u64,
    pub answered_wait_over_threshold: u64,
    pub answered_within_threshold: u64,
    pub max_wait_ms: i64,
    pub wait_sum_ms: u64,
    pub talk_sum_ms: u64,
    pub talk_count: u64,
    pub bookings: u64,
    pub out_of_hours: u64,
    pub unresolved: u64,
    pub source_partition: String,
    pub source_position: u64,
    /// The shard whose writer wrote the row (see [`crate::shard`]).
    pub shard: String,
}

/// A local day as a `Date` (the domain's days are 1970..2101: they fit).
pub fn date_of(day: i64) -> u16 {
    u16::try_from(day).unwrap_or(if day < 0 { 0 } else { u16::MAX })
}

/// A sum of milliseconds as stored (a cell's sums stay far below 2^64 ms).
fn ms(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl LogRow {
    /// The row as a row of `shard`'s.
    pub fn of(self, shard: &crate::shard::Shard) -> Self {
        Self {
            shard: shard.as_str().to_owned(),
            ..self
        }
    }

    pub fn records(seq: u64, idx: u32, payload: Vec<u8>) -> Self {
        Self {
            seq,
            kind: kind::RECORDS,
            idx,
            payload,
            ..Self::default()
        }
    }

    pub fn cell(seq: u64, idx: u32, c: &CellRow) -> Self {
        Self {
            interval_n: c.interval,
            ..Self::figures(seq, kind::CELL, idx, c.day, &c.line, &c.figures)
        }
    }

    /// A day's figures (see [`kind::DAY`]).
    pub fn day(seq: u64, idx: u32, d: &DayRow) -> Self {
        Self::figures(seq, kind::DAY, idx, d.day, &d.line, &d.figures)
    }

    /// A row of figures (a cell's or a day's).
    fn figures(seq: u64, kind: u8, idx: u32, day: i64, line: &str, f: &Figures) -> Self {
        Self {
            seq,
            kind,
            idx,
            day: date_of(day),
            line: line.to_owned(),
            answered: f.answered,
            abandoned: f.abandoned,
            overflow: f.overflow,
            answered_without_wait: f.answered_without_wait,
            answered_wait_within_threshold: f.answered_wait_within_threshold,
            answered_wait_over_threshold: f.answered_wait_over_threshold,
            answered_within_threshold: f.answered_within_threshold,
            max_wait_ms: f.max_wait_ms.unwrap_or(-1),
            wait_sum_ms: ms(f.wait_sum_ms),
            talk_sum_ms: ms(f.talk_sum_ms),
            talk_count: f.talk_count,
            bookings: f.bookings,
            out_of_hours: f.out_of_hours,
            unresolved: f.unresolved,
            ..Self::default()
        }
    }

    pub fn call(seq: u64, idx: u32, c: &CallRow) -> Self {
        let open = c.outcome == netwait_aggregator::domain::call::Outcome::Open;
        Self {
            seq,
            kind: if open { kind::OPEN_CALL } else { kind::CALL },
            idx,
            day: date_of(c.day),
            interval_n: c
                .anchor
                .div_euclid(netwait_aggregator::domain::cells::INTERVAL),
            line: c.line.clone(),
            sign: c.sign,
            call_n: c.call,
            anchor_ms: c.anchor,
            outcome: outcome_code(c.outcome),
            in_hours: u8::from(c.in_hours),
            net_wait_ms: c.net_wait.unwrap_or(-1),
            talk_ms: c.talk.unwrap_or(-1),
            bookings: u64::from(c.bookings),
            ..Self::default()
        }
    }

    /// The last row of commit `seq`, whose rows are `rows` in all (this one included).
    pub fn commit(seq: u64, rows: u32) -> Self {
        Self {
            seq,
            kind: kind::COMMIT,
            idx: rows,
            ..Self::default()
        }
    }

    /// Makes commit `seq` void (see [`kind::VOID`]).
    pub fn void(seq: u64) -> Self {
        Self {
            seq,
            kind: kind::VOID,
            ..Self::default()
        }
    }

    /// Makes every `seq` in `from..=to` void (see [`kind::FENCE`]).
    pub fn fence(from: u64, to: u64) -> Self {
        Self {
            seq: from,
            kind: kind::FENCE,
            source_position: to,
            ..Self::default()
        }
    }

    pub fn position(seq: u64, idx: u32, partition: &str, position: u64) -> Self {
        Self {
            seq,
            kind: kind::POSITION,
            idx,
            source_partition: partition.to_owned(),
            source_position: position,
            ..Self::default()
        }
    }
}

/// A part of a commit's records, read back for replay.
#[derive(Debug, Row, Deserialize)]
pub struct RecordsRow {
    pub seq: u64,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Figures per local day, as the queries read them back.
pub type DayFigures = KeyedFigures<u16>;
/// Figures per 15-minute interval (numbered since the epoch).
pub type IntervalFigures = KeyedFigures<i64>;

/// Figures of one group (a day, an interval), as the queries read them back: the group's
/// key first, then [`crate::schema::FIGURE_COLUMNS`].
#[derive(Debug, Row, Deserialize)]
pub struct KeyedFigures<K> {
    pub key: K,
    pub answered: u64,
    pub abandoned: u64,
    pub overflow: u64,
    pub answered_without_wait: u64,
    pub answered_wait_within_threshold: u64,
    pub answered_wait_over_threshold: u64,
    pub answered_within_threshold: u64,
    pub max_wait_ms: i64,
    pub wait_sum_ms: u64,
    pub talk_sum_ms: u64,
    pub talk_count: u64,
    pub bookings: u64,
    pub out_of_hours: u64,
    pub unresolved: u64,
}

impl<K> KeyedFigures<K> {
    pub fn figures(&self) -> Figures {
        Figures {
            answered: self.answered,
            abandoned: self.abandoned,
            overflow: self.overflow,
            answered_without_wait: self.answered_without_wait,
            answered_wait_within_threshold: self.answered_wait_within_threshold,
            answered_wait_over_threshold: self.answered_wait_over_threshold,
            answered_within_threshold: self.answered_within_threshold,
            max_wait_ms: (self.max_wait_ms >= 0).then_some(self.max_wait_ms),
            wait_sum_ms: u128::from(self.wait_sum_ms),
            talk_sum_ms: u128::from(self.talk_sum_ms),
            talk_count: self.talk_count,
            bookings: self.bookings,
            out_of_hours: self.out_of_hours,
            unresolved: self.unresolved,
        }
    }
}
