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
//!
//! The call states are runs too: packs of segments, one segment per chunk of states
//! (`domain::state_chunks`). A checkpoint writes one pack with the chunks changed since
//! the last one, and the query part names the pack of every chunk; a pack is removed
//! once no chunk is in it, and rewritten (its chunks moved to the new pack) once less
//! than half of what it holds is still named. Opening maps the packs and decodes a
//! chunk when it is first read.
//!
//! The per-interval cells, when kept, are packs of days the same way (one segment per
//! UTC day of cells, the query part naming the pack of each day), written and compacted
//! by the same rules; opening maps them and decodes a day when it is first needed.

use super::snapshot::{self, RunKind, RunMeta, Segment, StoredCells};
use super::{EventStore, LogPosition, PartBytes, PartWriter, RunId, StoreError};
use crate::domain::call::CallState;
use crate::domain::callbook::{CallBook, CallIndex, FoldState};
use crate::domain::cells::{Cells, DaySource};
use crate::domain::dedupe::KeySet;
use crate::domain::key_runs::{FrozenTable, Layered, SlotValue, merged, write_image};
use crate::domain::key_table::KeyTable;
use crate::domain::state_chunks::{ChunkDamaged, ChunkSource};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Runs per table beyond which the newest are merged whatever their sizes, up to
/// [`MAX_CROWDED_MERGE_KEYS`] (every new key is looked up in each run: in its filter,
/// once the run is probed often, see `key_runs`).
const MAX_RUNS: usize = 32;
/// Largest merge made only to keep runs few (a merge builds its table in memory).
const MAX_MERGE_KEYS: usize = 1 << 22;
/// Largest merge made because there are too many runs: a long-running writer's memory
/// stays bounded whatever the history (some 300 MB for the merged table at most).
const MAX_CROWDED_MERGE_KEYS: usize = 4 * MAX_MERGE_KEYS;

/// How many of the newest runs (`lens`, oldest first) a new run of `fresh` keys takes in:
/// those not more than twice as big as what is merged so far (size tiers, so a key is
/// rewritten a few times over a history, not at every checkpoint), within
/// [`MAX_MERGE_KEYS`], or within [`MAX_CROWDED_MERGE_KEYS`] when there are too many runs.
pub fn runs_to_merge(lens: &[usize], fresh: usize) -> usize {
    let mut total = fresh;
    let mut k = 0;
    while let Some(&next) = lens.len().checked_sub(k + 1).and_then(|i| lens.get(i)) {
        let crowded = lens.len() - k >= MAX_RUNS && total + next <= MAX_CROWDED_MERGE_KEYS;
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
    /// The packs of call states.
    pub states: Vec<RunMeta>,
    /// The pack of each chunk of states, in chunk order.
    pub chunk_packs: Vec<RunId>,
    /// The packs of days of cells.
    pub cells: Vec<RunMeta>,
    /// The pack of each day of cells, by day.
    pub day_packs: Vec<(i64, RunId)>,
}

impl RunSet {
    fn ids(&self) -> impl Iterator<Item = RunId> + '_ {
        self.keys
            .iter()
            .chain(&self.calls)
            .chain(&self.states)
            .chain(&self.cells)
            .map(|r| r.id)
    }

    fn day_pack(&self, day: i64) -> Option<RunId> {
        let at = self
            .day_packs
            .binary_search_by_key(&day, |&(d, _)| d)
            .ok()?;
        Some(self.day_packs[at].1)
    }
}

/// Packs mapped by id, each with its table of segments.
type Packs = HashMap<RunId, (PartBytes, Vec<(usize, Segment)>)>;

/// Maps pack `id` into `packs` (once) and says whether it holds segment `number`; `false`
/// when it is missing or not a pack.
fn map_pack(
    store: &mut dyn EventStore,
    packs: &mut Packs,
    id: RunId,
    number: usize,
) -> Result<bool, StoreError> {
    if let std::collections::hash_map::Entry::Vacant(slot) = packs.entry(id) {
        let Some(bytes) = store.load_run(id, false)? else {
            return Ok(false);
        };
        let Some(table) = snapshot::pack_table(&bytes) else {
            return Ok(false);
        };
        slot.insert((bytes, table));
    }
    Ok(packs
        .get(&id)
        .is_some_and(|(_, t)| t.binary_search_by_key(&number, |&(k, _)| k).is_ok()))
}

