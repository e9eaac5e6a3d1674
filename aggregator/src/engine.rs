//! The aggregator engine: the domain's [`CallBook`] kept in step with a durable
//! [`EventStore`]. Ingest folds events in and commits them; queries read the book.

use crate::domain::callbook::{AgentEvent, CallBook, CallsHalf, Fold};
use crate::domain::cells::{Cells, CellsView, Scan};
use crate::domain::config::MetricsConfig;
use crate::domain::dedupe::{CallKey, DedupeKey, KeyHasher};
use crate::domain::derived::Derived;
use crate::domain::event::{Event, EventType};
use crate::domain::figures::CallSource;
use crate::domain::state_chunks::{ChunkDamaged, StateChunks};
use crate::domain::time::Millis;
use crate::domain::transitions::{
    AgentTransition, CallTransition, OpenCall, Presence, Transitions,
};
use crate::observe;
use crate::published::{Answers, Publisher, Snapshot, States};
use crate::store::codec::{
    Decoder, RecordKind, encode_dead_letter, encode_event, encode_positions, rebase_dead_letter,
};
use crate::store::positions::{CheckpointDelta, SourceCheckpoint};
use crate::store::record::{DeadLetter, Record};
use crate::store::runs::{self, RunSet};
use crate::store::{Batch, EventStore, LogPosition, PartPool, StoreError, snapshot};
use std::sync::mpsc::SyncSender;

mod checkpoint_policy;
pub use checkpoint_policy::CheckpointMoment;

/// Encoded input records (see `codec`), with what folding needs of each event record,
/// in order: its dedupe key and its [`Fold`] view. Whoever validates the input builds
/// these (parse workers, the push handler), so the folding threads decode nothing.
#[derive(Debug, Default)]
pub struct EncodedChunk {
    /// The encoded records: the part the store commits.
    pub bytes: Vec<u8>,
    keys: Vec<DedupeKey>,
    folds: Vec<FoldItem>,
    /// The line names of `offered` events and the agents of agent events in `folds`,
    /// back to back.
    line_names: Vec<u8>,
    dead_letters: u64,
    /// Where each dead letter's record starts in `bytes` (see [`Self::rebase_positions`]).
    dead_letter_at: Vec<usize>,
    /// One flag per dead letter once deduplicated: false when the store has it already.
    dead_letter_new: Vec<bool>,
    /// Input lines the chunk came from (set by whoever numbers them).
    lines: u64,
    /// Where the chunk's input moved its source (see [`crate::store::positions`]): made
    /// durable in the commit that holds the chunk's records.
    delta: CheckpointDelta,
    /// Commit what is staged once this chunk is (a source's time cadence).
    commit_after: bool,
}

/// A [`Fold`] without borrowing: the line is a range of `EncodedChunk::line_names`.
/// Laid out small (40 bytes, not 64): a million of these cross threads per import.
#[derive(Debug, Clone, Copy)]
struct FoldItem {
    /// The call key as two words (a `u128` would align the item to 16 bytes).
    call: [u64; 2],
    ts: Millis,
    line: (u32, u32),
    kind: EventType,
    has_call: bool,
    has_line: bool,
}

/// Where applied chunks go back, for the parse workers to fill again: fresh memory costs
/// a page fault and a kernel clear per 4 KiB (about 5 times the cost of writing warm
/// memory here), and a year's import would otherwise touch some 100 MB of it. When the
/// pool is full, chunks are dropped.
pub type Spares = SyncSender<EncodedChunk>;

impl EncodedChunk {
    /// Empties the chunk for reuse, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.keys.clear();
        self.folds.clear();
        self.line_names.clear();
        self.dead_letters = 0;
        self.dead_letter_at.clear();
        self.dead_letter_new.clear();
        self.lines = 0;
        self.delta.clear();
        self.commit_after = false;
    }

    /// The source positions the chunk's input covers.
    pub fn set_delta(&mut self, delta: CheckpointDelta) {
        self.delta = delta;
    }

    pub fn delta(&self) -> &CheckpointDelta {
        &self.delta
    }

    /// Asks [`Engine::stage_stream`] to commit once this chunk is staged, however little
    /// is staged (a source's commit interval).
    pub fn commit_after(&mut self) {
        self.commit_after = true;
    }

    /// Whether a commit is asked for after this chunk (a window's end).
    pub fn asks_commit(&self) -> bool {
        self.commit_after
    }

    /// Makes room for about `bytes` of records and `events` events. A buffer too small
    /// is replaced, not grown: growing would copy its stale contents.
    pub fn reserve(&mut self, bytes: usize, events: usize) {
        fn room<T>(v: &mut Vec<T>, n: usize) {
            if v.capacity() - v.len() < n {
                if v.is_empty() {
                    // Some slack, so that the next chunk of about this size fits.
                    *v = Vec::with_capacity(n + n / 8);
                } else {
                    v.reserve(n);
                }
            }
        }
        room(&mut self.bytes, bytes);
        room(&mut self.keys, events);
        room(&mut self.folds, events);
    }

    /// Appends a valid event.
    pub fn push_event(&mut self, ev: &Event<'_>, hasher: &KeyHasher) {
        encode_event(&mut self.bytes, ev);
        self.note_event(ev, hasher);
    }

    /// Appends a rejected input.
    pub fn push_dead_letter(&mut self, dead: &DeadLetter<'_>) {
        observe::emit(observe::Rejected { code: &dead.code });
        self.dead_letter_at.push(self.bytes.len());
        encode_dead_letter(&mut self.bytes, dead);
        self.dead_letters += 1;
    }

    /// Records how many input lines the chunk came from.
    pub fn set_lines(&mut self, lines: u64) {
        self.lines = lines;
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Adds `base` to the position of every dead letter: a chunk's lines are numbered
    /// from 1 by the worker that parsed it, and become the stream's lines here, once the
    /// lines of the chunks before it are known.
    pub fn rebase_positions(&mut self, base: u64) {
        for &at in &self.dead_letter_at {
            rebase_dead_letter(&mut self.bytes[at..], base);
        }
    }

    fn note_event(&mut self, ev: &Event<'_>, hasher: &KeyHasher) {
        self.keys.push(hasher.key(ev));
        // The one name folding reads: the line of an `offered`, the agent of an agent event.
        let name = match ev.kind {
            EventType::Offered => &ev.line,
            k if k.is_agent_event() => &ev.agent,
            _ => &None,
        };
        let line = match name {
            Some(name) => {
                let start = self.line_names.len() as u32;
                self.line_names.extend_from_slice(name.as_bytes());
                Some((start, self.line_names.len() as u32))
            }
            None => None,
        };
        let call = ev.call_id.as_deref().map(|c| hasher.call_key(c.as_bytes()));
        let key = call.unwrap_or(0);
        self.folds.push(FoldItem {
            call: [key as u64, (key >> 64) as u64],
            ts: ev.ts,
            line: line.unwrap_or((0, 0)),
            kind: ev.kind,
            has_call: call.is_some(),
            has_line: line.is_some(),
        });
    }

    /// Decides which dead letters are new (`first`: true the first time an identity is
    /// offered); a chunk without dead letters (the usual case) costs nothing.
    fn flag_dead_letters(&mut self, hasher: &KeyHasher, mut first: impl FnMut(DedupeKey) -> bool) {
        self.dead_letter_new.clear();
        for &at in &self.dead_letter_at {
            let new = match Decoder::new(&self.bytes[at..]).next() {
                Some(Ok(Record::DeadLetter(d))) => first(dead_letter_key(hasher, &d)),
                _ => true, // not a dead letter record: a bug; keep it, as before
            };
            self.dead_letter_new.push(new);
        }
    }

    /// A chunk of this one's dead letters alone, their records copied as they are (no
    /// second count of their rejects): what a process that publishes the events
    /// elsewhere keeps in its own store.
    pub fn dead_letters_only(&self) -> EncodedChunk {
        let mut out = EncodedChunk::default();
        for &at in &self.dead_letter_at {
            let mut records = Decoder::new(&self.bytes[at..]);
            if let Some(Ok(_)) = records.skip_record() {
                out.dead_letter_at.push(out.bytes.len());
                out.bytes
                    .extend_from_slice(&self.bytes[at..at + records.position()]);
                out.dead_letters += 1;
            }
        }
        out.lines = self.lines;
        out
    }

    /// Event records in the chunk.
    pub fn events(&self) -> usize {
        self.keys.len()
    }

    /// Dedupe keys of the event records, in order.
    pub fn keys(&self) -> &[DedupeKey] {
        &self.keys
    }

    fn fold(&self, item: &FoldItem) -> Fold<'_> {
        let (a, b) = item.line;
        let name = item
            .has_line
            .then(|| &self.line_names[a as usize..b as usize]);
        let agent = item.kind.is_agent_event();
        Fold {
            kind: item.kind,
            ts: item.ts,
            call: item.call(),
            line: name.filter(|_| !agent),
            agent: name.filter(|_| agent),
        }
    }
}

