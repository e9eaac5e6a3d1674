//! The aggregator engine: the domain's [`CallBook`] kept in step with a durable
//! [`EventStore`]. Ingest folds events in and commits them; queries read the book.

use crate::domain::callbook::CallBook;
use crate::domain::cells::{Cells, CellsView};
use crate::domain::config::MetricsConfig;
use crate::domain::dedupe::KeyHasher;
use crate::domain::derived::Derived;
use crate::domain::figures::CallSource;
use crate::domain::time::Millis;
use crate::domain::transitions::Transitions;
use crate::observe;
use crate::parallel_scan::ParallelScan;
use crate::published::{Answers, Publisher, Snapshot, States};
use crate::store::codec::encode_positions;
use crate::store::positions::{CheckpointDelta, SourceCheckpoint};
use crate::store::record::{DeadLetter, Record};
use crate::store::runs::{self, RunSet};
use crate::store::{Batch, EventStore, LogPosition, StoreError};

mod checkpoint_policy;
pub use checkpoint_policy::CheckpointMoment;

mod chunk;
mod live;
mod open;
mod stream;
#[cfg(test)]
mod tests;

use chunk::apply_chunk;
pub use chunk::{EncodedChunk, Spares, dead_letter_key};
pub use live::TransitionBatch;
use open::{damaged_states, load_book, load_states};

/// Counts of one ingest call (or of a whole import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl std::ops::AddAssign for IngestSummary {
    fn add_assign(&mut self, o: Self) {
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.rejected += o.rejected;
    }
}

pub struct Engine {
    book: CallBook,
    store: Box<dyn EventStore>,
    config: MetricsConfig,
    /// Log position covered by the book.
    position: LogPosition,
    /// Position of the last checkpoint written or loaded.
    checkpointed: LogPosition,
    /// Log bytes after that checkpoint (what the next open would replay).
    unsaved: u64,
    /// Calls with nothing newer than this before the newest event leave memory at each
    /// checkpoint ([`Self::settle_after`]); `None`: every state stays.
    settle_window: Option<Millis>,
    /// The runs holding the book's dedupe keys and call index (see `store::runs`).
    runs: RunSet,
    /// Kept to rebuild the book after a failed commit.
    dedupe_secret: [u8; 16],
    poisoned: bool,
    batch: Batch,
    /// Where the sources stand in what is durable.
    sources: SourceCheckpoint,
    /// The source positions of what is staged and not yet committed.
    staged_delta: CheckpointDelta,
    /// The book's per-interval cells, once [`Self::index_periods`] asked for them.
    cells: Option<Cells>,
    /// The output side, once [`Self::watch_transitions`] asked for it.
    live: Option<Transitions>,
    /// The book was rebuilt since the last drain (see [`TransitionBatch::reset`]).
    live_reset: bool,
    /// What was last published, once [`Self::publish`] was first called.
    publisher: Option<Publisher>,
    /// What the staged work changed in the cells and call records, for a store that
    /// keeps them ([`EventStore::derives`]); handed over with the next commit.
    derived: Option<Derived>,
}

