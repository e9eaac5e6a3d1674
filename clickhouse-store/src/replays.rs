//! Which dead letters were replayed (`netwait deadletter replay`): a row of
//! `netwait_meta` per dead letter, keyed `dead_letter_replayed:<id>` (its identity, 32
//! hex digits) with the time of the replay (epoch ms) as its value. The dead letters
//! themselves are never changed. A mark written twice (two replays racing, or a replay
//! whose answer was lost, retried) reads as the first.

use crate::conn::{Conn, Error};
use clickhouse::Row;
use serde::Serialize;

/// The key prefix of a mark.
pub const PREFIX: &str = "dead_letter_replayed:";

#[derive(Debug, Clone, Row, Serialize)]
struct MetaRow {
    key: String,
    value: String,
}

/// Every mark: the dead letter's id and the time of its first replay (epoch ms).
pub fn replayed_sql() -> String {
    let n = PREFIX.len();
    format!(
        "SELECT substring(key, {}, 64), min(toInt64(value)) FROM netwait_meta \
         WHERE substring(key, 1, {n}) = '{PREFIX}' GROUP BY key ORDER BY key",
        n + 1
    )
}

/// The marks, by id.
pub fn replayed(conn: &Conn) -> Result<Vec<(String, i64)>, Error> {
    conn.retrying(
        "reading the replayed dead letters",
        |conn| {
            conn.block_on(conn.client.query(&replayed_sql()).fetch_all())
                .map_err(|e| conn.error(e))
        },
        |_| Ok(None),
    )
}

/// Marks the dead letters of `ids` replayed at `at_ms` (one insert; retried while the
/// server is away: a mark that lands twice reads as one).
pub fn mark_replayed(conn: &Conn, ids: &[String], at_ms: i64) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<MetaRow> = ids
        .iter()
        .map(|id| MetaRow {
            key: format!("{PREFIX}{id}"),
            value: at_ms.to_string(),
        })
        .collect();
    conn.retrying(
        "marking dead letters replayed",
        |conn| {
            conn.block_on(async {
                let mut insert = conn.client.insert::<MetaRow>("netwait_meta").await?;
                for row in &rows {
                    insert.write(row).await?;
                }
                insert.end().await
            })
            .map_err(|e| conn.error(e))
        },
        |_| Ok(None),
    )
}
