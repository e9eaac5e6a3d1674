//! The state of a database's log as a reader finds it just before a report: each shard's
//! last commit, and the seqs at or below it that do not count (void commits, fences).
//! A report's queries put it on their rows as literals ([`LogState::reading`]):
//! ClickHouse 18.16 spends more on the subqueries and the lambda of the self-contained
//! condition ([`crate::schema::committed`]) than on a year's day rows (BENCHMARKS.md,
//! "Reports read the log's state first"). Every query of one report reads the same
//! commits, too.

use crate::answers::quote;
use crate::conn::{Conn, Error};
use crate::schema::{Reading, kind, not_void};
use crate::shard::Layout;
use clickhouse::Row;
use serde::Deserialize;

/// Past this many ranges of seqs that do not count, the condition reads them with
/// subqueries of its own: a literal list costs every row of a query a test per range,
/// and its text grows with each writer's fence.
const LITERAL_RANGES: usize = 32;

#[derive(Debug, Row, Deserialize)]
struct LastCommit {
    shard: String,
    seq: u64,
}

#[derive(Debug, Row, Deserialize)]
struct Uncounted {
    shard: String,
    from_seq: u64,
    to_seq: u64,
}

/// A shard's part of a [`LogState`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShardState {
    /// `''` for the whole log's layout (whose condition names no shard).
    shard: String,
    last_commit: u64,
    /// Inclusive ranges of seqs at or below `last_commit` that do not count: sorted,
    /// apart from each other.
    uncounted: Vec<(u64, u64)>,
}

/// Which rows of a database's log counted when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    layout: Layout,
    shards: Vec<ShardState>,
}

impl LogState {
    /// The log's state now. The commits are read first: a void commit or a fence below
    /// a commit is written before it, so the ranges read after the commits hold every
    /// one below them.
    pub fn read(conn: &Conn, layout: Layout) -> Result<Self, Error> {
        let commits: Vec<LastCommit> = conn
            .block_on(conn.client.query(&last_commits_sql()).fetch_all())
            .map_err(|e| conn.error(e))?;
        let uncounted: Vec<Uncounted> = conn
            .block_on(conn.client.query(&uncounted_sql()).fetch_all())
            .map_err(|e| conn.error(e))?;
        Ok(Self::of(
            layout,
            commits.into_iter().map(|c| (c.shard, c.seq)),
            uncounted
                .into_iter()
                .map(|u| (u.shard, u.from_seq, u.to_seq)),
        ))
    }

    /// The state of each shard's last commits and uncounted ranges (a whole log's
    /// layout takes them all as one shard's, as its condition does).
    fn of(
        layout: Layout,
        commits: impl IntoIterator<Item = (String, u64)>,
        uncounted: impl IntoIterator<Item = (String, u64, u64)>,
    ) -> Self {
        let name = |shard: String| match layout {
            Layout::Whole => String::new(),
            Layout::Shards => shard,
        };
        let mut last = std::collections::BTreeMap::<String, u64>::new();
        for (shard, seq) in commits {
            let m = last.entry(name(shard)).or_default();
            *m = (*m).max(seq);
        }
        let mut ranges = std::collections::BTreeMap::<String, Vec<(u64, u64)>>::new();
        for (shard, from, to) in uncounted {
            let shard = name(shard);
            // A range above the shard's last commit leaves out nothing that counts.
            if let Some(&last) = last.get(&shard)
                && from <= last
            {
                ranges.entry(shard).or_default().push((from, to.min(last)));
            }
        }
        let shards = last
            .into_iter()
            .map(|(shard, last_commit)| {
                let uncounted = merged(ranges.remove(&shard).unwrap_or_default());
                ShardState {
                    shard,
                    last_commit,
                    uncounted,
                }
            })
            .collect();
        Self { layout, shards }
    }

