//! Opening an engine on a store: its checkpoint loaded, the rest of its log replayed.

use crate::domain::callbook::CallBook;
use crate::domain::state_chunks::{ChunkDamaged, StateChunks};
use crate::store::positions::SourceCheckpoint;
use crate::store::record::Record;
use crate::store::runs::{self, RunSet};
use crate::store::{EventStore, LogPosition, StoreError, snapshot};

use super::chunk::dead_letter_key;

/// A book loaded from a store, and the log positions it covers.
pub(super) struct LoadedBook {
    pub(super) book: CallBook,
    /// End of the log replayed into the book.
    pub(super) position: LogPosition,
    /// Position of the checkpoint it started from (0: none).
    pub(super) checkpointed: LogPosition,
    pub(super) runs: RunSet,
    /// Where the sources stand at `position`.
    pub(super) sources: SourceCheckpoint,
    /// The cells the checkpoint keeps (a writer's open), without the events replayed
    /// after it: the book tracks what they changed, for the cells to settle.
    pub(super) cells: Option<snapshot::StoredCells>,
    /// The store replays its log in windows and more of it follows `position`
    /// ([`super::Engine::replay_windows`]).
    pub(super) more: bool,
}

/// Where the sources stood at `from` (a checkpoint's position): as the store kept them
/// with that checkpoint or a later one (the deltas replayed after `from` then move
/// nothing back), else read from the log before it.
fn positions_at(
    store: &mut dyn EventStore,
    from: LogPosition,
) -> Result<SourceCheckpoint, StoreError> {
    match store.load_positions()? {
        Some((at, kept)) if at >= from => return Ok(kept),
        _ if from == 0 => return Ok(SourceCheckpoint::default()),
        _ => {}
    }
    tracing::info!("reading the sources' positions from the log");
    let mut sources = SourceCheckpoint::default();
    store.replay(0, &mut |rec| {
        if let Record::Positions(d) = rec {
            sources.apply(&d);
        }
    })?;
    Ok(sources)
}

/// Loads the store's checkpoint and replays the rest of its log. A query-only load
/// (`for_folding` false) keeps the book read-only when the checkpoint covers the whole
/// log, and falls back to a full load otherwise.
pub(super) fn load_book(
    store: &mut dyn EventStore,
    dedupe_secret: [u8; 16],
    mut for_folding: bool,
) -> Result<LoadedBook, StoreError> {
    let mut skip_checkpoint = false;
    loop {
        let fresh = || (CallBook::new(dedupe_secret), 0, RunSet::default(), None);
        let checkpoint = match skip_checkpoint {
            true => None,
            false => store.load_checkpoint(for_folding)?,
        };
        let (mut book, from, runs, cells) = match checkpoint {
            None => fresh(),
            Some(cp) if for_folding && cp.fold.is_none() => {
                tracing::warn!("checkpoint incomplete; replaying the whole log");
                fresh()
            }
            Some(cp) => match from_checkpoint(store, &cp, dedupe_secret, for_folding)? {
                Some((book, runs, cells)) => (book, cp.position, runs, cells),
                None => {
                    tracing::warn!(
                        "checkpoint damaged or of an older version; replaying the whole log"
                    );
                    fresh()
                }
            },
        };
        let mut replayed = 0u64;
        let mut more = false;
        if cells.is_some() {
            // What the log holds after the checkpoint is settled into its cells once
            // they are open (see `Engine::open`).
            book.track_changes();
        }
        let mut sources = positions_at(store, from)?;
        let position = if book.is_read_only() {
            // Events after the checkpoint need dedupe: fall back to a full open.
            let end = store.replay(from, &mut |rec| match rec {
                Record::Event(_) => replayed += 1,
                Record::Positions(d) => sources.apply(&d),
                Record::DeadLetter(_) => {}
            })?;
            if replayed > 0 {
                for_folding = true;
                continue;
            }
            end
        } else {
            // Events after the checkpoint load the stored states they touch, and only
            // those (the packs were checked whole when the checkpoint was loaded).
            let window = replay_window_into(store, from, &mut book, &mut sources)?;
            replayed = window.events;
            if window.damaged.is_some() {
                tracing::warn!("checkpoint's call states damaged; replaying the whole log");
                skip_checkpoint = true;
                continue;
            }
            more = window.more;
            window.end
        };
        tracing::info!(
            calls = book.calls(),
            // Not known when the dedupe keys were not loaded (opened for queries).
            events = (!book.is_read_only()).then(|| book.distinct_events()),
            replayed,
            read_only = book.is_read_only(),
            "store opened"
        );
        return Ok(LoadedBook {
            book,
            position,
            checkpointed: from,
            runs,
            sources,
            cells,
            more,
        });
    }
}

impl super::Engine {
    /// Replays the rest of a log its store hands over in windows (an open of a long log
    /// without a checkpoint), checkpointing before each window: what settled leaves
    /// memory (see [`super::Engine::settle_after`]) instead of the whole history staying
    /// there until the first checkpoint. Called before the store derives anything (its
    /// rows hold these commits already).
    pub(super) fn replay_windows(&mut self) -> Result<(), StoreError> {
        let mut windows = 1u64;
        loop {
            self.checkpoint()?;
            let window = replay_window_into(
                self.store.as_mut(),
                self.position,
                &mut self.book,
                &mut self.sources,
            )?;
            if let Some(e) = window.damaged {
                return Err(damaged_states(e));
            }
            self.position = window.end;
            windows += 1;
            self.settle_cells();
            if !window.more {
                break;
            }
        }
        self.unsaved = self.store.log_bytes(self.checkpointed, self.position)?;
        tracing::info!(
            calls = self.book.calls(),
            events = self.book.distinct_events(),
            windows,
            "log replayed"
        );
        Ok(())
    }
}