/// Segment `number` of pack `id`, when its CRC holds.
fn segment(packs: &Packs, id: RunId, number: usize) -> Option<(&PartBytes, Segment)> {
    let (bytes, table) = packs.get(&id)?;
    let at = table.binary_search_by_key(&number, |&(k, _)| k).ok()?;
    Some((bytes, table[at].1))
}

/// A checkpoint's call states, read from its packs (mapped) when a chunk is first read.
pub struct PackedStates {
    packs: Packs,
    chunk_packs: Vec<RunId>,
    lines: usize,
}

impl ChunkSource for PackedStates {
    fn load(&self, c: usize, calls: usize) -> Option<Vec<CallState>> {
        let (bytes, seg) = segment(&self.packs, *self.chunk_packs.get(c)?, c)?;
        snapshot::decode_segment(bytes, seg, calls, self.lines)
    }
}

impl PackedStates {
    /// Whether these are the packs of `chunks` chunks, the segment of each there and
    /// holding its CRC: what a query-only open checks, which then decodes a chunk only
    /// when a query reads it.
    pub fn whole(&self, chunks: usize) -> bool {
        self.chunk_packs.len() == chunks
            && (0..chunks).all(|c| {
                segment(&self.packs, self.chunk_packs[c], c)
                    .is_some_and(|(bytes, seg)| snapshot::segment_bytes(bytes, seg).is_some())
            })
    }
}

/// The packs named by `chunk_packs` (for a book of `lines` lines), mapped (each segment
/// is checked when decoded); `None` when one is missing or lacks a chunk.
pub fn open_states(
    store: &mut dyn EventStore,
    chunk_packs: &[RunId],
    lines: usize,
) -> Result<Option<PackedStates>, StoreError> {
    let mut packs = HashMap::new();
    for (c, &id) in chunk_packs.iter().enumerate() {
        if !map_pack(store, &mut packs, id, c)? {
            return Ok(None);
        }
    }
    Ok(Some(PackedStates {
        packs,
        chunk_packs: chunk_packs.to_vec(),
        lines,
    }))
}

/// A checkpoint's days of cells, read from their packs (mapped) when a day is first
/// needed.
pub struct PackedDays {
    packs: Packs,
    runs: RunSet,
    calls: usize,
}

impl DaySource for PackedDays {
    fn day(&self, day: i64) -> Option<&[u8]> {
        let number = snapshot::day_number(day);
        let (bytes, seg) = segment(&self.packs, self.runs.day_pack(day)?, number)?;
        snapshot::segment_bytes(bytes, seg)
    }

    fn calls(&self) -> usize {
        self.calls
    }
}

/// The packs of the days of `cells` (of a book of `calls` calls), mapped (each day is
/// checked when read); `None` when one is missing or lacks a day.
pub fn open_cells(
    store: &mut dyn EventStore,
    cells: &StoredCells,
    calls: usize,
) -> Result<Option<PackedDays>, StoreError> {
    let day_packs: Vec<(i64, RunId)> = cells
        .head
        .days
        .iter()
        .copied()
        .zip(cells.packs.iter().copied())
        .collect();
    open_days(store, &day_packs, calls)
}

/// The packs of `day_packs` (each day with its pack, of a book of `calls` calls),
/// mapped; `None` when one is missing or lacks its day.
pub fn open_days(
    store: &mut dyn EventStore,
    day_packs: &[(i64, RunId)],
    calls: usize,
) -> Result<Option<PackedDays>, StoreError> {
    let mut packs = HashMap::new();
    for &(day, id) in day_packs {
        if !map_pack(store, &mut packs, id, snapshot::day_number(day))? {
            return Ok(None);
        }
    }
    let runs = RunSet {
        day_packs: day_packs.to_vec(),
        ..RunSet::default()
    };
    Ok(Some(PackedDays { packs, runs, calls }))
}

/// Before a checkpoint: the chunks (and days of cells) of each pack of which less than
/// half is still named are counted as changed, so that the new pack takes them in and
/// the old one goes.
pub fn compact(
    book: &mut CallBook,
    cells: Option<&mut Cells>,
    runs: &RunSet,
) -> Result<(), ChunkDamaged> {
    for c in sparse(&runs.states, runs.chunk_packs.iter().copied().enumerate()) {
        book.rewrite_states(c)?;
    }
    if let Some(cells) = cells {
        for d in sparse(&runs.cells, runs.day_packs.iter().copied()) {
            cells.rewrite_day(d);
        }
    }
    Ok(())
}

