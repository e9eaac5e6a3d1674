//! The schema: versioned migrations (applied in order, each noted in
//! `netwait_migrations`), and the SQL of the cells' current state that queries and the
//! BI views share. Every statement runs unchanged on ClickHouse 18.16 and 26.x
//! (`MergeTree()` with `ORDER BY`, no old-style engine arguments).

use crate::shard::{Layout, Shard};

/// One migration: its version and its statements, in order.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// Added first, each when missing.
    pub columns: fn() -> Vec<NewColumn>,
    pub statements: fn() -> Vec<String>,
}

/// A column a migration adds (before its statements), when the table lacks it: ALTER
/// TABLE ... ADD COLUMN has no IF NOT EXISTS on ClickHouse 18.16, and a migration cut
/// short is run again.
pub struct NewColumn {
    pub table: &'static str,
    pub name: &'static str,
    pub definition: &'static str,
}

impl NewColumn {
    pub fn statement(&self) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            self.table, self.name, self.definition
        )
    }

    /// How many columns of that name the table has (0 or 1).
    pub fn present_sql(&self) -> String {
        format!(
            "SELECT count() FROM system.columns WHERE database = currentDatabase() \
             AND table = '{}' AND name = '{}'",
            self.table, self.name
        )
    }
}

/// The columns of a cell's figures, named as the fields of `Figures`.
pub const FIGURE_COLUMNS: [&str; 14] = [
    "answered",
    "abandoned",
    "overflow",
    "answered_without_wait",
    "answered_wait_within_threshold",
    "answered_wait_over_threshold",
    "answered_within_threshold",
    "max_wait_ms",
    "wait_sum_ms",
    "talk_sum_ms",
    "talk_count",
    "bookings",
    "out_of_hours",
    "unresolved",
];

/// Row kinds of `netwait_log`.
pub mod kind {
    /// Encoded records (events and dead letters) of one part of a commit.
    pub const RECORDS: u8 = 1;
    /// A cell's state as of the commit `seq` (the latest `seq` is the current one).
    pub const CELL: u8 = 2;
    /// A call record counted in (`sign` 1) or taken back (`sign` −1).
    pub const CALL: u8 = 3;
    /// The same for a call open at the commit's clock (kept apart: a query reads the
    /// open ones that its clock turns unresolved without reading every record).
    pub const OPEN_CALL: u8 = 5;
    /// A source's position (`source_partition`, `source_position`) as of the commit.
    pub const POSITION: u8 = 4;
    /// The last row of every commit (`idx`: the commit's row count, this one included).
    /// A commit counts only with it: ClickHouse 18.16 inserts the rows that arrived of
    /// an insert whose connection was cut (a writer killed mid-commit), so a block can
    /// hold a commit's first rows only.
    pub const COMMIT: u8 = 6;
    /// A commit cut short (or an attempt given up on): none of its rows count, even
    /// if the attempt lands whole later. Written before any commit above it.
    pub const VOID: u8 = 7;
    /// A line's figures of one local day as of the commit `seq` (the sum of its cells,
    /// made by the engine): a month or a year reads a row a day.
    pub const DAY: u8 = 8;
    /// A writer's fence, written when it opens: every row with a `seq` from this row's
    /// `seq` to its `source_position` (both included) is void. Each writer numbers its
    /// commits from a base of its own lease epoch's, above every earlier writer's, and
    /// fences off the range between the last whole commit and its base: the commits
    /// cut short there, and whatever an earlier writer, stalled past its lease, still
    /// inserts after it was taken over (such an insert can only take a seq in the
    /// range). Also written after a failed commit, over that writer's own cut attempts.
    pub const FENCE: u8 = 9;
}

/// The condition every reader of `netwait_log` puts on its rows: their commit is whole.
/// Each shard's commits are numbered in order by its one writer, which voids a cut one
/// before it commits above it; so a row counts when its `seq` is at most the last
/// commit's of its shard and not void in it ([`not_void`]). (Both are read from the rows
/// of their kind, which sort first: they are few; a set of every commit's seq would grow
/// with the history.) A whole log has one shard: its condition names none. The BI views
/// put this on their rows; a report reads the log's state first and puts it as
/// literals (`crate::log_state`).
pub fn committed(layout: Layout) -> String {
    match layout {
        Layout::Whole => format!(
            "seq <= (SELECT max(seq) FROM netwait_log WHERE kind = {}) AND {}",
            kind::COMMIT,
            not_void(layout)
        ),
        Layout::Shards => {
            // Each shard's last commit: two arrays in the order of their shards (one
            // subquery sorted by shard, read twice), looked up by the row's shard (0,
            // nothing committed, for a shard that has no commit).
            let last = format!(
                "FROM (SELECT shard, max(seq) AS m FROM netwait_log WHERE kind = {} \
                 GROUP BY shard ORDER BY shard)",
                kind::COMMIT
            );
            format!(
                "seq <= arrayElement((SELECT groupArray(m) {last}), \
                 indexOf((SELECT groupArray(shard) {last}), shard)) AND {}",
                not_void(layout)
            )
        }
    }
}

