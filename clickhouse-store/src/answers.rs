//! The API's queries answered from ClickHouse (the api role): the same reports as the
//! embedded mode ([`Answers`]), counted from SQL sums over the cells and call records
//! the engine derived. No rule is written here: the cells hold figures the domain made,
//! and a threshold other than theirs is counted by expressions the domain generates
//! ([`figures_sql`]).

use crate::conn::{Conn, Error, Target};
use crate::log_state::LogState;
use crate::rows::{DayFigures, IntervalFigures};
use crate::schema::{FIGURE_COLUMNS, Reading, cells_sql, combined, days_sql, kind};
use crate::shard::Layout;
use jiff::civil::Date;
use netwait_aggregator::domain::calendar::ServiceCalendar;
use netwait_aggregator::domain::call::Outcome;
use netwait_aggregator::domain::call::UNRESOLVED_AFTER;
use netwait_aggregator::domain::config::MetricsConfig;
use netwait_aggregator::domain::figures::{CallSource, Figures, IntervalGrid, LineFilter};
use netwait_aggregator::domain::figures_sql::{RowColumns, figures_sql, outcome_code};
use netwait_aggregator::domain::time::{Millis, local_date};
use netwait_aggregator::published::Answers;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// How long a reader of a database of the whole log's [`Layout`] goes on with it before
/// it reads the layout again (a database is made shared before its first commit, and
/// that waits twice this: see `ClickHouseStore::share`).
pub const LAYOUT_RECHECK: Duration = Duration::from_secs(1);

/// A string as a ClickHouse literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The period's rows: `AND day >= ... AND day < ... [AND line = ...]`.
fn period_filter(line: &LineFilter, from: Date, to: Date) -> String {
    let mut f = format!("AND day >= toDate('{from}') AND day < toDate('{to}')");
    if let Some(l) = &line.0 {
        f.push_str(&format!(" AND line = {}", quote(l)));
    }
    f
}

/// The call records that stand (counted in and not taken back), with `filter`: a
/// record's rows cancel out by value, so a group of them that sums to 1 is a live one.
pub fn live_calls_sql(reading: &Reading, filter: &str) -> String {
    live_rows_sql(
        reading,
        &format!("kind IN ({}, {})", kind::CALL, kind::OPEN_CALL),
        filter,
    )
}

/// [`live_calls_sql`] of the calls open at the cells' clock only.
pub fn live_open_calls_sql(reading: &Reading, filter: &str) -> String {
    live_rows_sql(reading, &format!("kind = {}", kind::OPEN_CALL), filter)
}

fn live_rows_sql(reading: &Reading, kinds: &str, filter: &str) -> String {
    // A call's number is its writer's: of shards, the shard tells calls of one number apart.
    format!(
        "SELECT day, interval_n, line, anchor_ms, outcome, in_hours, net_wait_ms, talk_ms, bookings \
         FROM netwait_log WHERE {kinds} AND {} {filter} \
         GROUP BY {} HAVING sum(sign) > 0",
        reading.condition(),
        reading.grouped(
            "call_n, day, interval_n, line, anchor_ms, outcome, in_hours, net_wait_ms, talk_ms, bookings"
        )
    )
}