    /// The condition on the rows that counted, as literals (the uncounted ranges read
    /// by subqueries when there are many: [`LITERAL_RANGES`]).
    pub fn reading(&self) -> Reading {
        let many = self.shards.iter().map(|s| s.uncounted.len()).sum::<usize>() > LITERAL_RANGES;
        let of_shard = |s: &ShardState| {
            let mut c = format!("seq <= {}", s.last_commit);
            if !many {
                for &(from, to) in &s.uncounted {
                    match from == to {
                        true => c.push_str(&format!(" AND seq != {from}")),
                        false => c.push_str(&format!(" AND NOT (seq >= {from} AND seq <= {to})")),
                    }
                }
            }
            c
        };
        let mut condition = match (self.layout, self.shards.as_slice()) {
            (_, []) => "0".to_owned(),
            (Layout::Whole, [s, ..]) => of_shard(s),
            (Layout::Shards, shards) => {
                let arms: Vec<String> = shards
                    .iter()
                    // (Quoted: the names are read from rows, whatever wrote them.)
                    .map(|s| format!("shard = {}, {}", quote(&s.shard), of_shard(s)))
                    .collect();
                format!("multiIf({}, 0)", arms.join(", "))
            }
        };
        if many {
            condition = format!("{condition} AND {}", not_void(self.layout));
        }
        Reading::with(self.layout, condition)
    }
}

/// Each shard's last commit.
pub fn last_commits_sql() -> String {
    format!(
        "SELECT shard, max(seq) AS seq FROM netwait_log WHERE kind = {} GROUP BY shard",
        kind::COMMIT
    )
}

/// The ranges of seqs that do not count: each void commit's, each fence's.
pub fn uncounted_sql() -> String {
    format!(
        "SELECT shard, seq AS from_seq, if(kind = {}, source_position, seq) AS to_seq \
         FROM netwait_log WHERE kind IN ({}, {})",
        kind::FENCE,
        kind::VOID,
        kind::FENCE
    )
}

/// `ranges` sorted and merged where they overlap or touch.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        match out.last_mut() {
            Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commits(c: &[(&str, u64)]) -> Vec<(String, u64)> {
        c.iter().map(|&(s, q)| (s.to_owned(), q)).collect()
    }

    fn ranges(r: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
        r.iter().map(|&(s, a, b)| (s.to_owned(), a, b)).collect()
    }

    #[test]
    fn a_whole_log_counts_up_to_its_last_commit_but_its_void_and_fenced_seqs() {
        let state = LogState::of(
            Layout::Whole,
            commits(&[("", 4), ("", 9)]),
            ranges(&[
                ("", 5, 5),
                ("", 6, 7),
                ("", 2, 2),
                ("", 12, 20),
                ("", 8, 30),
            ]),
        );
        assert_eq!(
            state.reading().condition(),
            "seq <= 9 AND seq != 2 AND NOT (seq >= 5 AND seq <= 9)"
        );
        assert_eq!(
            LogState::of(Layout::Whole, [], ranges(&[("", 1, 3)]))
                .reading()
                .condition(),
            "0"
        );
    }

    #[test]
    fn shards_count_each_shard_by_its_own_commits() {
        let state = LogState::of(
            Layout::Shards,
            commits(&[("t/1", 3), ("t/0", 7)]),
            ranges(&[("t/0", 2, 4), ("t/1", 5, 9), ("t/2", 1, 1)]),
        );
        assert_eq!(
            state.reading().condition(),
            "multiIf(shard = 't/0', seq <= 7 AND NOT (seq >= 2 AND seq <= 4), \
             shard = 't/1', seq <= 3, 0)"
        );
        assert_eq!(state.reading().layout(), Layout::Shards);
        let odd = LogState::of(Layout::Shards, commits(&[("a'b", 1)]), []);
        assert_eq!(
            odd.reading().condition(),
            "multiIf(shard = 'a\\'b', seq <= 1, 0)"
        );
    }

    #[test]
    fn many_ranges_are_read_by_the_query_itself() {
        let many: Vec<_> = (0..=LITERAL_RANGES as u64)
            .map(|i| (String::new(), 10 * i, 10 * i + 1))
            .collect();
        let state = LogState::of(Layout::Whole, commits(&[("", 1000)]), many);
        assert_eq!(
            state.reading().condition(),
            format!("seq <= 1000 AND {}", not_void(Layout::Whole))
        );
    }
}