/// The `seq` of the row is neither made void one by one in its shard ([`kind::VOID`]:
/// an attempt given up on) nor within a fence of its shard's writers ([`kind::FENCE`]).
pub fn not_void(layout: Layout) -> String {
    match layout {
        Layout::Whole => format!(
            "seq NOT IN (SELECT seq FROM netwait_log WHERE kind = {}) \
             AND NOT arrayExists(f -> seq >= tupleElement(f, 1) AND seq <= tupleElement(f, 2), \
             (SELECT groupArray((seq, source_position)) FROM netwait_log WHERE kind = {}))",
            kind::VOID,
            kind::FENCE
        ),
        // A void commit by the hash of its shard and seq: a set of numbers costs a query
        // less than one of (string, number) pairs, and two pairs of one hash (a real
        // row taken for void) are as likely as a random 64-bit collision among the few
        // void seqs. The shard's hash in the fences, likewise: a number to compare.
        // (ClickHouse 18.16 refuses a column named only inside a lambda: `shard` is
        // named outside it too.)
        Layout::Shards => format!(
            "cityHash64(shard, seq) NOT IN \
             (SELECT cityHash64(shard, seq) FROM netwait_log WHERE kind = {}) \
             AND NOT arrayExists(f -> tupleElement(f, 1) = cityHash64(shard) \
             AND seq >= tupleElement(f, 2) AND seq <= tupleElement(f, 3), \
             (SELECT groupArray((cityHash64(shard), seq, source_position)) FROM netwait_log \
             WHERE kind = {}))",
            kind::VOID,
            kind::FENCE
        ),
    }
}

/// How a reader picks the rows of whole commits: the layout it reads (a shard per
/// partition: rows grouped by shard too) and the condition it puts on every row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    layout: Layout,
    condition: String,
}

impl Reading {
    /// The condition as subqueries of its own ([`committed`]): for the BI views, which
    /// BI tools run at any time.
    pub fn live(layout: Layout) -> Self {
        Self::with(layout, committed(layout))
    }

    /// `condition` on the rows of a database of `layout` (see `crate::log_state`).
    pub(crate) fn with(layout: Layout, condition: String) -> Self {
        Self { layout, condition }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn condition(&self) -> &str {
        &self.condition
    }

    /// The keys of the latest state of a row of figures keyed by `keys`: of shards, a
    /// row per shard that has one (the queries over them sum the shards).
    pub fn grouped(&self, keys: &str) -> String {
        match self.layout {
            Layout::Whole => keys.to_owned(),
            Layout::Shards => format!("shard, {keys}"),
        }
    }
}

/// [`committed`] for the rows of `shard` alone (its writer's own reads: they name it).
pub fn committed_in(shard: &Shard) -> String {
    format!(
        "seq <= (SELECT max(seq) FROM netwait_log WHERE kind = {} AND shard = {s}) AND {}",
        kind::COMMIT,
        not_void_in(shard),
        s = shard.sql()
    )
}

/// [`not_void`] for the rows of `shard` alone.
pub fn not_void_in(shard: &Shard) -> String {
    format!(
        "seq NOT IN (SELECT seq FROM netwait_log WHERE kind = {} AND shard = {s}) \
         AND NOT arrayExists(f -> seq >= tupleElement(f, 1) AND seq <= tupleElement(f, 2), \
         (SELECT groupArray((seq, source_position)) FROM netwait_log WHERE kind = {} \
         AND shard = {s}))",
        kind::VOID,
        kind::FENCE,
        s = shard.sql()
    )
}

/// One table holds every row of every commit: a commit is one INSERT of one block,
/// which ClickHouse makes visible whole or not at all (one part: the table is not
/// partitioned). Rows of a kind leave the other kinds' columns at their defaults.
fn v1() -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS netwait_meta (key String, value String) \
         ENGINE = MergeTree() ORDER BY key"
            .into(),
        "CREATE TABLE IF NOT EXISTS netwait_log (\
         seq UInt64, kind UInt8, idx UInt32, payload String, \
         day Date, interval_n Int64, line String, \
         sign Int8, call_n UInt32, anchor_ms Int64, outcome UInt8, in_hours UInt8, \
         net_wait_ms Int64, talk_ms Int64, \
         answered UInt64, abandoned UInt64, overflow UInt64, answered_without_wait UInt64, \
         answered_wait_within_threshold UInt64, answered_wait_over_threshold UInt64, \
         answered_within_threshold UInt64, max_wait_ms Int64, wait_sum_ms UInt64, \
         talk_sum_ms UInt64, talk_count UInt64, bookings UInt64, out_of_hours UInt64, \
         unresolved UInt64, source_partition String, source_position UInt64\
         ) ENGINE = MergeTree() ORDER BY (kind, day, line, interval_n, seq, idx)"
            .into(),
    ]
}