/// What a window of the log replayed into a book came to.
struct ReplayedWindow {
    end: LogPosition,
    /// More of the log follows `end` (the store replays in windows).
    more: bool,
    /// Events applied (the one found damaged included).
    events: u64,
    /// A stored call state an event needed did not decode: the events after it were
    /// not applied.
    damaged: Option<ChunkDamaged>,
}

/// Replays the store's next window of the log from `from` into `book` (its dead letters
/// noted, its sources' deltas applied to `sources`): the one replay of an open, whole
/// or in windows.
fn replay_window_into(
    store: &mut dyn EventStore,
    from: LogPosition,
    book: &mut CallBook,
    sources: &mut SourceCheckpoint,
) -> Result<ReplayedWindow, StoreError> {
    let hasher = book.key_hasher().clone();
    let (mut events, mut damaged) = (0u64, None);
    let (end, more) = store.replay_window(from, &mut |rec| match rec {
        Record::Event(_) if damaged.is_some() => {}
        Record::Event(ev) => {
            damaged = book.try_apply(&ev).err();
            events += 1;
        }
        Record::DeadLetter(d) => {
            book.note_dead_letter(dead_letter_key(&hasher, &d));
        }
        Record::Positions(d) => sources.apply(&d),
    })?;
    Ok(ReplayedWindow {
        end,
        more,
        events,
        damaged,
    })
}

/// A book of a checkpoint, the runs behind it and the cells it keeps (for a writer).
type FromCheckpoint = (CallBook, RunSet, Option<snapshot::StoredCells>);

/// The book of a checkpoint and the runs behind it; `None` when any of it is damaged, of
/// an older version, or not what the open needs (a fold state for folding, none for a
/// query-only open). A book for folding has its last chunk of states in memory (new calls
/// go there); every other chunk stays in its pack (checked first: a writer's with its
/// other runs, a query-only open's segment by segment) until read.
fn from_checkpoint(
    store: &mut dyn EventStore,
    cp: &crate::store::Checkpoint,
    dedupe_secret: [u8; 16],
    for_folding: bool,
) -> Result<Option<FromCheckpoint>, StoreError> {
    let Some(query) = snapshot::decode_query(&cp.query) else {
        return Ok(None);
    };
    let packs = match &query.states {
        snapshot::StoredStates::Packs { packs, .. } => packs.as_slice(),
        snapshot::StoredStates::Inline(_) => &[],
    };
    let fold = match &cp.fold {
        Some(fold) => runs::load(store, fold, packs, query.cells.as_ref())?,
        None => None,
    };
    if for_folding != fold.is_some() {
        return Ok(None);
    }
    let (fold_state, runs) = match fold {
        Some((state, runs)) => (Some(state), runs),
        None => (None, RunSet::default()),
    };
    let states = match query.states {
        snapshot::StoredStates::Inline(states) => StateChunks::from_vec(states),
        snapshot::StoredStates::Packs { calls, packs } => {
            let Some(source) = runs::open_states(store, &packs, query.lines.len())? else {
                return Ok(None);
            };
            // A writer's packs were checked whole with its other runs (`runs::load`).
            if !for_folding && !source.whole(calls.div_ceil(crate::domain::state_chunks::CHUNK)) {
                return Ok(None);
            }
            StateChunks::stored(calls, std::sync::Arc::new(source))
        }
    };
    // Every call is in the index once, and only calls are.
    if fold_state
        .as_ref()
        .is_some_and(|(_, index, _)| index.len() != states.len())
    {
        return Ok(None);
    }
    let last = states.chunk_count().checked_sub(1);
    // Only a writer keeps cells in step: a query-only open counts from the states.
    let cells = query.cells.filter(|_| for_folding);
    let book = CallBook::from_parts(
        dedupe_secret,
        query.lines,
        states,
        query.newest_ts,
        fold_state,
    );
    let ready = !for_folding || last.is_none_or(|c| book.states().try_chunk(c).is_ok());
    Ok(ready.then_some((book, runs, cells)))
}

/// Loads every call state of `book` still in its packs, on two threads.
pub(super) fn load_states(book: &CallBook) -> Result<(), ChunkDamaged> {
    let states = book.states();
    let missing = states.missing();
    let (a, b) = missing.split_at(missing.len() / 2);
    let load = |cs: &[usize]| cs.iter().try_for_each(|&c| states.try_chunk(c).map(drop));
    std::thread::scope(|s| {
        let other = (!b.is_empty()).then(|| s.spawn(|| load(b)));
        let here = load(a);
        let there = other.map_or(Ok(()), |t| t.join().unwrap_or(Err(ChunkDamaged(0))));
        here.and(there)
    })
}

pub(super) fn damaged_states(e: ChunkDamaged) -> StoreError {
    StoreError::Corrupt {
        path: "<checkpoint runs>".into(),
        what: e.to_string(),
    }
}