/// The identity of a stored dead letter (see [`KeyHasher::dead_letter_key`]).
fn dead_letter_key(hasher: &KeyHasher, d: &DeadLetter<'_>) -> DedupeKey {
    let size = d.truncated_from.unwrap_or(d.raw.len() as u64);
    hasher.dead_letter_key(&d.source, d.position, &d.raw, size)
}

impl FoldItem {
    fn call(&self) -> Option<CallKey> {
        let [lo, hi] = self.call;
        self.has_call
            .then_some(u128::from(lo) | u128::from(hi) << 64)
    }
}

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

/// What [`Engine::drain_transitions`] hands out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionBatch {
    /// The book was rebuilt from the store (after a failed commit): transitions drained
    /// before are void (they may tell events that never became durable), calls may
    /// have new indexes; start again from [`Engine::open_calls`].
    pub reset: bool,
    pub calls: Vec<CallTransition>,
    pub agents: Vec<AgentTransition>,
}

impl Engine {
    /// Opens the engine on a store: loads its checkpoint, replays the rest of its log.
    pub fn open(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, true)
    }

    /// Opens for queries only: when the checkpoint covers the whole log, the dedupe keys
    /// and the call index are not loaded (much faster); otherwise this is [`Self::open`].
    /// [`Self::stage`] fails on such an engine.
    pub fn open_for_queries(
        store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
    ) -> Result<Self, StoreError> {
        Self::open_with(store, dedupe_secret, config, false)
    }

    fn open_with(
        mut store: Box<dyn EventStore>,
        dedupe_secret: [u8; 16],
        config: MetricsConfig,
        for_folding: bool,
    ) -> Result<Self, StoreError> {
        let loaded = load_book(&mut *store, dedupe_secret, for_folding)?;
        let derives = store.derives();
        let mut engine = Self {
            book: loaded.book,
            store,
            config,
            dedupe_secret,
            position: loaded.position,
            checkpointed: loaded.checkpointed,
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
        if derives {
            // The store's cells are those of the book: kept in step from here on.
            engine.index_periods();
            engine.derived = Some(Derived::default());
        }
        Ok(engine)
    }

    /// Builds the book's per-interval cells (see [`crate::domain::cells`]) and keeps
    /// them in step from now on, so that a query costs the period it asks for. Worth
    /// it for a long-running server; a one-shot query is cheaper as one scan.
    pub fn index_periods(&mut self) {
        // What changed before is settled into the old cells (and transitions) first.
        self.settle_cells();
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
        }
    }

    /// From now on, derives call and agent transitions once per stage (see
    /// [`crate::domain::transitions`]), for [`Self::drain_transitions`]; nothing is told
    /// of the book's past. Keeps the cells too ([`Self::index_periods`]): their open-call
    /// index is the one the timeouts and [`Self::open_calls`] read. Costs nothing until
    /// asked for; once watched, drain after each stage (they pile up otherwise).
    ///
    /// Operators' presence is their latest event's, however long ago it was: it is
    /// recalled from the log's agent events (one pass over the log, reading it), so that
    /// a restarted server knows who is logged in ([`Self::presence`]).
    pub fn watch_transitions(&mut self) -> Result<(), StoreError> {
        if self.cells.is_none() {
            self.index_periods();
        }
        self.book.track_agents();
        // What changed until now goes into the cells (and a publication), not into
        // transitions: nothing is told of the book's past.
        self.settle_cells();
        let mut live = Transitions::new(&self.book, self.config.threshold_ms);
        let recalled = self.store.replay(0, &mut |rec| {
            if let Record::Event(e) = rec
                && e.kind.is_agent_event()
                && let Some(agent) = &e.agent
            {
                live.recall_agent(&AgentEvent {
                    kind: e.kind,
                    ts: e.ts,
                    agent: Box::from(&**agent),
                });
            }
        });
        if recalled.is_err() {
            // Damage in the log (reported by the log check) must not take the live state
            // away; a presence recalled up to the damage could keep operators logged in
            // who logged off after it, so none is recalled.
            tracing::warn!(
                "operators' presence not recalled: the log cannot be read whole; the live state starts with none logged in"
            );
            live = Transitions::new(&self.book, self.config.threshold_ms);
        }
        self.live = Some(live);
        Ok(())
    }

    /// The operators logged in or paused now, by name (none when not watched).
    pub fn presence(&self) -> Vec<(Box<str>, Presence)> {
        self.live
            .as_ref()
            .map(Transitions::present)
            .unwrap_or_default()
    }

    /// The transitions derived since the last drain (`None` when not watched).
    pub fn drain_transitions(&mut self) -> Option<TransitionBatch> {
        let live = self.live.as_mut()?;
        let (calls, agents) = live.drain();
        Some(TransitionBatch {
            reset: std::mem::take(&mut self.live_reset),
            calls,
            agents,
        })
    }

    /// When the next open call turns unresolved (6 h after its anchor): the caller
    /// calls [`Self::handle_timeout`] with its wall clock then. `None` when no call is
    /// open or transitions are not watched.
    pub fn next_timeout(&self) -> Option<Millis> {
        let (live, cells) = (self.live.as_ref()?, self.cells.as_ref()?);
        live.next_timeout(cells.open_calls())
    }

    /// Moves the clock of spec §2 to the wall clock `now` (when later): the open calls
    /// anchored 6 h or more before it become unresolved transitions.
    pub fn handle_timeout(&mut self, now: Millis) {
        if let (Some(live), Some(cells)) = (&mut self.live, &self.cells) {
            live.handle_timeout(now, &self.book, cells.open_calls());
        }
    }

    /// The calls of `line` waiting now (open at the transitions' clock), by anchor;
    /// none when transitions are not watched or the line is unknown. Costs the calls
    /// of that line that are open, not the book.
    pub fn open_calls(&self, line: &str) -> impl Iterator<Item = OpenCall> + '_ {
        let parts = match (&self.live, &self.cells, self.book.line_id(line)) {
            (Some(live), Some(cells), Some(id)) => Some((live, cells, id)),
            _ => None,
        };
        parts
            .into_iter()
            .flat_map(|(live, cells, id)| live.open_calls(id, &self.book, cells.open_calls()))
    }

    /// An immutable snapshot of the book as it is now, for queries on other threads
    /// (see [`crate::published`]): call it once what was staged is durable (after a
    /// successful [`Self::commit`]), never on a poisoned engine. It shares the book's
    /// chunks of call states (the book copies one a snapshot holds before changing it).
    pub fn publish(&mut self) -> Snapshot {
        let started = std::time::Instant::now();
        self.settle_cells();
        let publisher = self
            .publisher
            .get_or_insert_with(|| Publisher::new(&self.config));
        let snapshot = Snapshot {
            config: std::sync::Arc::clone(publisher.config()),
            states: States::Shared(publisher.states(&self.book)),
            cells: self.cells.clone(),
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

    /// Stages a stream of encoded chunks (with their keys) on three threads: the calling
    /// thread decides duplicates (in input order), a second applies the accepted events
    /// to the call states, a third commits the batches behind them, so that disk writes
    /// overlap with folding. Returns once all of it is durable.
    ///
    /// With `checkpoint`, also writes a checkpoint at the end (of what is new since the
    /// last one); failing to write it is logged, not returned (the events are durable;
    /// the next open replays the log).
    ///
    /// Each commit is made when `commit_bytes` are staged, or after a chunk that asks
    /// for it ([`EncodedChunk::commit_after`]); it holds the source positions of its
    /// chunks, and once it is durable `durable` is told where the sources stand (on the
    /// writer thread: it should only hand the news on).
    pub fn stage_stream(
        &mut self,
        chunks: impl Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        checkpoint: bool,
        spares: Option<Spares>,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if self.book.is_read_only() {
            return Err(StoreError::ReadOnly);
        }
        // Whatever was staged before goes first.
        self.commit()?;
        if self.derived.is_some() {
            return self.stage_each(chunks, commit_bytes, durable);
        }
        let hasher = self.key_hasher();
        let store = &mut self.store;
        let sources = &mut self.sources;
        let mut pending = sources.clone();
        let mut refused = None;
        let (mut dedupe, mut calls) = self.book.split_fold();
        let (to_writer, from_apply) = std::sync::mpsc::sync_channel::<(Batch, CheckpointDelta)>(2);
        // Committed batches go back to the applier, whose next parts reuse their buffers.
        let (spent_tx, spent_rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        let (to_apply, from_dedupe) = std::sync::mpsc::sync_channel::<(EncodedChunk, Vec<bool>)>(4);
        let result = std::thread::scope(|s| {
            let writer = s.spawn(move || -> Result<LogPosition, StoreError> {
                let mut end = None;
                for (batch, delta) in from_apply {
                    let started = std::time::Instant::now();
                    end = Some(store.commit(&batch)?);
                    observe::emit(observe::CommitDurable {
                        records: u64::from(batch.records),
                        bytes: batch.len() as u64,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    let _ = spent_tx.try_send(batch);
                    if !delta.is_empty() {
                        sources.apply(&delta);
                        durable(sources);
                    }
                }
                end.map_or_else(|| store.commit(&Batch::default()), Ok)
            });
            let applier = s.spawn(move || -> Result<IngestSummary, StoreError> {
                let mut sum = IngestSummary::default();
                let mut batch = Batch::default();
                let mut delta = CheckpointDelta::default();
                let mut pool = PartPool::new(commit_bytes);
                // The batch and the positions it covers, as the last record of its commit.
                let sealed = |batch: &mut Batch, delta: &mut CheckpointDelta| {
                    let delta = std::mem::take(delta);
                    if !delta.is_empty() {
                        let mut part = Vec::new();
                        encode_positions(&mut part, &delta);
                        batch.append(part, 1);
                    }
                    (std::mem::take(batch), delta)
                };
                for (mut chunk, accepted) in from_dedupe {
                    while let Ok(spent) = spent_rx.try_recv() {
                        pool.give(spent);
                    }
                    delta
                        .extend(std::mem::take(&mut chunk.delta))
                        .map_err(StoreError::from)?;
                    let commit_now = chunk.commit_after;
                    // With spares, the bytes are copied into the batch (in reused
                    // parts) and the chunk goes back whole for the workers to reuse.
                    let copy = spares.is_some().then_some(&mut pool);
                    sum += apply_chunk(&mut calls, &mut batch, &mut chunk, &accepted, copy)?;
                    if let Some(spares) = &spares {
                        let _ = spares.try_send(chunk);
                    }
                    let due = batch.len() >= commit_bytes
                        || (commit_now && !(batch.is_empty() && delta.is_empty()));
                    if due && to_writer.send(sealed(&mut batch, &mut delta)).is_err() {
                        break; // the writer failed: its error is reported by the caller
                    }
                }
                if !batch.is_empty() || !delta.is_empty() {
                    let _ = to_writer.send(sealed(&mut batch, &mut delta));
                }
                Ok(sum)
            });
            for mut chunk in chunks {
                // A source that skips input is refused before anything of it is staged.
                if let Err(e) = pending.check(&chunk.delta) {
                    refused = Some(e);
                    break;
                }
                pending.apply(&chunk.delta);
                let mut accepted = Vec::new();
                dedupe.first_seen_all(&chunk.keys, &mut accepted);
                chunk.flag_dead_letters(&hasher, |k| dedupe.first_dead_letter(k));
                if to_apply.send((chunk, accepted)).is_err() {
                    break; // the applier failed: its error is reported below
                }
            }
            drop(to_apply);
            let panicked = |what: &str| StoreError::Corrupt {
                path: format!("<{what}>"),
                what: format!("{what} thread panicked"),
            };
            let applied = applier.join().unwrap_or_else(|_| Err(panicked("applier")));
            let written = writer.join().unwrap_or_else(|_| Err(panicked("writer")));
            applied.and_then(|sum| written.map(|end| (sum, end)))
        });
        match result {
            Ok((_, end)) if refused.is_some() => {
                // What came before the refused chunk is durable; nothing after it staged.
                self.position = end;
                self.settle_cells();
                Err(refused.map_or(StoreError::Poisoned, StoreError::from))
            }
            Ok((sum, end)) => {
                self.position = end;
                self.settle_cells();
                if checkpoint {
                    self.checkpoint_at(CheckpointMoment::Stopping);
                }
                Ok(sum)
            }
            Err(e) => {
                // The book may hold events the log does not.
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// [`Self::stage_stream`] on one thread, for a store that is handed the derived rows
    /// of each commit: each commit's rows are settled from the book before it is written.
    fn stage_each(
        &mut self,
        chunks: impl Iterator<Item = EncodedChunk>,
        commit_bytes: usize,
        durable: &mut (dyn FnMut(&SourceCheckpoint) + Send),
    ) -> Result<IngestSummary, StoreError> {
        let mut sum = IngestSummary::default();
        let mut commit = |engine: &mut Self| -> Result<(), StoreError> {
            let moved = !engine.staged_delta.is_empty();
            engine.commit()?;
            if moved {
                durable(&engine.sources);
            }
            Ok(())
        };
        for chunk in chunks {
            let commit_now = chunk.commit_after;
            sum += self.stage(chunk)?;
            if self.batch.len() >= commit_bytes
                || (commit_now && !(self.batch.is_empty() && self.staged_delta.is_empty()))
            {
                commit(self)?;
            }
        }
        commit(self)?;
        Ok(sum)
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
                        records: u64::from(self.batch.records),
                        bytes: self.batch.len() as u64,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
                self.position = pos;
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
        if self.poisoned
            || self.book.is_read_only()
            || self.position == self.checkpointed
            || !self.store.checkpoints()
        {
            return Ok(());
        }
        runs::compact(&mut self.book, &self.runs).map_err(damaged_states)?;
        // The positions first: kept for a later checkpoint than the one in place, they are
        // still right (the deltas replayed after the old one only move them forward).
        self.store.save_positions(self.position, &self.sources)?;
        let named = runs::save(&mut *self.store, &self.book, &self.runs, self.position)?;
        self.checkpointed = self.position;
        let old = std::mem::take(&mut self.runs);
        self.runs = runs::freeze(&mut *self.store, &mut self.book, old, named);
        Ok(())
    }

    /// Loads every call state still in the checkpoint's packs (an engine opened for
    /// folding loads them as events touch them): a server does, before it indexes and
    /// publishes, to find damage now rather than later.
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
        self.position.saturating_sub(self.checkpointed)
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
            Some(cells) => count(&CellsView { cells, book, now }),
            None => count(&Scan { book, now }),
        }
    }
}

/// A book loaded from a store, and the log positions it covers.
struct LoadedBook {
    book: CallBook,
    /// End of the log replayed into the book.
    position: LogPosition,
    /// Position of the checkpoint it started from (0: none).
    checkpointed: LogPosition,
    runs: RunSet,
    /// Where the sources stand at `position`.
    sources: SourceCheckpoint,
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
fn load_book(
    store: &mut dyn EventStore,
    dedupe_secret: [u8; 16],
    mut for_folding: bool,
) -> Result<LoadedBook, StoreError> {
    let mut skip_checkpoint = false;
    loop {
        let fresh = || (CallBook::new(dedupe_secret), 0, RunSet::default());
        let checkpoint = match skip_checkpoint {
            true => None,
            false => store.load_checkpoint(for_folding)?,
        };
        let (mut book, from, runs) = match checkpoint {
            None => fresh(),
            Some(cp) if for_folding && cp.fold.is_none() => {
                tracing::warn!("checkpoint incomplete; replaying the whole log");
                fresh()
            }
            Some(cp) => match from_checkpoint(store, &cp, dedupe_secret, for_folding)? {
                Some((book, runs)) => (book, cp.position, runs),
                None => {
                    tracing::warn!(
                        "checkpoint damaged or of an older version; replaying the whole log"
                    );
                    fresh()
                }
            },
        };
        // Events after the checkpoint are folded one by one: every state in memory first.
        if book.states().has_stored() && store_has_tail(store, from)? && load_states(&book).is_err()
        {
            tracing::warn!("checkpoint's call states damaged; replaying the whole log");
            skip_checkpoint = true;
            continue;
        }
        let mut replayed = 0u64;
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
            let hasher = book.key_hasher().clone();
            store.replay(from, &mut |rec| match rec {
                Record::Event(ev) => {
                    book.apply(&ev);
                    replayed += 1;
                }
                Record::DeadLetter(d) => {
                    book.note_dead_letter(dead_letter_key(&hasher, &d));
                }
                Record::Positions(d) => sources.apply(&d),
            })?
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
        });
    }
}

/// The book of a checkpoint and the runs behind it; `None` when any of it is damaged, of
/// an older version, or not what the open needs (a fold state for folding, none for a
/// query-only open). A book for folding has its last chunk of states in memory (new calls
/// go there), one for queries all of them; a writer's other chunks stay in their packs
/// (checked whole with the other runs) until read.
fn from_checkpoint(
    store: &mut dyn EventStore,
    cp: &crate::store::Checkpoint,
    dedupe_secret: [u8; 16],
    for_folding: bool,
) -> Result<Option<(CallBook, RunSet)>, StoreError> {
    let Some(query) = snapshot::decode_query(&cp.query) else {
        return Ok(None);
    };
    let packs = match &query.states {
        snapshot::StoredStates::Packs { packs, .. } => packs.as_slice(),
        snapshot::StoredStates::Inline(_) => &[],
    };
    let fold = match &cp.fold {
        Some(fold) => runs::load(store, fold, packs)?,
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
    let book = CallBook::from_parts(
        dedupe_secret,
        query.lines,
        states,
        query.newest_ts,
        fold_state,
    );
    let ready = if for_folding {
        last.is_none_or(|c| book.states().try_chunk(c).is_ok())
    } else {
        load_states(&book).is_ok()
    };
    Ok(ready.then_some((book, runs)))
}

/// Whether the log holds records after `from`.
fn store_has_tail(store: &mut dyn EventStore, from: LogPosition) -> Result<bool, StoreError> {
    let mut any = false;
    store.replay(from, &mut |_| any = true)?;
    Ok(any)
}

/// Loads every call state of `book` still in its packs, on two threads.
fn load_states(book: &CallBook) -> Result<(), ChunkDamaged> {
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

fn damaged_states(e: ChunkDamaged) -> StoreError {
    StoreError::Corrupt {
        path: "<checkpoint runs>".into(),
        what: e.to_string(),
    }
}

fn corrupt_input(what: String) -> StoreError {
    StoreError::Corrupt {
        path: "<staged input>".into(),
        what,
    }
}

/// How many events ahead [`apply_chunk`] prefetches a call's index slot.
const PREFETCH_AHEAD: usize = 32;

/// Applies the accepted events of `chunk` (`accepted`: one flag per event record, in
/// order) and appends what is kept (accepted events, dead letters, in input order) to
/// `batch`: copied into parts from `copy_to` when given, else (when everything is kept,
/// the usual case) the chunk's bytes are moved in as a part.
fn apply_chunk(
    calls: &mut CallsHalf<'_>,
    batch: &mut Batch,
    chunk: &mut EncodedChunk,
    accepted: &[bool],
    copy_to: Option<&mut PartPool>,
) -> Result<IngestSummary, StoreError> {
    if accepted.len() != chunk.folds.len() {
        return Err(corrupt_input("one dedupe flag per event expected".into()));
    }
    for (i, (item, &first)) in chunk.folds.iter().zip(accepted).enumerate() {
        if let Some(call) = chunk.folds.get(i + PREFETCH_AHEAD).and_then(FoldItem::call) {
            calls.prefetch(call);
        }
        if first {
            calls.try_apply(chunk.fold(item)).map_err(damaged_states)?;
        }
    }
    let kept_events = accepted.iter().filter(|&&a| a).count();
    // Every rejected input counts as rejected; a dead letter already stored is not again.
    let stored_dead =
        chunk.dead_letters - chunk.dead_letter_new.iter().filter(|&&n| !n).count() as u64;
    let sum = IngestSummary {
        accepted: kept_events as u64,
        duplicate: (accepted.len() - kept_events) as u64,
        rejected: chunk.dead_letters,
    };
    let records = u32::try_from(kept_events as u64 + stored_dead)
        .map_err(|_| corrupt_input("chunk too large".into()))?;
    let all_kept = kept_events == accepted.len() && stored_dead == chunk.dead_letters;
    let kept =
        |chunk: &EncodedChunk| without_duplicates(&chunk.bytes, accepted, &chunk.dead_letter_new);
    match (all_kept, copy_to) {
        (true, Some(pool)) => batch.append_copy(&chunk.bytes, records, pool),
        (true, None) => batch.append(std::mem::take(&mut chunk.bytes), records),
        (false, Some(pool)) => batch.append_copy(&kept(chunk)?, records, pool),
        (false, None) => batch.append(kept(chunk)?, records),
    }
    Ok(sum)
}

/// The records of `encoded` but the events flagged `false` in `accepted` and the dead
/// letters flagged `false` in `dead_new` (all dead letters kept when it is empty).
fn without_duplicates(
    encoded: &[u8],
    accepted: &[bool],
    dead_new: &[bool],
) -> Result<Vec<u8>, StoreError> {
    let mut flags = accepted.iter();
    let mut dead_flags = dead_new.iter();
    let mut kept = Vec::with_capacity(encoded.len());
    let mut records = Decoder::new(encoded);
    let mut start = 0;
    while let Some(kind) = records.skip_record() {
        let kind = kind.map_err(|e| corrupt_input(e.to_string()))?;
        let end = records.position();
        let keep = match kind {
            RecordKind::Event => flags.next().copied().unwrap_or(false),
            RecordKind::DeadLetter => dead_flags.next().copied().unwrap_or(true),
            RecordKind::Positions => true,
        };
        if keep {
            kept.extend_from_slice(&encoded[start..end]);
        }
        start = end;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::privacy::Pseudonymizer;
    use crate::domain::validate::validate_line;
    use crate::store::embedded::EmbeddedStore;

    const LINES: [&str; 4] = [
        r#"{"call_id":"a","type":"offered","ts":"2019-03-04T09:00:00+01:00"}"#,
        r#"{"call_id":"a","type":"announcement_end","ts":"2019-03-04T09:00:40+01:00"}"#,
        r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:01:40+01:00","agent":"op"}"#,
        r#"{"call_id":"a","type":"booking","ts":"2019-03-04T09:02:00+01:00","booking":"book"}"#,
    ];

    fn items(p: &Pseudonymizer) -> Vec<Record<'static>> {
        LINES
            .iter()
            .map(|l| Record::Event(validate_line(l.as_bytes(), p).expect("valid")))
            .collect()
    }

    fn open(dir: &std::path::Path) -> Engine {
        let store = EmbeddedStore::open(dir).expect("store");
        Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine")
    }

    #[test]
    fn watched_transitions_come_per_stage_with_timeouts_open_calls_and_a_reset() {
        use crate::domain::transitions::CallChange;
        use crate::store::fault::{DiskSwitch, FullDisk};
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let full = DiskSwitch::default();
        let store = FullDisk {
            inner: EmbeddedStore::open(dir.path()).expect("store"),
            fault: full.clone(),
        };
        let mut e =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        assert_eq!(e.drain_transitions(), None, "not watched: nothing kept");
        e.ingest(items(&p)[..1].to_vec()).expect("ingest");
        e.watch_transitions().expect("watch");
        e.ingest(items(&p)[1..].to_vec()).expect("ingest");
        let batch = e.drain_transitions().expect("watched");
        let changes: Vec<_> = batch.calls.iter().map(|t| t.change).collect();
        // Call a was offered before watching: told from its announcement end on.
        assert_eq!(
            changes,
            [
                CallChange::AnnouncementEnd,
                CallChange::Answered {
                    net_wait_ms: 60_000,
                    within_threshold: true
                },
                CallChange::Booking { bookings: 1 },
            ]
        );
        assert!(!batch.reset && batch.agents.is_empty());
        let ev = |l: &'static str| Record::Event(validate_line(l.as_bytes(), &p).expect("valid"));
        e.ingest([
            ev(r#"{"call_id":"b","type":"offered","ts":"2019-03-04T10:00:00+01:00"}"#),
            ev(r#"{"type":"agent_login","ts":"2019-03-04T10:00:01+01:00","agent":"op7"}"#),
        ])
        .expect("ingest");
        let batch = e.drain_transitions().expect("watched");
        assert_eq!(batch.calls.len(), 1);
        assert_eq!(&*batch.agents[0].agent, "op7");
        let anchor = batch.calls[0].at;
        assert_eq!(
            e.open_calls("cup").map(|c| c.anchor).collect::<Vec<_>>(),
            [anchor]
        );
        assert_eq!(e.open_calls("nope").count(), 0);
        let due = anchor + crate::domain::call::UNRESOLVED_AFTER;
        assert_eq!(e.next_timeout(), Some(due));
        e.handle_timeout(due);
        let batch = e.drain_transitions().expect("watched");
        assert_eq!(batch.calls[0].change, CallChange::Unresolved);
        assert_eq!(e.open_calls("cup").count(), 0);
        assert_eq!(e.next_timeout(), None);
        // A failed commit: recovery rebuilds the book and says so.
        full.fill();
        assert!(
            e.ingest([ev(r#"{"call_id":"c","type":"offered","ts":1}"#)])
                .is_err()
        );
        full.free();
        e.recover().expect("recover");
        let batch = e.drain_transitions().expect("still watched");
        assert!(batch.reset && batch.calls.is_empty());
        assert!(!e.drain_transitions().expect("watched").reset);
    }

    #[test]
    fn figures_survive_reopen_with_and_without_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let d = |s| crate::domain::time::parse_date(s).expect("date");
        let mut e = open(dir.path());
        let s = e.ingest(items(&p)).expect("ingest");
        assert_eq!(
            s,
            IngestSummary {
                accepted: 4,
                duplicate: 0,
                rejected: 0
            }
        );
        let t = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        assert_eq!((t.figures.answered, t.figures.bookings), (1, 1));
        assert_eq!(t.figures.avg_wait_s(), Some(60.0));
        drop(e);
        let mut e = open(dir.path());
        assert_eq!(e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
        let again = e.ingest(items(&p)).expect("ingest");
        assert_eq!(again.duplicate, 4);
        e.checkpoint().expect("checkpoint");
        drop(e);
        let e = open(dir.path());
        assert_eq!(e.uncheckpointed(), 0);
        assert_eq!(e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
        drop(e);
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let mut q = Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
            .expect("engine");
        assert!(q.book().is_read_only());
        assert_eq!(q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None), t);
        assert!(matches!(q.ingest(items(&p)), Err(StoreError::ReadOnly)));
        drop(q);
        // A log tail past the checkpoint makes a query-only open fold it in.
        let mut e = open(dir.path());
        let extra = r#"{"call_id":"b","type":"overflow","ts":"2019-03-05T09:00:00+01:00"}"#;
        e.ingest([Record::Event(
            validate_line(extra.as_bytes(), &p).expect("valid"),
        )])
        .expect("ingest");
        drop(e);
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let q = Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
            .expect("engine");
        assert!(!q.book().is_read_only());
        let t2 = q.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        assert_eq!(t2.figures.overflow, 1);
    }

    /// `n` offered events of calls `c{from}`.. in March 2019.
    fn offers(p: &Pseudonymizer, from: usize, n: usize) -> Vec<Record<'static>> {
        (from..from + n)
            .map(|i| {
                let ts = 1_551_690_000_000 + i as i64 * 1_000;
                let l = format!(r#"{{"call_id":"c{i}","type":"offered","ts":{ts}}}"#);
                Record::Event(validate_line(l.as_bytes(), p).expect("valid").into_owned())
            })
            .collect()
    }

    fn run_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("runs"))
            .map(|d| d.map(|e| e.expect("entry").path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    #[test]
    fn indexed_queries_follow_ingest_late_events_and_recovery() {
        use crate::store::fault::{DiskSwitch, FullDisk};
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let d = |s| crate::domain::time::parse_date(s).expect("date");
        let full = DiskSwitch::default();
        let store = FullDisk {
            inner: EmbeddedStore::open(dir.path()).expect("store"),
            fault: full.clone(),
        };
        let mut e =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        e.ingest(items(&p)[..2].to_vec()).expect("ingest");
        e.index_periods();
        let other = tempfile::tempdir().expect("tempdir");
        let mut scan = open(other.path());
        scan.ingest(items(&p)[..2].to_vec()).expect("ingest");
        let same = |a: &Engine, b: &Engine, wall: Millis| {
            let (from, to) = (d("2019-03-01"), d("2019-04-01"));
            for t in [None, Some(30_000)] {
                assert_eq!(
                    a.table1(wall, from, to, None, t),
                    b.table1(wall, from, to, None, t)
                );
                assert_eq!(
                    a.sla_year(wall, 2019, None, t, None),
                    b.sla_year(wall, 2019, None, t, None)
                );
            }
            let h1 = crate::domain::arguments::half("2019-H1").expect("half");
            assert_eq!(a.volume(wall, h1), b.volume(wall, h1));
            a.table1(wall, from, to, None, None).figures
        };
        // Open at the book's clock; unresolved 6 h later by the wall clock.
        assert_eq!(same(&e, &scan, 0).unresolved, 0);
        let later = crate::domain::time::parse_rfc3339("2019-03-04T16:00:00+01:00").expect("ts");
        assert_eq!(same(&e, &scan, later).unresolved, 1);
        // The rest, then a late answer (earlier than the first): the call moves bands.
        let late = r#"{"call_id":"a","type":"answered","ts":"2019-03-04T09:00:40.500+01:00","agent":"op"}"#;
        let mut rest = items(&p)[2..].to_vec();
        rest.push(Record::Event(
            validate_line(late.as_bytes(), &p).expect("valid"),
        ));
        for engine in [&mut e, &mut scan] {
            engine.ingest(rest.clone()).expect("ingest");
        }
        let f = same(&e, &scan, later);
        assert_eq!(
            (f.answered, f.answered_without_wait, f.unresolved),
            (1, 1, 0)
        );
        // A failed commit rebuilds the book, and its cells with it.
        full.fill();
        let extra = r#"{"call_id":"b","type":"overflow","ts":"2019-03-05T09:00:00+01:00"}"#;
        let extra = vec![Record::Event(
            validate_line(extra.as_bytes(), &p).expect("valid"),
        )];
        e.ingest(extra.clone()).expect_err("the disk is full");
        full.free();
        e.recover().expect("recovered");
        same(&e, &scan, later);
        for engine in [&mut e, &mut scan] {
            engine.ingest(extra.clone()).expect("ingest");
        }
        assert_eq!(same(&e, &scan, later).overflow, 1);
    }

    #[test]
    fn a_durable_commit_is_counted() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let mut e = open(dir.path());
        let before = crate::observe::METRICS.commits.load(Ordering::Relaxed);
        e.ingest(items(&p)).expect("ingest");
        assert!(crate::observe::METRICS.commits.load(Ordering::Relaxed) > before);
    }

    #[test]
    fn a_checkpoint_writes_only_what_is_new_and_the_book_maps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let mut e = open(dir.path());
        e.ingest(offers(&p, 0, 1_000)).expect("ingest");
        e.checkpoint().expect("checkpoint");
        assert_eq!(e.runs.keys.len(), 1);
        let first = run_files(dir.path());
        assert_eq!(
            first.len(),
            3,
            "one run of keys, one of calls, one pack of states"
        );
        let first_bytes: Vec<Vec<u8>> = first
            .iter()
            .map(|f| std::fs::read(f).expect("read"))
            .collect();
        // Ten more events, one of them a late event of an old call.
        let mut more = offers(&p, 1_000, 9);
        let late = r#"{"call_id":"c5","type":"answered","ts":1551690009000,"agent":"x"}"#;
        more.push(Record::Event(
            validate_line(late.as_bytes(), &p).expect("valid"),
        ));
        e.ingest(more).expect("ingest");
        e.checkpoint().expect("checkpoint");
        let (keys, calls) = (&e.runs.keys, &e.runs.calls);
        assert_eq!(
            (keys.len(), keys[1].keys),
            (2, 10),
            "a run of the 10 new keys"
        );
        assert_eq!(
            (calls.len(), calls[1].keys),
            (2, 9),
            "and one of the 9 new calls"
        );
        assert_eq!(e.book().parts().seen.layers().fresh().len(), 0);
        let now = run_files(dir.path());
        // The one chunk of states changed: its new pack replaced the old one.
        assert_eq!(now.len(), 5);
        assert_eq!(e.runs.states.len(), 1);
        for (f, bytes) in first.iter().zip(&first_bytes).take(2) {
            assert_eq!(
                &std::fs::read(f).expect("still there"),
                bytes,
                "old runs are not rewritten"
            );
        }
        // The mapped runs still dedupe, and reopening uses them (nothing replayed).
        let again = e.ingest(offers(&p, 990, 20)).expect("ingest");
        assert_eq!((again.accepted, again.duplicate), (1, 19));
        e.checkpoint().expect("checkpoint");
        drop(e);
        let mut e = open(dir.path());
        assert_eq!(e.uncheckpointed(), 0);
        assert_eq!(e.book().distinct_events(), 1_011);
        let again = e.ingest(offers(&p, 0, 1_010)).expect("ingest");
        assert_eq!((again.accepted, again.duplicate), (0, 1_010));
        // Small runs merge as they pile up: their number stays small.
        for i in 0..20 {
            e.ingest(offers(&p, 2_000 + i * 10, 10)).expect("ingest");
            e.checkpoint().expect("checkpoint");
        }
        assert!(e.runs.keys.len() <= 6, "{:?}", e.runs.keys);
        assert_eq!(
            run_files(dir.path()).len(),
            e.runs.keys.len() + e.runs.calls.len() + e.runs.states.len()
        );
        assert_eq!(e.book().distinct_events(), 1_211);
    }

    #[test]
    fn a_checkpoint_writes_only_changed_chunks_of_states_and_an_open_loads_what_is_read() {
        use crate::domain::state_chunks::CHUNK;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let d = |s| crate::domain::time::parse_date(s).expect("date");
        let table = |e: &Engine| e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        let mut e = open(dir.path());
        e.ingest(offers(&p, 0, 3 * CHUNK + 5)).expect("ingest");
        e.checkpoint().expect("checkpoint");
        assert_eq!(e.runs.states.len(), 1);
        assert_eq!(e.runs.states[0].keys, 4, "four chunks in the first pack");
        drop(e);

        // Reopened for folding: only the last chunk is in memory.
        let mut e = open(dir.path());
        assert_eq!(e.book().states().missing(), [0, 1, 2]);
        // A late event of call 5 (chunk 0) and a new call (chunk 3): chunk 0 is loaded.
        let late = r#"{"call_id":"c5","type":"abandoned","ts":1551690009000}"#;
        let mut more = offers(&p, 3 * CHUNK + 5, 1);
        more.push(Record::Event(
            validate_line(late.as_bytes(), &p).expect("valid"),
        ));
        e.ingest(more).expect("ingest");
        assert_eq!(e.book().states().missing(), [1, 2]);
        e.checkpoint().expect("checkpoint");
        let first_pack = e.runs.states[0].id;
        assert_eq!(e.runs.states.len(), 2);
        assert_eq!(
            e.runs.states[1].keys, 2,
            "the new pack holds chunks 0 and 3"
        );
        assert_eq!(
            e.runs.chunk_packs,
            [
                e.runs.states[1].id,
                first_pack,
                first_pack,
                e.runs.states[1].id
            ]
        );
        let want = table(&e);
        drop(e);

        // The first pack holds two of its four chunks: still kept. One more chunk moves
        // (a late event of call 4,100, chunk 1): then less than half of it is named, and
        // the next checkpoint takes its last chunk in.
        let mut e = open(dir.path());
        assert_eq!(table(&e), want, "the figures from the packs");
        let late = r#"{"call_id":"c4100","type":"abandoned","ts":1551694200000}"#;
        e.ingest([Record::Event(
            validate_line(late.as_bytes(), &p).expect("valid"),
        )])
        .expect("ingest");
        e.checkpoint().expect("checkpoint");
        assert!(e.runs.states.iter().any(|r| r.id == first_pack));
        e.ingest(offers(&p, 3 * CHUNK + 6, 1)).expect("ingest");
        e.checkpoint().expect("checkpoint");
        assert!(
            e.runs.states.iter().all(|r| r.id != first_pack),
            "rewritten"
        );
        assert_eq!(
            run_files(dir.path()).len(),
            e.runs.keys.len() + e.runs.calls.len() + e.runs.states.len()
        );
        let want = table(&e);
        drop(e);

        // A query-only open reads every chunk from the packs; a damaged pack makes the
        // open replay the log, with the same figures.
        let q = Engine::open_for_queries(
            Box::new(EmbeddedStore::open_read_only(dir.path()).expect("store")),
            [1; 16],
            MetricsConfig::default(),
        )
        .expect("engine");
        assert!(q.book().states().missing().is_empty());
        assert_eq!(table(&q), want);
        assert_eq!(q.uncheckpointed(), 0);
        drop(q);
        let pack = format!("runs/{:016x}.run", {
            let e = open(dir.path());
            e.runs.chunk_packs[1]
        });
        let mut b = std::fs::read(dir.path().join(&pack)).expect("read");
        b[40] ^= 1;
        std::fs::write(dir.path().join(&pack), b).expect("write");
        for for_queries in [false, true] {
            let store = EmbeddedStore::open(dir.path()).expect("store");
            let e = if for_queries {
                Engine::open_for_queries(Box::new(store), [1; 16], MetricsConfig::default())
            } else {
                Engine::open(Box::new(store), [1; 16], MetricsConfig::default())
            }
            .expect("engine");
            assert!(e.uncheckpointed() > 0, "replayed");
            assert_eq!(table(&e), want);
        }
    }

    /// Copies a store's directory (its files and runs).
    fn copy_store(from: &std::path::Path, to: &std::path::Path) {
        for sub in ["", "runs"] {
            std::fs::create_dir_all(to.join(sub)).expect("mkdir");
            for f in std::fs::read_dir(from.join(sub)).expect("list") {
                let f = f.expect("entry");
                if f.file_type().expect("type").is_file() && f.file_name() != "LOCK" {
                    std::fs::copy(f.path(), to.join(sub).join(f.file_name())).expect("copy");
                }
            }
        }
    }

    #[test]
    fn damaged_truncated_missing_or_old_checkpoint_files_replay_the_log_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let d = |s| crate::domain::time::parse_date(s).expect("date");
        let mut e = open(dir.path());
        e.ingest(offers(&p, 0, 300)).expect("ingest");
        e.checkpoint().expect("checkpoint");
        e.ingest(items(&p)).expect("ingest");
        e.checkpoint().expect("checkpoint");
        let want = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        drop(e);
        let runs = run_files(dir.path());
        assert_eq!(runs.len(), 5, "two runs of keys, two of calls, a pack");
        let name = |f: &std::path::Path| f.strip_prefix(dir.path()).expect("inside").to_owned();
        type Harm = Box<dyn Fn(&std::path::Path)>;
        let mut harms: Vec<(String, Harm)> = Vec::new();
        for run in &runs {
            let run = name(run);
            let (r1, r2, r3) = (run.clone(), run.clone(), run.clone());
            harms.push((
                format!("{run:?} flipped"),
                Box::new(move |d| {
                    let mut b = std::fs::read(d.join(&r1)).expect("read");
                    let mid = b.len() / 2;
                    b[mid] ^= 0x40;
                    std::fs::write(d.join(&r1), b).expect("write");
                }),
            ));
            harms.push((
                format!("{run:?} truncated"),
                Box::new(move |d| {
                    let b = std::fs::read(d.join(&r2)).expect("read");
                    std::fs::write(d.join(&r2), &b[..b.len() - 20]).expect("write");
                }),
            ));
            harms.push((
                format!("{run:?} missing"),
                Box::new(move |d| {
                    std::fs::remove_file(d.join(&r3)).expect("remove");
                }),
            ));
        }
        harms.push((
            "no runs".into(),
            Box::new(|d| {
                std::fs::remove_dir_all(d.join("runs")).expect("remove");
            }),
        ));
        harms.push((
            "a fold part of the previous version".into(),
            Box::new(|d| {
                let path = d.join("checkpoint.keys");
                let mut b = std::fs::read(&path).expect("read");
                b.truncate(16); // header and position
                let mut body = b"NWF5".to_vec();
                body.extend_from_slice(&[0; 24]);
                let crc = crc32fast::hash(&body);
                b.extend_from_slice(&body);
                b.extend_from_slice(&crc.to_le_bytes());
                std::fs::write(&path, b).expect("write");
            }),
        ));
        for (what, harm) in &harms {
            let copy = tempfile::tempdir().expect("tempdir");
            copy_store(dir.path(), copy.path());
            harm(copy.path());
            let mut e = open(copy.path());
            assert!(e.uncheckpointed() > 0, "{what}: the log is replayed");
            assert_eq!(e.book().distinct_events(), 304, "{what}");
            assert_eq!(
                e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None),
                want,
                "{what}"
            );
            let again = e.ingest(offers(&p, 0, 300)).expect("ingest");
            assert_eq!(again.duplicate, 300, "{what}");
            // The next checkpoint is whole again, and unnamed runs are gone.
            e.ingest(offers(&p, 300, 1)).expect("ingest");
            e.checkpoint().expect("checkpoint");
            drop(e);
            let e = open(copy.path());
            assert_eq!(e.uncheckpointed(), 0, "{what}");
            assert_eq!(e.book().distinct_events(), 305, "{what}");
            assert_eq!(run_files(copy.path()).len(), 3, "{what}");
        }
    }

    /// The embedded store, but its checkpoints cannot be written (a full disk, say).
    struct NoCheckpoints(EmbeddedStore);

    impl EventStore for NoCheckpoints {
        fn replay(
            &mut self,
            from: LogPosition,
            visit: &mut dyn FnMut(Record<'_>),
        ) -> Result<LogPosition, StoreError> {
            self.0.replay(from, visit)
        }

        fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
            self.0.commit(batch)
        }

        fn recover(&mut self) -> Result<(), StoreError> {
            self.0.recover()
        }

        fn load_checkpoint(
            &mut self,
            with_fold: bool,
        ) -> Result<Option<crate::store::Checkpoint>, StoreError> {
            self.0.load_checkpoint(with_fold)
        }

        fn save_checkpoint(
            &mut self,
            _position: LogPosition,
            _query: crate::store::PartWriter<'_>,
            _fold: crate::store::PartWriter<'_>,
            _runs: &[(crate::store::RunId, crate::store::PartWriter<'_>)],
        ) -> Result<(), StoreError> {
            Err(StoreError::io(
                std::path::Path::new("checkpoint"),
                std::io::Error::other("no space left on device"),
            ))
        }
    }

    #[test]
    fn a_failed_commit_is_recovered_without_loss_or_double_counting() {
        use crate::store::StoreErrorKind;
        use crate::store::fault::{DiskSwitch, FullDisk};
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let d = |s| crate::domain::time::parse_date(s).expect("date");
        let full = DiskSwitch::default();
        let store = FullDisk {
            inner: EmbeddedStore::open(dir.path()).expect("store"),
            fault: full.clone(),
        };
        let mut e =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        let all = items(&p);
        e.ingest(all[..2].to_vec()).expect("ingest");
        e.checkpoint().expect("checkpoint");
        full.fill();
        let err = e.ingest(all[2..].to_vec()).expect_err("the disk is full");
        assert_eq!(err.kind(), StoreErrorKind::Transient);
        assert!(e.is_poisoned());
        assert!(matches!(
            e.ingest(all[2..].to_vec()),
            Err(StoreError::Poisoned)
        ));
        assert_eq!(
            e.recover().expect_err("still full").kind(),
            StoreErrorKind::Transient
        );
        assert!(e.is_poisoned());
        full.free();
        e.recover().expect("space freed");
        assert!(!e.is_poisoned());
        // The failed commit's events were never acknowledged: they are not in the book,
        // and pushing them again counts them once.
        assert_eq!(e.book().distinct_events(), 2);
        let again = e.ingest(all[2..].to_vec()).expect("ingest");
        assert_eq!((again.accepted, again.duplicate), (2, 0));
        let t = e.table1(0, d("2019-03-01"), d("2019-04-01"), None, None);
        drop(e);
        let other = tempfile::tempdir().expect("tempdir");
        let mut fresh = open(other.path());
        fresh.ingest(items(&p)).expect("ingest");
        assert_eq!(
            fresh.table1(0, d("2019-03-01"), d("2019-04-01"), None, None),
            t
        );
        let reopened = open(dir.path());
        assert_eq!(reopened.book().distinct_events(), 4);
    }

    #[test]
    fn an_import_whose_checkpoint_fails_still_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let store = NoCheckpoints(EmbeddedStore::open(dir.path()).expect("store"));
        let mut e =
            Engine::open(Box::new(store), [1; 16], MetricsConfig::default()).expect("engine");
        let hasher = e.key_hasher();
        let mut chunk = EncodedChunk::default();
        for l in LINES {
            chunk.push_event(&validate_line(l.as_bytes(), &p).expect("valid"), &hasher);
        }
        let sum = e
            .stage_stream([chunk].into_iter(), 1, true, None, &mut |_| {})
            .expect("the events are committed: the import succeeds");
        assert_eq!(sum.accepted, 4);
        assert!(!e.is_poisoned());
        drop(e);
        let e = open(dir.path());
        assert!(e.uncheckpointed() > 0, "no checkpoint was written");
        assert_eq!(e.book().distinct_events(), 4);
    }

    #[test]
    fn a_batch_with_duplicates_logs_exactly_the_kept_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymizer::new([0; 32]);
        let mut e = open(dir.path());
        let first: Vec<_> = items(&p).into_iter().take(2).collect();
        e.ingest(first).expect("ingest");
        // Old, new, old, dead letter, new: the log must get only the new ones in order.
        let all = items(&p);
        let mixed = vec![
            all[0].clone(),
            all[2].clone(),
            all[1].clone(),
            Record::DeadLetter(DeadLetter {
                source: "t".into(),
                position: 9,
                code: "empty".into(),
                reason: "empty line".into(),
                raw: (&b""[..]).into(),
                truncated_from: None,
                received_ms: None,
            }),
            all[3].clone(),
        ];
        let sum = e.ingest(mixed).expect("ingest");
        assert_eq!(
            sum,
            IngestSummary {
                accepted: 2,
                duplicate: 2,
                rejected: 1
            }
        );
        drop(e);
        // No checkpoint was written: reopening replays the log alone.
        let mut e = open(dir.path());
        assert_eq!(e.book().distinct_events(), 4);
        let mut dead = Vec::new();
        e.dead_letters(&mut |d| dead.push(d.position))
            .expect("dead letters");
        assert_eq!(dead, vec![9]);
    }

    fn dead(source: &str, position: u64, raw: &'static [u8]) -> Record<'static> {
        Record::DeadLetter(DeadLetter {
            source: source.to_owned().into(),
            position,
            code: "invalid_json".into(),
            reason: "not JSON".into(),
            raw: raw.into(),
            truncated_from: None,
            received_ms: None,
        })
    }

    #[test]
    fn a_chunk_of_its_dead_letters_alone_keeps_them_as_encoded_and_no_event() {
        let p = Pseudonymizer::new([0; 32]);
        let hasher = KeyHasher::new([1; 16]);
        let mut chunk = EncodedChunk::default();
        let mut wanted = Vec::new();
        for (i, record) in items(&p).into_iter().enumerate() {
            let Record::Event(ev) = record else { continue };
            chunk.push_event(&ev, &hasher);
            let Record::DeadLetter(d) = dead("t", i as u64 + 1, b"not json") else {
                unreachable!()
            };
            chunk.push_dead_letter(&d);
            wanted.push(d);
        }
        chunk.set_lines(8);
        chunk.rebase_positions(100);
        let only = chunk.dead_letters_only();
        assert_eq!((only.events(), only.lines()), (0, 8));
        let got: Vec<_> = Decoder::new(&only.bytes)
            .map(|r| match r.expect("decodes") {
                Record::DeadLetter(d) => d,
                other => panic!("not a dead letter: {other:?}"),
            })
            .collect();
        let positions: Vec<u64> = got.iter().map(|d| d.position).collect();
        assert_eq!(positions, [101, 102, 103, 104], "rebased, in order");
        assert!(
            got.iter()
                .all(|d| d.raw.as_ref() == b"not json" && d.code == "invalid_json")
        );
        assert_eq!(got.len(), wanted.len());
    }

    fn stored_dead_letters(dir: &std::path::Path) -> usize {
        let mut n = 0;
        let mut store = EmbeddedStore::open(dir).expect("store");
        store
            .replay(0, &mut |r| {
                n += usize::from(matches!(r, Record::DeadLetter(_)))
            })
            .expect("replay");
        n
    }

    #[test]
    fn a_dead_letter_sent_again_is_stored_once_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let batch = || vec![dead("f", 1, b"{"), dead("f", 2, b"x"), dead("g", 1, b"{")];
        let mut e = open(dir.path());
        let first = e.ingest(batch()).expect("ingest");
        assert_eq!(first.rejected, 3);
        // Sent again: still counted as rejected, not stored again.
        assert_eq!(e.ingest(batch()).expect("ingest").rejected, 3);
        drop(e);
        assert_eq!(stored_dead_letters(dir.path()), 3);
        // After a restart without a checkpoint (the log is replayed) ...
        let mut e = open(dir.path());
        e.ingest(batch()).expect("ingest");
        e.checkpoint().expect("checkpoint");
        drop(e);
        assert_eq!(stored_dead_letters(dir.path()), 3);
        // ... and from the checkpoint alone; another line at a known position is new.
        let mut e = open(dir.path());
        assert_eq!(e.uncheckpointed(), 0);
        e.ingest(batch()).expect("ingest");
        e.ingest([dead("f", 1, b"{\"other\"")]).expect("ingest");
        let mut listed = Vec::new();
        e.dead_letters(&mut |d| listed.push((d.source.to_string(), d.position)))
            .expect("list");
        assert_eq!(listed.len(), 4);
        drop(e);
        assert_eq!(stored_dead_letters(dir.path()), 4);
    }

    #[test]
    fn dead_letters_stored_twice_before_dedupe_are_listed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = EmbeddedStore::open(dir.path()).expect("store");
        let mut bytes = Vec::new();
        for _ in 0..2 {
            let Record::DeadLetter(d) = dead("f", 7, b"{") else {
                unreachable!()
            };
            encode_dead_letter(&mut bytes, &d);
        }
        let mut batch = Batch::default();
        batch.append(bytes, 2);
        store.commit(&batch).expect("commit");
        drop(store);
        let mut e = open(dir.path());
        let mut n = 0;
        e.dead_letters(&mut |_| n += 1).expect("list");
        assert_eq!(n, 1);
    }
}