/// The generated figures over live call rows, `outcome` being the expression of their
/// outcome (open calls unresolved by the query's clock).
fn generated(outcome: &str, threshold_ms: Millis) -> String {
    let cols = RowColumns {
        outcome,
        in_hours: "in_hours",
        net_wait_ms: "net_wait_ms",
        talk_ms: "talk_ms",
        bookings: "bookings",
    };
    figures_sql(&cols, threshold_ms)
        .into_iter()
        .map(|(name, expr)| format!("{expr} AS {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Figures per local day of the period: from the cells for their threshold (plus the
/// calls open at the cells' clock that are unresolved by `now`), else from the call
/// records by the generated expressions.
pub fn day_figures_sql(
    reading: &Reading,
    line: &LineFilter,
    (from, to): (Date, Date),
    threshold_ms: Millis,
    cells_threshold_ms: Millis,
    now: Millis,
) -> String {
    let filter = period_filter(line, from, to);
    // A row a day rather than the day's cells: the same sums, made by the engine.
    let days = days_sql(reading, &filter);
    keyed_figures_sql(
        reading,
        "day",
        &filter,
        &days,
        threshold_ms,
        cells_threshold_ms,
        now,
    )
}

/// [`day_figures_sql`] per 15-minute interval of `grid` (cells and call records both
/// carry the interval of their anchor, `interval_n`).
pub fn interval_figures_sql(
    reading: &Reading,
    line: &LineFilter,
    grid: IntervalGrid,
    threshold_ms: Millis,
    cells_threshold_ms: Millis,
    now: Millis,
) -> String {
    let intervals = grid.intervals();
    let mut filter = format!(
        "AND interval_n >= {} AND interval_n < {}",
        intervals.start, intervals.end
    );
    if let Some(l) = &line.0 {
        filter.push_str(&format!(" AND line = {}", quote(l)));
    }
    let cells = cells_sql(reading, &filter);
    keyed_figures_sql(
        reading,
        "interval_n",
        &filter,
        &cells,
        threshold_ms,
        cells_threshold_ms,
        now,
    )
}

/// Figures grouped by `key` (a column of the rows of figures and of the call records)
/// over the rows `filter` keeps: from `figures` (the current rows of figures, cells or
/// days, with `filter`) at the configured threshold, else from the call records; the
/// key comes first, as [`crate::rows::KeyedFigures`] reads it.
fn keyed_figures_sql(
    reading: &Reading,
    key: &str,
    filter: &str,
    figures: &str,
    threshold_ms: Millis,
    cells_threshold_ms: Millis,
    now: Millis,
) -> String {
    let open = outcome_code(Outcome::Open);
    let unresolved = outcome_code(Outcome::Unresolved);
    let timed_out = now.saturating_sub(UNRESOLVED_AFTER);
    if threshold_ms == cells_threshold_ms {
        let sums = FIGURE_COLUMNS
            .iter()
            .map(|c| format!("{} AS {c}", combined(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let late = format!("{filter} AND anchor_ms <= {timed_out}");
        format!(
            "SELECT {key}, {sums} FROM ({}) GROUP BY {key} \
             UNION ALL SELECT {key}, {} FROM ({}) GROUP BY {key}",
            figures,
            generated(&unresolved.to_string(), threshold_ms),
            live_open_calls_sql(reading, &late),
        )
    } else {
        let outcome =
            format!("if(outcome = {open} AND anchor_ms <= {timed_out}, {unresolved}, outcome)");
        format!(
            "SELECT {key}, {} FROM ({}) GROUP BY {key}",
            generated(&outcome, threshold_ms),
            live_calls_sql(reading, filter),
        )
    }
}

/// The service lines of the calls of whole commits. (Grouped: ClickHouse 18.16's
/// DISTINCT repeats lines under the condition of shards.)
pub fn lines_sql(reading: &Reading) -> String {
    format!(
        "SELECT line FROM netwait_log WHERE kind IN ({}, {}) AND {} GROUP BY line ORDER BY line",
        kind::CALL,
        kind::OPEN_CALL,
        reading.condition()
    )
}

/// The reports of one contract's database.
pub struct SqlAnswers {
    conn: Conn,
    config: MetricsConfig,
    /// The database's layout, and when it was read (a whole log's is read again after
    /// [`LAYOUT_RECHECK`]: the database may have been made shared since; a shared one
    /// stays so).
    layout: Cell<(Layout, Instant)>,
    /// The rows the queries of the report being made count (read as it starts).
    reading: RefCell<Option<Reading>>,
    /// The first query failure of the report being made (a [`CallSource`] cannot fail).
    failed: RefCell<Option<Error>>,
}

impl SqlAnswers {
    /// The reports of `target`; waits for a server that cannot be reached yet
    /// ([`Conn::connect`]).
    pub fn open(target: Target, config: MetricsConfig) -> Result<Self, Error> {
        let conn = Conn::connect(target)?;
        conn.require_schema()?;
        let layout = Cell::new((crate::store::read_layout(&conn)?, Instant::now()));
        Ok(Self {
            conn,
            config,
            layout,
            reading: RefCell::new(None),
            failed: RefCell::new(None),
        })
    }

    /// The database's layout, read again when it may have changed.
    fn layout(&self) -> Result<Layout, Error> {
        let (layout, read) = self.layout.get();
        if layout == Layout::Shards || read.elapsed() < LAYOUT_RECHECK {
            return Ok(layout);
        }
        let now = crate::store::read_layout(&self.conn)?;
        self.layout.set((now, Instant::now()));
        Ok(now)
    }

    /// The rows a query counts: the report's, else as the log stands now.
    fn reading(&self) -> Result<Reading, Error> {
        if let Some(r) = self.reading.borrow().as_ref() {
            return Ok(r.clone());
        }
        Ok(LogState::read(&self.conn, self.layout()?)?.reading())
    }

    /// The service lines the database has calls of.
    pub fn lines(&self) -> Result<Vec<String>, Error> {
        let sql = lines_sql(&self.reading()?);
        self.conn
            .block_on(self.conn.client.query(&sql).fetch_all::<String>())
            .map_err(|e| self.conn.error(e))
    }

    /// Makes a report with `report` (one of the [`Answers`] methods), failing when one
    /// of its queries failed. Its queries count the commits of one reading of the log,
    /// made as it starts.
    pub fn checked<T>(&self, report: impl FnOnce(&Self) -> T) -> Result<T, Error> {
        self.failed.replace(None);
        let reading = LogState::read(&self.conn, self.layout()?)?.reading();
        self.reading.replace(Some(reading));
        let out = report(self);
        self.reading.replace(None);
        match self.failed.replace(None) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The figures of `line` on each local day of `[from, to)` that has calls, for the
    /// configured threshold, in one query (each is what a report of that day alone says).
    pub fn days_of(
        &self,
        line: &str,
        period: (Date, Date),
        now: Millis,
    ) -> Result<Vec<(Date, Figures)>, Error> {
        let line = LineFilter(Some(line.to_owned()));
        let days = self.day_figures(&line, period, self.config.threshold_ms, now)?;
        Ok(days
            .into_iter()
            .map(|d| (local_date(i64::from(d.key)), d.figures()))
            .collect())
    }

    fn day_figures(
        &self,
        line: &LineFilter,
        period: (Date, Date),
        threshold_ms: Millis,
        now: Millis,
    ) -> Result<Vec<DayFigures>, Error> {
        let sql = day_figures_sql(
            &self.reading()?,
            line,
            period,
            threshold_ms,
            self.config.threshold_ms,
            now,
        );
        self.conn
            .block_on(self.conn.client.query(&sql).fetch_all::<DayFigures>())
            .map_err(|e| self.conn.error(e))
    }

    fn interval_figures(
        &self,
        line: &LineFilter,
        grid: IntervalGrid,
        threshold_ms: Millis,
        now: Millis,
    ) -> Result<Vec<IntervalFigures>, Error> {
        let sql = interval_figures_sql(
            &self.reading()?,
            line,
            grid,
            threshold_ms,
            self.config.threshold_ms,
            now,
        );
        self.conn
            .block_on(self.conn.client.query(&sql).fetch_all::<IntervalFigures>())
            .map_err(|e| self.conn.error(e))
    }
}

struct SqlSource<'a> {
    answers: &'a SqlAnswers,
    now: Millis,
}

impl CallSource for SqlSource<'_> {
    fn tally(
        &self,
        line: &LineFilter,
        _calendar: &ServiceCalendar,
        threshold_ms: Millis,
        period: (Date, Date),
        bucket: &(dyn Fn(Date) -> Option<usize> + Sync),
        out: &mut [Figures],
    ) {
        // The calendar is the configured one: the rows were placed by it.
        match self
            .answers
            .day_figures(line, period, threshold_ms, self.now)
        {
            Ok(days) => {
                for d in days {
                    let date = local_date(i64::from(d.key));
                    if let Some(slot) = bucket(date).and_then(|i| out.get_mut(i)) {
                        slot.merge(&d.figures());
                    }
                }
            }
            Err(e) => {
                self.answers.failed.borrow_mut().get_or_insert(e);
            }
        }
    }

    fn tally_intervals(
        &self,
        line: &LineFilter,
        _calendar: &ServiceCalendar,
        threshold_ms: Millis,
        grid: IntervalGrid,
        out: &mut [Figures],
    ) {
        // The calendar is the configured one: the rows were placed by it.
        match self
            .answers
            .interval_figures(line, grid, threshold_ms, self.now)
        {
            Ok(intervals) => {
                for i in intervals {
                    if let Some(slot) = grid.bucket(i.key).and_then(|k| out.get_mut(k)) {
                        slot.merge(&i.figures());
                    }
                }
            }
            Err(e) => {
                self.answers.failed.borrow_mut().get_or_insert(e);
            }
        }
    }
}

impl Answers for SqlAnswers {
    fn answer_config(&self) -> &MetricsConfig {
        &self.config
    }

    fn answer_source<T>(&self, wall: Millis, count: impl FnOnce(&dyn CallSource) -> T) -> T {
        count(&SqlSource {
            answers: self,
            now: wall,
        })
    }
}