/// The members [`compact`] counts as changed: those of each of `packs` of which less
/// than half is still named (`named`: each member, chunk or day, with its pack).
fn sparse<T: Copy>(packs: &[RunMeta], named: impl Iterator<Item = (T, RunId)> + Clone) -> Vec<T> {
    packs
        .iter()
        .flat_map(|pack| {
            let members: Vec<T> = named
                .clone()
                .filter(|&(_, id)| id == pack.id)
                .map(|(m, _)| m)
                .collect();
            let rewrite = (members.len() as u64) * 2 < pack.keys;
            members.into_iter().filter(move |_| rewrite)
        })
        .collect()
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

/// The packs of `old` still `named`, then the new pack (kind, id, segments written in
/// it) when it holds any.
fn packs_named(
    old: &[RunMeta],
    named: impl Fn(RunId) -> bool,
    (kind, id, written): (RunKind, RunId, usize),
) -> Vec<RunMeta> {
    let mut packs: Vec<RunMeta> = old.iter().filter(|p| named(p.id)).copied().collect();
    if written > 0 {
        packs.push(RunMeta {
            kind,
            id,
            keys: written as u64,
            slots: 0,
        });
    }
    packs
}

/// Writes the checkpoint of `book` at `position`, whose tables are held by `runs` and
/// their fresh keys, and whose states by the packs of `runs` and the chunks changed
/// since (see [`compact`], to call first); returns the runs it names. The book is not
/// changed: see [`freeze`].
pub fn save(
    store: &mut dyn EventStore,
    book: &CallBook,
    cells: Option<&Cells>,
    runs: &RunSet,
    position: LogPosition,
) -> Result<RunSet, StoreError> {
    let parts = book.parts();
    // Unique: checkpoints are made at growing positions, three runs at most each (and
    // the ids of stores written before packs, `position << 1 | kind`, are all smaller).
    let id = |kind: RunKind| position << 2 | kind as u64;
    let keys = plan(
        parts.seen.layers(),
        &runs.keys,
        RunKind::Keys,
        id(RunKind::Keys),
    );
    let calls = plan(parts.index, &runs.calls, RunKind::Calls, id(RunKind::Calls));
    let dirty = parts.states.dirty();
    let pack_id = id(RunKind::States);
    let mut chunk_packs = runs.chunk_packs.clone();
    chunk_packs.resize(parts.states.chunk_count(), pack_id);
    for &c in &dirty {
        chunk_packs[c] = pack_id;
    }
    let states = packs_named(
        &runs.states,
        |id| chunk_packs.contains(&id),
        (RunKind::States, pack_id, dirty.len()),
    );
    // The days of cells: those changed (or not in a pack yet) go to a new pack.
    let head = cells.map(Cells::head);
    let cells_id = id(RunKind::Cells);
    let mut new_days = Vec::new();
    let mut day_packs = Vec::new();
    if let (Some(cells), Some(head)) = (cells, &head) {
        let dirty: std::collections::BTreeSet<i64> = cells.dirty_days().into_iter().collect();
        for &day in &head.days {
            match runs.day_pack(day) {
                Some(id) if !dirty.contains(&day) => day_packs.push((day, id)),
                _ => {
                    new_days.push(day);
                    day_packs.push((day, cells_id));
                }
            }
        }
    }
    let cell_packs = packs_named(
        &runs.cells,
        |id| day_packs.iter().any(|&(_, d)| d == id),
        (RunKind::Cells, cells_id, new_days.len()),
    );
    let stored_cells = head.map(|head| snapshot::StoredCells {
        packs: day_packs.iter().map(|&(_, id)| id).collect(),
        head,
    });
    let named = RunSet {
        keys: keys.named(),
        calls: calls.named(),
        states,
        chunk_packs,
        cells: cell_packs,
        day_packs,
    };
    let all: Vec<RunMeta> = named
        .keys
        .iter()
        .chain(&named.calls)
        .chain(&named.states)
        .chain(&named.cells)
        .copied()
        .collect();
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
    let pack = |w: &mut dyn std::io::Write| {
        let chunks = dirty.iter().map(|&c| (c, parts.states.chunk(c)));
        snapshot::write_pack(chunks, w)
    };
    let cells_pack = |w: &mut dyn std::io::Write| match cells {
        Some(cells) => snapshot::write_cells_pack(cells, &new_days, w),
        None => Ok(()),
    };
    let mut writers: Vec<(RunId, PartWriter<'_>)> = Vec::new();
    if let Some((id, w)) = &key_image {
        writers.push((*id, w));
    }
    if let Some((id, w)) = &call_image {
        writers.push((*id, w));
    }
    if !dirty.is_empty() {
        writers.push((pack_id, &pack));
    }
    if !new_days.is_empty() {
        writers.push((cells_id, &cells_pack));
    }
    store.save_checkpoint(
        position,
        &|w| {
            snapshot::write_query(
                parts.newest_ts,
                parts.lines,
                parts.states.len(),
                &named.chunk_packs,
                stored_cells.as_ref(),
                w,
            )
        },
        &|w| snapshot::write_fold(&all, parts.dead_letters, w),
        &writers,
    )?;
    Ok(named)
}

/// After [`save`]: maps the runs it named into the book (its fresh keys leave memory) and
/// removes the runs no longer named. Returns the runs now behind the book; when they
/// cannot be mapped the book's tables stay as they were (correct, only bigger), and so
/// do their runs. (The book's states are what the checkpoint wrote, whatever happens.)
pub fn freeze(
    store: &mut dyn EventStore,
    book: &mut CallBook,
    old: RunSet,
    named: RunSet,
) -> RunSet {
    book.states_checkpointed();
    let mapped = open(store, &named.keys, false)
        .and_then(|keys| Ok(keys.zip(open(store, &named.calls, false)?)));
    let behind = match mapped {
        Ok(Some((keys, calls))) => {
            book.freeze(keys, calls);
            named.clone()
        }
        Ok(None) | Err(_) => {
            tracing::warn!("the checkpoint's runs cannot be mapped; keeping the keys in memory");
            RunSet {
                keys: old.keys.clone(),
                calls: old.calls.clone(),
                ..named.clone()
            }
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

/// What folding needs, from a checkpoint's fold part and the runs it names, with the
/// packs of the states (`chunk_packs`, from the query part: see [`open_states`]); every
/// run is checked whole first (at once: [`EventStore::verify_runs`]), so that nothing
/// read from them later can be damaged. `None` when any of it is damaged, missing or of
/// an older version.
pub fn load(
    store: &mut dyn EventStore,
    fold: &[u8],
    chunk_packs: &[RunId],
    cells: Option<&StoredCells>,
) -> Result<Option<(FoldState, RunSet)>, StoreError> {
    let Some((metas, dead)) = snapshot::decode_fold(fold) else {
        return Ok(None);
    };
    let day_packs: Vec<(i64, RunId)> = cells
        .map(|c| {
            c.head
                .days
                .iter()
                .copied()
                .zip(c.packs.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    let mut ids: Vec<RunId> = metas
        .iter()
        .map(|m| m.id)
        .chain(chunk_packs.iter().copied())
        .chain(day_packs.iter().map(|&(_, id)| id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if !store.verify_runs(&ids)? {
        return Ok(None);
    }
    let of = |kind| metas.iter().filter(|m| m.kind == kind).copied().collect();
    let (keys, calls, states): (Vec<RunMeta>, Vec<RunMeta>, Vec<RunMeta>) =
        (of(RunKind::Keys), of(RunKind::Calls), of(RunKind::States));
    let cell_packs: Vec<RunMeta> = of(RunKind::Cells);
    let Some(key_runs) = open::<()>(store, &keys, false)? else {
        return Ok(None);
    };
    let Some(call_runs) = open::<u32>(store, &calls, false)? else {
        return Ok(None);
    };
    let state = (
        KeySet::with_runs(key_runs),
        CallIndex::with_runs(call_runs),
        dead,
    );
    let runs = RunSet {
        keys,
        calls,
        states,
        chunk_packs: chunk_packs.to_vec(),
        cells: cell_packs,
        day_packs,
    };
    Ok(Some((state, runs)))
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
        // Crowded, but a merge stays within its bound: memory does not grow with history.
        let huge = vec![MAX_CROWDED_MERGE_KEYS; MAX_RUNS + 5];
        assert_eq!(runs_to_merge(&huge, 1), 0);
    }
}