/// The BI views (issue 12 item 6): Europe/Rome local time keys, Table 1 counts under
/// their spec names, the SLA policies' numerator and denominators, sums for averages.
fn v2() -> Vec<String> {
    views(Layout::Whole, &cells_sql(&Reading::live(Layout::Whole), ""))
}

/// The BI views of a database of `layout`, the daily and monthly ones over `days` (the
/// current day rows since migration 5; the cells before).
fn views(layout: Layout, days: &str) -> Vec<String> {
    let cells = cells_sql(&Reading::live(layout), "");
    let sums = |key: &str| {
        format!(
            "SELECT {key}, line, \
             sum(cur_answered) + sum(cur_abandoned) + sum(cur_overflow) AS calls_received, \
             sum(cur_answered) AS answered, sum(cur_abandoned) AS abandoned, sum(cur_overflow) AS overflow, \
             sum(cur_answered_without_wait) AS answered_without_wait, \
             sum(cur_answered_wait_within_threshold) AS answered_wait_within_threshold, \
             sum(cur_answered_wait_over_threshold) AS answered_wait_over_threshold, \
             sum(cur_answered_within_threshold) AS sla_numerator, \
             sum(cur_answered) AS sla_denominator_answered, \
             sum(cur_answered) + sum(cur_abandoned) AS sla_denominator_answered_and_abandoned, \
             sum(cur_answered) + sum(cur_abandoned) + sum(cur_overflow) AS sla_denominator_offered, \
             max(cur_max_wait_ms) AS max_wait_ms, sum(cur_wait_sum_ms) AS wait_sum_ms, \
             sum(cur_talk_sum_ms) AS talk_sum_ms, sum(cur_talk_count) AS talk_count, \
             sum(cur_bookings) AS bookings, sum(cur_out_of_hours) AS out_of_hours, \
             sum(cur_unresolved) AS unresolved"
        )
    };
    vec![
        format!(
            "CREATE VIEW IF NOT EXISTS netwait_interval_15m AS {} \
             FROM ({cells}) GROUP BY interval_start, line",
            sums("toDateTime(interval_n * 900, 'Europe/Rome') AS interval_start")
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS netwait_daily AS {} FROM ({days}) GROUP BY day, line",
            sums("day")
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS netwait_monthly AS {} FROM ({days}) \
             GROUP BY month, line",
            sums("toStartOfMonth(day) AS month")
        ),
    ]
}

/// Commit rows (see [`kind::COMMIT`]): every commit already there is taken as whole (a
/// database written before them cannot tell), and the BI views count whole commits only.
fn v3() -> Vec<String> {
    let mut out = vec![format!(
        "INSERT INTO netwait_log (seq, kind, idx) \
         SELECT seq, {}, toUInt32(count() + 1) FROM netwait_log GROUP BY seq",
        kind::COMMIT
    )];
    out.extend(views_recreated(
        Layout::Whole,
        &cells_sql(&Reading::live(Layout::Whole), ""),
    ));
    out
}

const VIEWS: [&str; 3] = ["netwait_interval_15m", "netwait_daily", "netwait_monthly"];

/// The BI views dropped and made again (their condition or source changed).
fn views_recreated(layout: Layout, days: &str) -> Vec<String> {
    let mut out: Vec<String> = VIEWS
        .iter()
        .map(|v| format!("DROP TABLE IF EXISTS {v}"))
        .collect();
    out.extend(views(layout, days));
    out
}

/// The statements that make the BI views of a database of `layout` (dropped first: a
/// database made shared has the whole log's).
pub fn views_of(layout: Layout) -> Vec<String> {
    views_recreated(layout, &days_sql(&Reading::live(layout), ""))
}

/// The writer lease (see `lease`): a row per claim and heartbeat, merged to the latest
/// heartbeat of each claim.
fn v4() -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS netwait_writers \
         (epoch UInt64, writer String, since UInt32, at UInt32) \
         ENGINE = ReplacingMergeTree(at) ORDER BY (epoch, writer, since)"
            .into(),
    ]
}

