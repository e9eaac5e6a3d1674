//! The dead letters of a store, each with its id, and which of them were replayed: the
//! embedded store's (its log, and the file `DATA/dead-letters-replayed`) and the
//! ClickHouse store's (the records of `netwait_log`, the marks of `netwait_meta`: see
//! `netwait_clickhouse::replays`). Listing only reads: beside a running server or
//! aggregator, and without taking the ClickHouse writer lease.

use crate::cli::StoreArgs;
use crate::cli::config::{Use, open_engine};
use anyhow::Context;
use netwait_aggregator::domain::dedupe::{DedupeKey, KeyHasher};
use netwait_aggregator::engine::{Engine, dead_letter_key};
use netwait_aggregator::store::record::{DeadLetter, Record};
use netwait_clickhouse::{Conn, Target};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

/// The embedded store's marks: one line a replayed dead letter, `<id> <epoch ms>`.
pub const MARKS_FILE: &str = "dead-letters-replayed";

/// A dead letter's identity in its store (keyed with the store's secret, as its dedupe):
/// 32 hex digits.
pub fn id_text(id: DedupeKey) -> String {
    format!("{id:032x}")
}

pub fn parse_id(text: &str) -> Option<DedupeKey> {
    (text.len() == 32)
        .then(|| DedupeKey::from_str_radix(text, 16).ok())
        .flatten()
}

/// Where the marks of replayed dead letters are kept.
pub enum Marks {
    File(PathBuf),
    ClickHouse(Box<Conn>),
}

impl Marks {
    /// The marks of `store` (a connection of its own to a ClickHouse store).
    pub fn of(store: &StoreArgs) -> anyhow::Result<Self> {
        Ok(match &store.clickhouse {
            Some(target) => Self::ClickHouse(Box::new(connect(target)?)),
            None => Self::File(store.data.join(MARKS_FILE)),
        })
    }

    /// Replayed dead letters: when each was first replayed (epoch ms).
    pub fn load(&self) -> anyhow::Result<HashMap<DedupeKey, i64>> {
        let mut out = HashMap::new();
        let mut add = |id: &str, at: i64| {
            if let Some(id) = parse_id(id) {
                let first = out.entry(id).or_insert(at);
                *first = (*first).min(at);
            }
        };
        match self {
            Self::File(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                for line in text.lines() {
                    // A line cut by a crash mid-write has no time: not a mark.
                    if let Some((id, at)) = line.split_once(' ')
                        && let Ok(at) = at.parse()
                    {
                        add(id, at);
                    }
                }
            }
            Self::ClickHouse(conn) => {
                for (id, at) in netwait_clickhouse::replays::replayed(conn)? {
                    add(&id, at);
                }
            }
        }
        Ok(out)
    }

    /// Marks `ids` replayed at `at_ms` (durable on return).
    pub fn add(&self, ids: &[DedupeKey], at_ms: i64) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(|&id| id_text(id)).collect();
        match self {
            Self::File(path) => {
                let mut text = String::with_capacity(ids.len() * 48);
                for id in &ids {
                    text.push_str(&format!("{id} {at_ms}\n"));
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                f.write_all(text.as_bytes())
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Self::ClickHouse(conn) => {
                netwait_clickhouse::replays::mark_replayed(conn, &ids, at_ms)?
            }
        }
        Ok(())
    }
}

fn connect(target: &Target) -> anyhow::Result<Conn> {
    let conn = Conn::connect(target.clone())
        .with_context(|| format!("connecting to ClickHouse at {}", target.url))?;
    conn.require_schema()?;
    Ok(conn)
}

/// A store's dead letters, read only.
pub enum Letters {
    Embedded(Box<Engine>),
    ClickHouse(Box<Conn>),
}

impl Letters {
    pub fn open(store: &StoreArgs) -> anyhow::Result<Self> {
        Ok(match &store.clickhouse {
            Some(target) => Self::ClickHouse(Box::new(connect(target)?)),
            None => Self::Embedded(Box::new(open_engine(store, Use::Queries)?.0)),
        })
    }

    /// Visits every dead letter, oldest first, each once, with its id.
    pub fn each(
        &mut self,
        visit: &mut dyn FnMut(&DeadLetter<'_>, DedupeKey),
    ) -> anyhow::Result<()> {
        match self {
            Self::Embedded(engine) => each_of_engine(engine, visit),
            Self::ClickHouse(conn) => {
                // No keys: nothing was ever written.
                let Some(secrets) = netwait_clickhouse::store::read_secrets(conn)? else {
                    return Ok(());
                };
                let hasher = KeyHasher::new(secrets.dedupe);
                let mut shown = HashSet::new();
                // Shard by shard (each its own numbering of commits), the oldest first
                // within each.
                for shard in netwait_clickhouse::store::shards(conn)? {
                    let end = netwait_clickhouse::store::last_commit(conn, &shard)?;
                    netwait_clickhouse::store::visit_records(conn, &shard, 0, end, &mut |rec| {
                        if let Record::DeadLetter(d) = rec {
                            let id = dead_letter_key(&hasher, &d);
                            if shown.insert(id) {
                                visit(&d, id);
                            }
                        }
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// [`Letters::each`] on an open engine (either store).
pub fn each_of_engine(
    engine: &mut Engine,
    visit: &mut dyn FnMut(&DeadLetter<'_>, DedupeKey),
) -> anyhow::Result<()> {
    let hasher = engine.key_hasher();
    engine.dead_letters(&mut |d| visit(d, dead_letter_key(&hasher, d)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_in_a_file_survive_a_torn_line_and_keep_the_first_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marks = Marks::File(dir.path().join(MARKS_FILE));
        assert!(marks.load().expect("no file").is_empty());
        marks.add(&[1, 0xabc], 2_000).expect("add");
        marks.add(&[1], 1_000).expect("add again");
        let path = dir.path().join(MARKS_FILE);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(&id_text(7)[..20]);
        std::fs::write(&path, text).expect("tear");
        let loaded = marks.load().expect("load");
        assert_eq!(loaded, HashMap::from([(1, 1_000), (0xabc, 2_000)]));
        assert_eq!(parse_id(&id_text(u128::MAX)), Some(u128::MAX));
        assert_eq!(parse_id("xyz"), None);
    }
}
