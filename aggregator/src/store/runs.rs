//! The runs of a checkpoint: the dedupe keys and the call index of a long history, as
//! immutable key-table images (`domain::key_runs`) that a store keeps apart from the
//! checkpoint's parts, each written once. A checkpoint writes one new run per table
//! with the keys added since the last one (merged with the newest runs when those are
//! small next to it, so that their number stays small) and names the runs in its fold
//! part; the runs it no longer names are removed. So a checkpoint costs what is new,
//! and opening maps the runs instead of rebuilding tables of every key.
//!
//! A run that is missing, damaged (its CRC-32 fails) or not what the fold part says
//! makes the fold part unusable: the log is replayed, never a wrong figure.

use super::snapshot::{self, RunKind, RunMeta};
use super::{EventStore, LogPosition, PartWriter, RunId, StoreError};
use crate::domain::callbook::{CallBook, CallIndex, FoldState};
use crate::domain::dedupe::KeySet;
use crate::domain::key_runs::{FrozenTable, Layered, SlotValue, merged, write_image};
use crate::domain::key_table::KeyTable;
use std::borrow::Cow;
use std::sync::Arc;

/// Runs per table beyond which the newest are merged whatever their sizes (every new
/// key is looked up in each run).
const MAX_RUNS: usize = 12;
/// Largest merge made only to keep runs few (a merge builds its table in memory).
const MAX_MERGE_KEYS: usize = 1 << 22;

/// How many of the newest runs (`lens`, oldest first) a new run of `fresh` keys takes in:
/// those not more than twice as big as what is merged so far (size tiers, so a key is
/// rewritten a few times over a history, not at every checkpoint), within
/// [`MAX_MERGE_KEYS`] unless there are too many runs.
pub fn runs_to_merge(lens: &[usize], fresh: usize) -> usize {
    let mut total = fresh;
    let mut k = 0;
    while let Some(&next) = lens.len().checked_sub(k + 1).and_then(|i| lens.get(i)) {
        let crowded = lens.len() - k >= MAX_RUNS;
        let small = next <= 2 * total && total + next <= MAX_MERGE_KEYS;
        if !(crowded || small) {
            break;
        }
        total += next;
        k += 1;
    }
    k
}

/// The runs behind a book's tables, as its checkpoint names them, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSet {
    pub keys: Vec<RunMeta>,
    pub calls: Vec<RunMeta>,
}

impl RunSet {
    fn ids(&self) -> impl Iterator<Item = RunId> + '_ {
        self.keys.iter().chain(&self.calls).map(|r| r.id)
    }
}

/// The next checkpoint's runs of one table: the old ones kept, and the new one.
struct Plan<'a, V: Clone> {
    kept: Vec<RunMeta>,
    new: Option<(RunMeta, Cow<'a, KeyTable<V>>)>,
}

fn plan<'a, V: SlotValue>(
    layers: &'a Layered<V>,
    metas: &[RunMeta],
    kind: RunKind,
    id: RunId,
) -> Plan<'a, V> {
    let fresh = layers.fresh();
    if fresh.is_empty() {
        return Plan {
            kept: metas.to_vec(),
            new: None,
        };
    }
    let lens: Vec<usize> = layers.runs().iter().map(FrozenTable::len).collect();
    let kept = lens.len() - runs_to_merge(&lens, fresh.len());
    let table = if kept == lens.len() {
        Cow::Borrowed(fresh)
    } else {
        Cow::Owned(merged(&layers.runs()[kept..], fresh))
    };
    let meta = RunMeta {
        kind,
        id,
        keys: table.len() as u64,
        slots: table.slot_count() as u64,
    };
    Plan {
        kept: metas[..kept].to_vec(),
        new: Some((meta, table)),
    }
}

impl<V: Clone> Plan<'_, V> {
    fn named(&self) -> Vec<RunMeta> {
        let new = self.new.as_ref().map(|(m, _)| *m);
        self.kept.iter().copied().chain(new).collect()
    }
}