impl Engine {
    /// Opens the engine on a store: loads its checkpoint, replays the rest of its log.
    pub fn open(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, true, None)
    }

    /// [`Self::open`], then [`Self::settle_after`] `window`, already while the open
    /// replays a long log in windows (a store that keeps checkpoints and replays so).
    pub fn open_settling(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
        window: std::time::Duration,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, true, Some(window))
    }

    /// Opens for queries only: when the checkpoint covers the whole log, the dedupe keys
    /// and the call index are not loaded (much faster); otherwise this is [`Self::open`].
    /// [`Self::stage`] fails on such an engine.
    pub fn open_for_queries(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, false, None)
    }

    fn open_with(
        mut store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
        for_folding: bool,
        settle_window: Option<std::time::Duration>,
    ) -> Result<Self, StoreError> {
        let loaded = load_book(&mut *store, dedupe_secret, for_folding)?;
        let more = loaded.more;
        let derives = store.derives();
        let unsaved = store.log_bytes(loaded.checkpointed, loaded.position)?;
        // The checkpoint's cells, their days left in their packs until needed.
        let cells = match &loaded.cells {
            Some(kept) => {
                runs::open_cells(&mut *store, kept, loaded.book.calls())?.and_then(|days| {
                    Cells::stored(
                        kept.head.clone(),
                        &config.calendar,
                        config.threshold_ms,
                        std::sync::Arc::new(days),
                    )
                })
            }
            None => None,
        };
        let mut engine = Self {
            book: loaded.book,
            store,
            config,
            dedupe_secret,
            position: loaded.position,
            checkpointed: loaded.checkpointed,
            unsaved,
            settle_window: None,
            runs: loaded.runs,
            poisoned: false,
            batch: Batch::default(),
            sources: loaded.sources,
            staged_delta: CheckpointDelta::default(),
            cells: None,
            live: None,
            live_reset: false,
            publisher: None,
            derived: None,
        };
        if let Some(cells) = cells {
            // Kept in step from here on (an import settles them as it goes), starting
            // with what the log held after the checkpoint.
            engine.cells = Some(cells);
            engine.book.track_changes();
            engine.settle_cells();
        } else {
            // Nothing to settle into.
            engine.book.untrack_changes();
        }
        if let Some(window) = settle_window {
            engine.settle_after(window);
        }
        if derives && engine.cells.is_none() {
            // The store's cells are those of the book: kept in step from here on. The
            // store answers the queries, so the days a checkpoint keeps stay there until
            // a change (or a snapshot) needs them; without a checkpoint they are built.
            engine.index_periods();
        }
        if more {
            engine.replay_windows()?;
        }
        if derives {
            engine.derived = Some(Derived::default());
        }
        Ok(engine)
    }

    /// Makes the book's per-interval cells (see [`crate::domain::cells`]) ready for
    /// queries and keeps them in step from now on, so that a query costs the period it
    /// asks for: those of the checkpoint are read whole, else they are built from every
    /// call state. Worth it for a long-running server; a one-shot query is cheaper as one
    /// scan.
    pub fn index_periods(&mut self) {
        // What changed before is settled into the old cells (and transitions) first.
        self.settle_cells();
        if let Some(cells) = &mut self.cells {
            let started = std::time::Instant::now();
            cells.load_all();
            if !cells.is_damaged() {
                tracing::info!(
                    cells = cells.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "period cells loaded"
                );
                return;
            }
        }
        self.build_cells();
    }

    /// Builds the cells from every call state (replacing any there were).
    fn build_cells(&mut self) {
        if self.cells.as_ref().is_some_and(Cells::is_damaged) {
            tracing::warn!("the checkpoint's cells do not decode: building them again");
        }
        if let Err(e) = load_states(&self.book) {
            // Checked when the store was opened: reading them one by one says which.
            tracing::error!(error = %e, "call states damaged");
        }
        let started = std::time::Instant::now();
        let cells = Cells::build(&self.book, &self.config.calendar, self.config.threshold_ms);
        tracing::info!(
            cells = cells.len(),
            ms = started.elapsed().as_millis() as u64,
            "period cells built"
        );
        self.cells = Some(cells);
        self.book.track_changes();
        // Everything so far is in the cells.
        let _ = self.book.take_changes();
    }

    /// Folds what changed in the book since the last time into its cells, and into the
    /// transitions when watched (once per stage: what the cells track anyway), and notes
    /// it for the next publication.
    fn settle_cells(&mut self) {
        let Some(changes) = self.book.take_changes() else {
            return;
        };
        if let Some(cells) = &mut self.cells {
            if let Some(live) = &mut self.live {
                live.derive(&self.book, &changes, cells.open_calls());
            }
            cells.settle_into(&self.book, changes, self.derived.as_mut());
            if cells.is_damaged() {
                self.build_cells();
            }
        }
    }

    /// The cells whole in memory, as queries read them (those of the checkpoint are read
    /// first, when some are still in it).
    fn cells_for_queries(&mut self) -> Option<Cells> {
        if self.cells.as_ref().is_some_and(|c| !c.is_loaded()) {
            self.index_periods();
        }
        self.cells.clone()
    }

    /// An immutable snapshot of the book as it is now, for queries on other threads
    /// (see [`crate::published`]): call it once what was staged is durable (after a
    /// successful [`Self::commit`]), never on a poisoned engine. It shares the book's
    /// chunks of call states (the book copies one a snapshot holds before changing it).
    pub fn publish(&mut self) -> Snapshot {
        let started = std::time::Instant::now();
        self.settle_cells();
        // A store that derives keeps the days its settle window released where the
        // checkpoint put them: the snapshot reads them there (loading them back at
        // every publication would undo the bound on memory). Otherwise the cells are
        // loaded whole once, for every query after.
        let cells = if self.derived.is_some() {
            self.cells.clone()
        } else {
            self.cells_for_queries()
        };
        let publisher = self
            .publisher
            .get_or_insert_with(|| Publisher::new(&self.config));
        let snapshot = Snapshot {
            config: std::sync::Arc::clone(publisher.config()),
            states: States::Shared(publisher.states(&mut self.book)),
            cells,
            newest_ts: self.book.newest_ts(),
            position: self.position,
        };
        tracing::debug!(
            us = started.elapsed().as_micros() as u64,
            calls = snapshot.calls(),
            "snapshot published"
        );
        snapshot
    }

    /// The engine as a snapshot for good, for a process that only queries (`stats
    /// --data`): its book is handed over, nothing is copied.
    pub fn into_snapshot(mut self) -> Snapshot {
        self.settle_cells();
        self.cells = self.cells_for_queries();
        Snapshot {
            config: std::sync::Arc::new(self.config),
            newest_ts: self.book.newest_ts(),
            states: States::Book(std::sync::Arc::new(self.book)),
            cells: self.cells,
            position: self.position,
        }
    }

    /// After a failed commit: once the store can take writes again, rebuilds the book
    /// from what is durable (so the failed commit's events, never acknowledged, are not
    /// in it) and lifts the poisoning. Nothing acknowledged is lost, nothing is counted
    /// twice. An error means the store is still failing: try again later.
    pub fn recover(&mut self) -> Result<(), StoreError> {
        if !self.poisoned {
            return Ok(());
        }
        self.store.recover()?;
        self.batch.clear();
        self.staged_delta.clear();
        if let Some(d) = &mut self.derived {
            // The failed commit's rows never reached the store, which now holds the
            // rows of the book about to be rebuilt.
            d.clear();
        }
        // The old book goes first: two books of a long history need not fit at once.
        self.book = CallBook::new(self.dedupe_secret);
        let indexed = self.cells.take().is_some();
        let loaded = load_book(&mut *self.store, self.dedupe_secret, true)?;
        self.book = loaded.book;
        self.position = loaded.position;
        self.checkpointed = loaded.checkpointed;
        self.unsaved = self.store.log_bytes(loaded.checkpointed, loaded.position)?;
        self.runs = loaded.runs;
        self.sources = loaded.sources;
        self.poisoned = false;
        if indexed {
            self.index_periods();
        }
        if self.live.take().is_some() {
            self.watch_transitions()?;
            self.live_reset = true;
        }
        // A new book: the next publication copies it whole.
        self.publisher = None;
        Ok(())
    }

    /// Makes room for about `events` more events.
    pub fn reserve(&mut self, events: usize) {
        if !self.book.is_read_only() {
            self.book.reserve(events);
        }
    }

    /// True after a failed commit: the book may hold events the log does not, so
    /// neither ingest nor queries should use it until [`Self::recover`] rebuilds it.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn book(&self) -> &CallBook {
        &self.book
    }

    /// Folds items in (first received wins) and commits them as one durable batch.
    pub fn ingest<'a>(
        &mut self,
        items: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<IngestSummary, StoreError> {
        let hasher = self.key_hasher();
        let mut chunk = EncodedChunk::default();
        for item in items {
            match item {
                Record::Event(ev) => chunk.push_event(&ev, &hasher),
                Record::DeadLetter(d) => chunk.push_dead_letter(&d),
                Record::Positions(d) => chunk.delta.extend(d)?,
            }
        }
        let sum = self.stage(chunk)?;
        self.commit()?;
        Ok(sum)
    }

    /// Folds an encoded chunk (built with this engine's [`Self::key_hasher`]) into the
    /// book and the pending commit: accepted events and dead letters are staged,
    /// duplicates dropped. Nothing is durable before [`Self::commit`].
    pub fn stage(&mut self, chunk: EncodedChunk) -> Result<IngestSummary, StoreError> {
        self.stage_flagged(chunk).map(|(sum, _)| sum)
    }

    /// [`Self::stage`], also saying which event records were accepted: one flag per
    /// event record of the chunk, in order (false: a duplicate, dropped). For callers
    /// that answer per input line (the HTTP push).
    pub fn stage_flagged(
        &mut self,
        mut chunk: EncodedChunk,
    ) -> Result<(IngestSummary, Vec<bool>), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if self.book.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        let mut pending = self.sources.clone();
        pending.apply(&self.staged_delta);
        pending.check(&chunk.delta)?;
        self.staged_delta.extend(std::mem::take(&mut chunk.delta))?;
        let hasher = self.key_hasher();
        let (mut dedupe, mut calls) = self.book.split_fold();
        let mut accepted = Vec::new();
        dedupe.first_seen_all(&chunk.keys, &mut accepted);
        chunk.flag_dead_letters(&hasher, |k| dedupe.first_dead_letter(k));
        let sum = apply_chunk(&mut calls, &mut self.batch, &mut chunk, &accepted, None);
        if sum.is_err() {
            // Its keys are already seen and some of its events may be applied: the book
            // no longer matches the log until it is rebuilt from it.
            self.poisoned = true;
        }
        self.settle_cells();
        sum.map(|sum| (sum, accepted))
    }

    /// The dedupe key function of this engine: parse workers compute the keys of
    /// [`EncodedChunk`]s with it.
    pub fn key_hasher(&self) -> KeyHasher {
        self.book.key_hasher().clone()
    }

    /// Makes everything staged durable, with the source positions it covers.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let started = std::time::Instant::now();
        if !self.staged_delta.is_empty() {
            let mut part = Vec::new();
            encode_positions(&mut part, &self.staged_delta);
            self.batch.append(part, 1);
        }
        let committed = if self.derived.is_some() {
            self.settle_cells();
            let derived = self
                .derived
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            self.store.commit_derived(&self.batch, &derived)
        } else {
            self.store.commit(&self.batch)
        };
        match committed {
            Ok(pos) => {
                self.sources.apply(&self.staged_delta);
                self.staged_delta.clear();
                if !self.batch.is_empty() {
                    observe::emit(observe::CommitDurable {
                        records: u64::from(self.batch.record_count()),
                        bytes: self.batch.len() as u64,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
                self.position = pos;
                self.unsaved += self.batch.len() as u64;
                self.batch.clear();
                Ok(())
            }
            Err(e) => {
                // The book already holds events the log does not: refuse further work
                // until `recover` rebuilds the book from the log.
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Writes a checkpoint when the log grew since the last one: the chunks of call
    /// states changed since the last checkpoint, and the dedupe keys and calls added
    /// since, as runs of their own (see `store::runs`), which the book then maps instead
    /// of keeping the keys in memory.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.poisoned || self.book.is_read_only() || !self.store.checkpoints() {
            return Ok(());
        }
        self.settle_cells();
        if self.position == self.checkpointed && !self.cells_unsaved() {
            return Ok(());
        }
        runs::compact(&mut self.book, self.cells.as_mut(), &self.runs).map_err(damaged_states)?;
        // The positions first: kept for a later checkpoint than the one in place, they are
        // still right (the deltas replayed after the old one only move them forward).
        self.store.save_positions(self.position, &self.sources)?;
        self.save_presence();
        let named = runs::save(
            &mut *self.store,
            &self.book,
            self.cells.as_ref(),
            &self.runs,
            self.position,
        )?;
        if let Some(cells) = &mut self.cells {
            cells.clear_dirty();
        }
        self.checkpointed = self.position;
        self.unsaved = 0;
        let old = std::mem::take(&mut self.runs);
        self.runs = runs::freeze(&mut *self.store, &mut self.book, old, named);
        self.release_settled();
        Ok(())
    }

    /// From now on, at each checkpoint, the states of calls with no time within
    /// `window` of the newest event leave memory (read back from the checkpoint when an
    /// event or a query needs them): a long-running writer keeps in memory what can
    /// still change, whatever the history (the dedupe keys and call index already leave
    /// it at each checkpoint, see `store::runs`).
    pub fn settle_after(&mut self, window: std::time::Duration) {
        self.settle_window = Some(Millis::try_from(window.as_millis()).unwrap_or(Millis::MAX));
    }

    /// Right after a checkpoint: the settled chunks of states, and the days of cells
    /// before the window, leave memory.
    fn release_settled(&mut self) {
        let (Some(window), Some(newest)) = (self.settle_window, self.book.newest_ts()) else {
            return;
        };
        if let Some(cells) = &mut self.cells {
            // UTC days; a day before the window's, so that a call's local day (and its
            // neighbours, which a day row reads) stay.
            let before = newest.saturating_sub(window).div_euclid(86_400_000) - 1;
            let day_packs = &self.runs.day_packs;
            match runs::open_days(&mut *self.store, day_packs, self.book.calls()) {
                Ok(Some(days)) => {
                    let kept: std::collections::HashSet<i64> =
                        day_packs.iter().map(|&(d, _)| d).collect();
                    let released = cells.release_days(std::sync::Arc::new(days), |d| {
                        d < before && kept.contains(&d)
                    });
                    tracing::debug!(days = released, "settled days of cells left memory");
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        "the checkpoint's packs of cells cannot be mapped; keeping them in memory"
                    );
                }
            }
        }
        let lines = self.book.line_names().count();
        match runs::open_states(&mut *self.store, &self.runs.chunk_packs, lines) {
            Ok(Some(source)) => {
                let released = self.book.release_settled_states(
                    std::sync::Arc::new(source),
                    newest.saturating_sub(window),
                );
                tracing::debug!(chunks = released, "settled call states left memory");
            }
            Ok(None) | Err(_) => {
                tracing::warn!(
                    "the checkpoint's packs of states cannot be mapped; keeping them in memory"
                );
            }
        }
    }

    /// True when the cells changed since the last checkpoint (built since, not read
    /// from it: a checkpoint at the same position keeps them).
    fn cells_unsaved(&self) -> bool {
        self.cells
            .as_ref()
            .is_some_and(|c| !c.dirty_days().is_empty())
    }

    /// Loads every call state still in the checkpoint's packs (an engine opened for
    /// folding loads them as events touch them, a snapshot as queries read them; the
    /// packs were checked whole when the store was opened).
    pub fn load_states(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        load_states(&self.book).map_err(damaged_states)?;
        tracing::info!(
            calls = self.book.calls(),
            ms = started.elapsed().as_millis() as u64,
            "call states loaded"
        );
        Ok(())
    }

    /// Where every source stands in what is durable: a source resumes from here.
    pub fn source_checkpoint(&self) -> &SourceCheckpoint {
        &self.sources
    }

    /// The end of the log the book covers (what is durable once nothing is staged).
    pub fn position(&self) -> LogPosition {
        self.position
    }

    /// Log bytes written since the last checkpoint.
    pub fn uncheckpointed(&self) -> u64 {
        self.unsaved
    }

    /// Visits every dead letter stored, oldest first, each once (a store written before
    /// dead letters were deduplicated may hold some twice).
    pub fn dead_letters(
        &mut self,
        visit: &mut dyn FnMut(&DeadLetter<'_>),
    ) -> Result<(), StoreError> {
        let hasher = self.key_hasher();
        let mut shown = crate::domain::dedupe::KeySet::default();
        self.store.replay(0, &mut |rec| {
            if let Record::DeadLetter(d) = rec
                && shown.insert(dead_letter_key(&hasher, &d))
            {
                visit(&d);
            }
        })?;
        Ok(())
    }

    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// The service lines the store has seen (a query's `line` must be one of them).
    pub fn lines(&self) -> impl Iterator<Item = &str> + '_ {
        self.book.line_names()
    }
}

/// The cells, when kept, else every record: what queries count from.
impl Answers for Engine {
    fn answer_config(&self) -> &MetricsConfig {
        &self.config
    }

    fn answer_source<T>(&self, wall: Millis, count: impl FnOnce(&dyn CallSource) -> T) -> T {
        let (book, now) = (&self.book, self.book.clock(wall));
        match &self.cells {
            Some(cells) if cells.is_loaded() => count(&CellsView { cells, book, now }),
            _ => count(&ParallelScan { book, now }),
        }
    }
}