/// Day rows (see [`kind::DAY`]): those of the cells already there, summed, under the
/// last commit; the daily and monthly views read them.
fn v5() -> Vec<String> {
    let sums = FIGURE_COLUMNS
        .iter()
        .map(|c| combined(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = vec![format!(
        "INSERT INTO netwait_log (seq, kind, idx, day, line, {}) \
         SELECT (SELECT max(seq) FROM netwait_log WHERE kind = {}), {}, 0, day, line, {sums} \
         FROM ({}) GROUP BY day, line",
        FIGURE_COLUMNS.join(", "),
        kind::COMMIT,
        kind::DAY,
        cells_sql(&Reading::live(Layout::Whole), "")
    )];
    out.extend(views_of(Layout::Whole));
    out
}

/// Writers' fences (see [`kind::FENCE`]): the BI views leave fenced rows out too.
fn v6() -> Vec<String> {
    views_of(Layout::Whole)
}

/// Shards (see [`crate::shard`]): each row names the shard whose writer wrote it (every
/// row so far: the whole log's, `''`), and leases are taken per shard (the claims so
/// far are the whole log's). The database stays of the whole log's [`Layout`] (its
/// views too) until aggregators sharing partitions first write to it.
fn v7() -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS netwait_leases \
         (shard String, epoch UInt64, writer String, since UInt32, at UInt32) \
         ENGINE = ReplacingMergeTree(at) ORDER BY (shard, epoch, writer, since)"
            .into(),
        // Run again after a cut: the copies of a claim merge into one.
        "INSERT INTO netwait_leases (shard, epoch, writer, since, at) \
         SELECT '', epoch, writer, since, at FROM netwait_writers"
            .into(),
    ]
}

fn no_columns() -> Vec<NewColumn> {
    Vec::new()
}

fn v7_columns() -> Vec<NewColumn> {
    vec![NewColumn {
        table: "netwait_log",
        name: "shard",
        definition: "String DEFAULT ''",
    }]
}

pub const MIGRATIONS: [Migration; 7] = [
    Migration {
        version: 1,
        name: "log and meta tables",
        columns: no_columns,
        statements: v1,
    },
    Migration {
        version: 2,
        name: "BI views",
        columns: no_columns,
        statements: v2,
    },
    Migration {
        version: 3,
        name: "commit rows; views of whole commits",
        columns: no_columns,
        statements: v3,
    },
    Migration {
        version: 4,
        name: "writer lease",
        columns: no_columns,
        statements: v4,
    },
    Migration {
        version: 5,
        name: "day rows; daily and monthly views over them",
        columns: no_columns,
        statements: v5,
    },
    Migration {
        version: 6,
        name: "writers' fences; views without fenced rows",
        columns: no_columns,
        statements: v6,
    },
    Migration {
        version: 7,
        name: "shards; leases per shard",
        columns: v7_columns,
        statements: v7,
    },
];

/// The migrations table, created before any migration.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS netwait_migrations \
     (version UInt32, name String) ENGINE = MergeTree() ORDER BY version";

/// Every cell's current state (its row of the latest commit that touched it), one row
/// per (day, line, interval), its figures as `cur_<field>`, with `filter` (e.g. `AND day >= ...`) applied before
/// grouping so that a query reads only the rows of its period.
pub fn cells_sql(reading: &Reading, filter: &str) -> String {
    latest_figures_sql(reading, kind::CELL, "day, line, interval_n", filter)
}

/// The current state of each day's figures (per line) that `filter` keeps: the same
/// columns as [`cells_sql`]'s but `interval_n`.
pub fn days_sql(reading: &Reading, filter: &str) -> String {
    latest_figures_sql(reading, kind::DAY, "day, line", filter)
}

/// How the current rows of figures (`cur_` columns, as [`cells_sql`] and [`days_sql`]
/// name them) of one figure combine: the maximum of a maximum, else the sum.
pub fn combined(column: &str) -> String {
    match column {
        "max_wait_ms" => format!("max(cur_{column})"),
        _ => format!("sum(cur_{column})"),
    }
}

/// The latest state (by `seq`) of each row of figures of `kind`, keyed by `keys`.
fn latest_figures_sql(reading: &Reading, kind: u8, keys: &str, filter: &str) -> String {
    let latest = FIGURE_COLUMNS
        .iter()
        .map(|c| format!("argMax({c}, seq) AS cur_{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {keys}, {latest} FROM netwait_log \
         WHERE kind = {kind} AND {} {filter} GROUP BY {}",
        reading.condition(),
        reading.grouped(keys)
    )
}

/// Every statement of every migration, in order (`netwait migrate --print-sql`).
pub fn all_statements() -> Vec<String> {
    let mut out = vec![MIGRATIONS_TABLE.to_string()];
    for m in &MIGRATIONS {
        out.extend((m.columns)().iter().map(NewColumn::statement));
        out.extend((m.statements)());
    }
    out
}