/// Writes the checkpoint of `book` at `position`, whose tables are held by `runs` and
/// their fresh keys; returns the runs it names. The book is not changed: see [`freeze`].
pub fn save(
    store: &mut dyn EventStore,
    book: &CallBook,
    runs: &RunSet,
    position: LogPosition,
) -> Result<RunSet, StoreError> {
    let parts = book.parts();
    // Unique: checkpoints are made at growing positions, two runs at most each.
    let id = |kind: RunKind| position << 1 | kind as u64;
    let keys = plan(
        parts.seen.layers(),
        &runs.keys,
        RunKind::Keys,
        id(RunKind::Keys),
    );
    let calls = plan(parts.index, &runs.calls, RunKind::Calls, id(RunKind::Calls));
    let named = RunSet {
        keys: keys.named(),
        calls: calls.named(),
    };
    let all: Vec<RunMeta> = named.keys.iter().chain(&named.calls).copied().collect();
    let key_image = keys.new.as_ref().map(|(m, t)| {
        (m.id, move |w: &mut dyn std::io::Write| {
            write_image(t, w).map(drop)
        })
    });
    let call_image = calls.new.as_ref().map(|(m, t)| {
        (m.id, move |w: &mut dyn std::io::Write| {
            write_image(t, w).map(drop)
        })
    });
    let mut writers: Vec<(RunId, PartWriter<'_>)> = Vec::new();
    if let Some((id, w)) = &key_image {
        writers.push((*id, w));
    }
    if let Some((id, w)) = &call_image {
        writers.push((*id, w));
    }
    store.save_checkpoint(
        position,
        &|w| snapshot::write_query(&parts, w),
        &|w| snapshot::write_fold(&all, parts.dead_letters, w),
        &writers,
    )?;
    Ok(named)
}

/// After [`save`]: maps the runs it named into the book (its fresh keys leave memory) and
/// removes the runs no longer named. Returns the runs now behind the book; when they
/// cannot be mapped the book stays as it was (correct, only bigger), and so do its runs.
pub fn freeze(
    store: &mut dyn EventStore,
    book: &mut CallBook,
    old: RunSet,
    named: RunSet,
) -> RunSet {
    let mapped = open(store, &named.keys, false)
        .and_then(|keys| Ok(keys.zip(open(store, &named.calls, false)?)));
    let behind = match mapped {
        Ok(Some((keys, calls))) => {
            book.freeze(keys, calls);
            named.clone()
        }
        Ok(None) | Err(_) => {
            tracing::warn!("the checkpoint's runs cannot be mapped; keeping the keys in memory");
            old.clone()
        }
    };
    // The book's own runs must stay until a checkpoint names others.
    let keep: Vec<RunId> = named.ids().chain(behind.ids()).collect();
    if let Err(e) = store.retain_runs(&keep) {
        tracing::warn!(error = %e, "cannot remove the runs no checkpoint names");
    }
    behind
}

/// The runs of `metas`, mapped, when each is there whole and as named.
fn open<V: SlotValue>(
    store: &mut dyn EventStore,
    metas: &[RunMeta],
    verify: bool,
) -> Result<Option<Vec<FrozenTable<V>>>, StoreError> {
    let mut tables = Vec::with_capacity(metas.len());
    for m in metas {
        let Some(bytes) = store.load_run(m.id, verify)? else {
            return Ok(None);
        };
        match FrozenTable::<V>::open(Arc::new(bytes)) {
            Some(t) if t.len() as u64 == m.keys && t.slot_count() as u64 == m.slots => {
                tables.push(t);
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(tables))
}

/// What folding needs, from a checkpoint's fold part and the runs it names (each
/// checked whole); `None` when any of it is damaged, missing or of an older version.
pub fn load(
    store: &mut dyn EventStore,
    fold: &[u8],
) -> Result<Option<(FoldState, RunSet)>, StoreError> {
    let Some((metas, dead)) = snapshot::decode_fold(fold) else {
        return Ok(None);
    };
    let (keys, calls): (Vec<RunMeta>, Vec<RunMeta>) =
        metas.into_iter().partition(|m| m.kind == RunKind::Keys);
    let Some(key_runs) = open::<()>(store, &keys, true)? else {
        return Ok(None);
    };
    let Some(call_runs) = open::<u32>(store, &calls, true)? else {
        return Ok(None);
    };
    let state = (
        KeySet::with_runs(key_runs),
        CallIndex::with_runs(call_runs),
        dead,
    );
    Ok(Some((state, RunSet { keys, calls })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_merge_and_big_ones_stay() {
        assert_eq!(runs_to_merge(&[], 10), 0);
        assert_eq!(runs_to_merge(&[1_000_000], 3_000), 0);
        assert_eq!(runs_to_merge(&[1_000_000, 5_000], 3_000), 1);
        assert_eq!(runs_to_merge(&[9_000, 5_000], 3_000), 2);
        // Too big to merge for tiers' sake, but too many runs.
        let many = vec![MAX_MERGE_KEYS; MAX_RUNS];
        assert_eq!(runs_to_merge(&many, 1), 1);
        assert_eq!(runs_to_merge(&many[1..], 1), 0);
    }
}
