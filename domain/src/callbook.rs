//! Everything the figures need, folded from the accepted events: the dedupe keys, one
//! [`CallState`] per call, the interned lines and the newest `ts` seen (spec §1–§2).

use super::call::{CallRecord, CallState, LineId};
use super::dedupe::{CallKey, DedupeKey, KeyHasher, KeySet};
use super::event::{DEFAULT_LINE, Event, EventType};
use super::key_runs::{FrozenTable, Layered};
use super::state_chunks::{ChunkDamaged, SharedChunks, StateChunks};
use super::time::Millis;
use std::collections::HashMap;

/// Result of offering one valid event to the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Accepted,
    Duplicate,
}

/// What folding needs besides the states: dedupe keys, call index, dead-letter keys.
pub type FoldState = (KeySet, CallIndex, KeySet);

/// Line name (UTF-8 bytes) -> interned id.
type LineIds = HashMap<Box<[u8]>, LineId, foldhash::fast::RandomState>;

/// Call key -> index of its state: frozen runs of a long history and the calls since.
pub type CallIndex = Layered<u32>;

/// The part of an event that folding reads (the rest only feeds its dedupe key): the
/// import path's parse workers compute these, so the folding thread decodes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold<'a> {
    pub kind: EventType,
    pub ts: Millis,
    /// `None` for agent events.
    pub call: Option<CallKey>,
    /// The line name, read only on `offered`.
    pub line: Option<&'a [u8]>,
    /// The operator, read only on agent events (and only when they are tracked:
    /// [`CallBook::track_agents`]).
    pub agent: Option<&'a [u8]>,
}

impl<'a> Fold<'a> {
    pub fn of(ev: &'a Event<'_>, hasher: &KeyHasher) -> Self {
        Self {
            kind: ev.kind,
            ts: ev.ts,
            call: ev.call_id.as_deref().map(|c| hasher.call_key(c.as_bytes())),
            line: ev.line.as_deref().map(str::as_bytes),
            agent: ev.agent.as_deref().map(str::as_bytes),
        }
    }
}

/// The aggregate state of every call. Pure: no I/O, no clock (callers pass `now`).
///
/// States live in shared chunks (see [`StateChunks`]: a snapshot shares them, a checkpoint
/// writes the changed ones, a store opened from one loads them as they are read); the
/// index from call (the keyed hash of its `call_id`) to state and the dedupe keys are
/// needed only to fold events in, so a book opened for queries alone may come without
/// them ([`Self::is_read_only`]).
pub struct CallBook {
    hasher: KeyHasher,
    seen: KeySet,
    /// Identities of the dead letters stored (see [`KeyHasher::dead_letter_key`]), so
    /// that the same rejected input sent again is not stored again.
    dead_letters: KeySet,
    index: CallIndex,
    states: StateChunks,
    lines: Vec<Box<str>>,
    line_ids: LineIds,
    newest_ts: Option<Millis>,
    read_only: bool,
    /// Events announced by [`Self::reserve`], room made for them on first use.
    planned: usize,
    /// What changed since [`Self::take_changes`], when tracked ([`Self::track_changes`]).
    changes: Option<Changes>,
}

/// The calls changed since the last [`CallBook::take_changes`]: the state each existing
/// call had before its first change (one copy per call, however many events it gets),
/// and the calls created since (they had no state before).
#[derive(Debug, Default)]
pub struct Changes {
    /// Calls from this index on were created since the last take.
    pub created_from: usize,
    /// Earlier calls changed since, with their state before the first change.
    pub before: Vec<(u32, CallState)>,
    /// One bit per call below `created_from`: its state is in `before` already.
    noted: Vec<u64>,
    /// The accepted agent events since, in input order, when tracked
    /// ([`CallBook::track_agents`]).
    pub agents: Option<Vec<AgentEvent>>,
}

/// One accepted agent event (operator presence), as [`Changes`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent {
    pub kind: EventType,
    pub ts: Millis,
    pub agent: Box<str>,
}

impl Changes {
    /// Notes the state of call `at` (below `created_from`) before it changes.
    #[inline]
    fn note(&mut self, at: usize, state: &CallState) {
        let (word, bit) = (at / 64, 1u64 << (at % 64));
        if self.noted.len() <= word {
            self.noted
                .resize(self.created_from.div_ceil(64).max(word + 1), 0);
        }
        if self.noted[word] & bit == 0 {
            self.noted[word] |= bit;
            self.before.push((at as u32, *state));
        }
    }
}

impl CallBook {
    pub fn new(dedupe_secret: [u8; 16]) -> Self {
        let mut book = Self {
            hasher: KeyHasher::new(dedupe_secret),
            seen: KeySet::default(),
            dead_letters: KeySet::default(),
            index: CallIndex::default(),
            states: StateChunks::default(),
            lines: Vec::new(),
            line_ids: HashMap::default(),
            newest_ts: None,
            read_only: false,
            planned: 0,
            changes: None,
        };
        book.intern(DEFAULT_LINE.as_bytes());
        book
    }

    /// Announces about `events` more events, so that the tables are sized once (no
    /// rehashing during a big import). The room is made by the fold halves on first use,
    /// on their own threads: clearing tens of MB of fresh memory then overlaps parsing.
    pub fn reserve(&mut self, events: usize) {
        self.planned += events;
    }

    /// The dedupe key function of this book (for computing keys on other threads).
    pub fn key_hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Folds a valid event in; the first event of a key wins, later ones are duplicates.
    pub fn apply(&mut self, ev: &Event<'_>) -> Applied {
        let key = self.hasher.key(ev);
        let fold = Fold::of(ev, &self.hasher);
        self.apply_fold(fold, key)
    }

    /// Folds one event given by its [`Fold`] view and dedupe key.
    ///
    /// # Panics
    /// On a read-only book: the engine never folds events into one.
    pub fn apply_fold(&mut self, ev: Fold<'_>, key: DedupeKey) -> Applied {
        match self.try_apply_fold(ev, key) {
            Ok(applied) => applied,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Self::apply`], failing when the state of the event's call is stored and
    /// damaged (its key is then seen but the event not applied: the book is to be built
    /// again from the log).
    pub fn try_apply(&mut self, ev: &Event<'_>) -> Result<Applied, ChunkDamaged> {
        let key = self.hasher.key(ev);
        let fold = Fold::of(ev, &self.hasher);
        self.try_apply_fold(fold, key)
    }

    fn try_apply_fold(&mut self, ev: Fold<'_>, key: DedupeKey) -> Result<Applied, ChunkDamaged> {
        let (mut dedupe, mut calls) = self.split_fold();
        if dedupe.first_seen(key) {
            calls.try_apply(ev)?;
            Ok(Applied::Accepted)
        } else {
            Ok(Applied::Duplicate)
        }
    }

    /// The two halves of folding, so that they can run on two threads: deciding which
    /// events are duplicates (by key, in input order) and applying the accepted ones to
    /// the call states (in any order: every state field is a minimum or a count).
    ///
    /// # Panics
    /// On a read-only book.
    pub fn split_fold(&mut self) -> (DedupeHalf<'_>, CallsHalf<'_>) {
        assert!(!self.read_only, "events folded into a read-only call book");
        let planned = std::mem::take(&mut self.planned);
        (
            DedupeHalf {
                seen: &mut self.seen,
                dead_letters: &mut self.dead_letters,
                planned,
            },
            CallsHalf {
                planned,
                index: &mut self.index,
                states: &mut self.states,
                lines: &mut self.lines,
                line_ids: &mut self.line_ids,
                newest_ts: &mut self.newest_ts,
                changes: self.changes.as_mut(),
            },
        )
    }

    /// From now on, keeps what changes (see [`Self::take_changes`]).
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(|| Changes {
            created_from: self.states.len(),
            ..Changes::default()
        });
    }

    /// Stops keeping what changes (see [`Self::track_changes`]): what was kept is dropped.
    pub fn untrack_changes(&mut self) {
        self.changes = None;
    }

    /// How many distinct dead letters the store holds (their identities are kept).
    pub fn dead_letter_count(&self) -> u64 {
        self.dead_letters.len() as u64
    }

    /// From now on, also keeps the accepted agent events (see [`Changes::agents`]);
    /// starts tracking changes if it was not.
    pub fn track_agents(&mut self) {
        self.track_changes();
        if let Some(changes) = &mut self.changes {
            changes.agents.get_or_insert_with(Vec::new);
        }
    }

    /// What changed since tracking began or the last take (`None` when not tracked),
    /// and starts over.
    pub fn take_changes(&mut self) -> Option<Changes> {
        let changes = self.changes.as_mut()?;
        let mut noted = std::mem::take(&mut changes.noted);
        for &(at, _) in &changes.before {
            noted[at as usize / 64] = 0;
        }
        let next = Changes {
            created_from: self.states.len(),
            before: Vec::new(),
            noted,
            agents: changes.agents.as_ref().map(|_| Vec::new()),
        };
        Some(std::mem::replace(changes, next))
    }

    /// Every call's state, by number (the order calls were first seen in).
    pub fn states(&self) -> &StateChunks {
        &self.states
    }

    /// The states as they are now, for a snapshot (see [`StateChunks::share`]).
    pub fn share_states(&mut self) -> SharedChunks {
        self.states.share()
    }

    /// The state of call `i`.
    pub fn state(&self, i: u32) -> &CallState {
        self.states.get(i)
    }

    /// Loads every call state a checkpoint left stored (a book must hold them all before
    /// it is published or indexed); fails when stored states are damaged.
    pub fn try_load_states(&self) -> Result<(), ChunkDamaged> {
        self.states.try_load_all()
    }

    /// After a checkpoint wrote every chunk of states that changed.
    pub fn states_checkpointed(&mut self) {
        self.states.clear_dirty();
    }

    /// Right after a checkpoint wrote the states to `source`: the chunks of calls with
    /// nothing at or after `horizon` leave memory (see [`StateChunks::release_settled`]).
    pub fn release_settled_states(
        &mut self,
        source: std::sync::Arc<dyn super::state_chunks::ChunkSource>,
        horizon: Millis,
    ) -> usize {
        self.states.release_settled(source, |chunk| {
            chunk.iter().all(|s| s.latest().is_none_or(|t| t < horizon))
        })
    }

    /// Counts chunk `c` of the states as changed (loaded first): the next checkpoint
    /// writes it again.
    pub fn rewrite_states(&mut self, c: usize) -> Result<(), ChunkDamaged> {
        self.states.try_rewrite(c)
    }

    /// The line a call counts on (the default line without an `offered`).
    pub fn line_of(&self, state: &CallState) -> LineId {
        if state.offered == super::call::NONE {
            self.line_id(DEFAULT_LINE).unwrap_or(LineId::MAX)
        } else {
            state.line
        }
    }

    /// The interned id of a line name, if the book has seen it.
    pub fn line_id(&self, name: &str) -> Option<LineId> {
        self.line_ids.get(name.as_bytes()).copied()
    }

    /// The record of one call at clock `now`.
    pub fn record(&self, state: &CallState, now: Millis) -> CallRecord<'_> {
        state.record(now, self.line_name(state))
    }

    fn intern(&mut self, name: &[u8]) -> LineId {
        intern(&mut self.lines, &mut self.line_ids, name)
    }

    /// The name of an interned line id (the default line for an unknown one).
    pub fn line_name_of(&self, id: LineId) -> &str {
        self.lines.get(id as usize).map_or(DEFAULT_LINE, |s| s)
    }

    fn line_name(&self, state: &CallState) -> &str {
        if state.offered == super::call::NONE {
            DEFAULT_LINE
        } else {
            self.lines
                .get(state.line as usize)
                .map_or(DEFAULT_LINE, |s| s)
        }
    }

    /// Notes a stored dead letter's identity (replaying a log); true when it was new.
    pub fn note_dead_letter(&mut self, key: DedupeKey) -> bool {
        self.dead_letters.insert(key)
    }

    /// The clock of spec §2: the later of the wall clock and the newest accepted `ts`.
    pub fn clock(&self, wall: Millis) -> Millis {
        self.newest_ts.map_or(wall, |n| n.max(wall))
    }

    /// Every call's record at clock `now`.
    pub fn records(&self, now: Millis) -> impl Iterator<Item = CallRecord<'_>> + '_ {
        self.states.iter().map(move |s| self.record(s, now))
    }

    /// Every line named by an `offered` event so far, and the default line.
    pub fn line_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.lines.iter().map(|l| &**l)
    }

    pub fn calls(&self) -> usize {
        self.states.len()
    }

    pub fn distinct_events(&self) -> usize {
        self.seen.len()
    }

    pub fn newest_ts(&self) -> Option<Millis> {
        self.newest_ts
    }

    /// True when opened for queries only (no dedupe keys, no call index).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Parts for a snapshot (see the store's snapshot codec).
    pub fn parts(&self) -> BookParts<'_> {
        BookParts {
            seen: &self.seen,
            dead_letters: &self.dead_letters,
            index: &self.index,
            states: &self.states,
            lines: &self.lines,
            newest_ts: self.newest_ts,
        }
    }

    /// After a checkpoint wrote every dedupe key and call of the book into `seen` and
    /// `calls` (runs): they replace the book's, whose fresh keys are dropped from memory.
    pub fn freeze(&mut self, seen: Vec<FrozenTable<()>>, calls: Vec<FrozenTable<u32>>) {
        self.seen.freeze(seen);
        self.index.freeze(calls);
    }

    /// Rebuilds a book from snapshot parts. Without `seen` and `index` the book is
    /// read-only: it answers queries but takes no events.
    pub fn from_parts(
        dedupe_secret: [u8; 16],
        lines: Vec<Box<str>>,
        states: StateChunks,
        newest_ts: Option<Millis>,
        fold_state: Option<FoldState>,
    ) -> Self {
        let mut book = Self::new(dedupe_secret);
        book.lines.clear();
        book.line_ids.clear();
        for l in lines {
            book.intern(l.as_bytes());
        }
        // Calls without an `offered` count on the default line: it always has an id.
        book.intern(DEFAULT_LINE.as_bytes());
        book.states = states;
        book.newest_ts = newest_ts;
        match fold_state {
            Some((seen, ids, dead_letters)) => {
                book.seen = seen;
                book.dead_letters = dead_letters;
                book.index = ids;
            }
            None => book.read_only = true,
        }
        book
    }
}

fn intern(lines: &mut Vec<Box<str>>, ids: &mut LineIds, name: &[u8]) -> LineId {
    if let Some(&id) = ids.get(name) {
        return id;
    }
    let id = LineId::try_from(lines.len()).unwrap_or(LineId::MAX);
    // Names come from validated events: the lossy path never replaces anything.
    lines.push(String::from_utf8_lossy(name).into());
    ids.insert(name.into(), id);
    id
}

/// Dedupe half of a [`CallBook`] (see [`CallBook::split_fold`]).
pub struct DedupeHalf<'a> {
    seen: &'a mut KeySet,
    dead_letters: &'a mut KeySet,
    /// Keys announced by [`CallBook::reserve`], not yet made room for.
    planned: usize,
}

impl DedupeHalf<'_> {
    fn make_room(&mut self) {
        if self.planned > 0 {
            self.seen.reserve(std::mem::take(&mut self.planned));
        }
    }

    /// True the first time a key is offered: the event is accepted.
    pub fn first_seen(&mut self, key: DedupeKey) -> bool {
        self.make_room();
        self.seen.insert(key)
    }

    /// True the first time a dead letter's identity is offered: it is stored.
    pub fn first_dead_letter(&mut self, key: DedupeKey) -> bool {
        self.dead_letters.insert(key)
    }

    /// [`Self::first_seen`] of each key in order, pushed to `out` (faster in bulk).
    pub fn first_seen_all(&mut self, keys: &[DedupeKey], out: &mut Vec<bool>) {
        self.make_room();
        self.seen.insert_all(keys, out);
    }
}

/// Call-state half of a [`CallBook`] (see [`CallBook::split_fold`]).
pub struct CallsHalf<'a> {
    /// Events announced by [`CallBook::reserve`] (about 4 per call), not yet made room for.
    planned: usize,
    index: &'a mut CallIndex,
    states: &'a mut StateChunks,
    lines: &'a mut Vec<Box<str>>,
    line_ids: &'a mut LineIds,
    newest_ts: &'a mut Option<Millis>,
    changes: Option<&'a mut Changes>,
}

impl CallsHalf<'_> {
    /// Starts loading what applying an event of `call` will read first (bulk callers
    /// call this a few events ahead).
    pub fn prefetch(&self, call: CallKey) {
        self.index.prefetch(call);
    }

    /// Applies one accepted (not duplicate) event.
    ///
    /// # Panics
    /// When the state it changes must be loaded and is damaged: see [`Self::try_apply`].
    pub fn apply(&mut self, ev: Fold<'_>) {
        if let Err(e) = self.try_apply(ev) {
            panic!("{e}");
        }
    }

    /// Applies one accepted (not duplicate) event; fails, changing nothing, when the
    /// state of its call is stored and damaged.
    pub fn try_apply(&mut self, ev: Fold<'_>) -> Result<(), ChunkDamaged> {
        if self.planned > 0 {
            let calls = std::mem::take(&mut self.planned) / 4;
            self.index.reserve(calls);
            self.states.reserve(calls);
        }
        if ev.kind.is_agent_event() {
            *self.newest_ts = Some(self.newest_ts.map_or(ev.ts, |n| n.max(ev.ts)));
            // Only moves the clock; kept for presence when asked for.
            if let Some(log) = self.changes.as_deref_mut().and_then(|c| c.agents.as_mut())
                && let Some(agent) = ev.agent
            {
                log.push(AgentEvent {
                    kind: ev.kind,
                    ts: ev.ts,
                    agent: String::from_utf8_lossy(agent).into(),
                });
            }
            return Ok(());
        }
        let Some(call) = ev.call else {
            *self.newest_ts = Some(self.newest_ts.map_or(ev.ts, |n| n.max(ev.ts)));
            return Ok(());
        };
        // The call's state is loaded before anything changes: a damaged chunk of an
        // existing call leaves the book as it was. (A new call's goes to the last chunk,
        // which a book opened for folding holds.)
        let (at, new) = self.index.get_or_insert(call, self.states.len() as u32);
        if new {
            self.states.try_push(CallState::default())?;
        } else {
            self.states.try_get(at)?;
        }
        *self.newest_ts = Some(self.newest_ts.map_or(ev.ts, |n| n.max(ev.ts)));
        let line = match ev.kind {
            EventType::Offered => Some(intern(
                self.lines,
                self.line_ids,
                ev.line.unwrap_or(DEFAULT_LINE.as_bytes()),
            )),
            _ => None,
        };
        if let Some(changes) = self.changes.as_deref_mut()
            && (at as usize) < changes.created_from
        {
            changes.note(at as usize, self.states.try_get(at)?);
        }
        let state = self.states.try_get_mut(at)?;
        match line {
            Some(line) => {
                let lines = &*self.lines;
                state.apply_offered(ev.ts, line, |a, b| lines[a as usize] < lines[b as usize]);
            }
            None => state.apply(ev.kind, ev.ts),
        }
        Ok(())
    }
}

/// Borrowed view of a book's state, for snapshots.
pub struct BookParts<'a> {
    pub seen: &'a KeySet,
    pub dead_letters: &'a KeySet,
    pub index: &'a CallIndex,
    pub states: &'a StateChunks,
    pub lines: &'a [Box<str>],
    pub newest_ts: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Outcome;
    use crate::privacy::Pseudonymizer;
    use crate::validate::validate_line;

    fn feed(book: &mut CallBook, lines: &[&str]) -> Vec<Applied> {
        let p = Pseudonymizer::new([0; 32]);
        lines
            .iter()
            .map(|l| book.apply(&validate_line(l.as_bytes(), &p).expect("valid")))
            .collect()
    }

    #[test]
    fn first_received_wins_and_instants_compare() {
        let mut b = CallBook::new([1; 16]);
        let r = feed(
            &mut b,
            &[
                r#"{"call_id":"c","type":"booking","ts":1551682805250,"booking":"book"}"#,
                r#"{"call_id":"c","type":"booking","ts":"2019-03-04T08:00:05.250+01:00","booking":"book"}"#,
                r#"{"call_id":"c","type":"booking","ts":"2019-03-04T07:00:05.2501Z","booking":"book"}"#,
                r#"{"call_id":"c","type":"booking","ts":1551682805250,"booking":"move"}"#,
            ],
        );
        assert_eq!(
            r,
            [
                Applied::Accepted,
                Applied::Duplicate,
                Applied::Duplicate,
                Applied::Accepted
            ]
        );
        let rec: Vec<_> = b.records(0).collect();
        assert_eq!(rec[0].bookings, 2);
    }

    #[test]
    fn event_id_duplicate_keeps_the_first_whatever_it_carries() {
        let mut b = CallBook::new([1; 16]);
        feed(
            &mut b,
            &[
                r#"{"event_id":"e1","call_id":"c","type":"offered","ts":0,"line":"prelievi"}"#,
                r#"{"event_id":"e1","call_id":"c","type":"offered","ts":0,"line":"cup"}"#,
                r#"{"event_id":"e1","call_id":"d","type":"answered","ts":5,"agent":"a"}"#,
            ],
        );
        assert_eq!(b.calls(), 1);
        let rec: Vec<_> = b.records(0).collect();
        assert_eq!(rec[0].line, "prelievi");
    }

    #[test]
    fn line_rules() {
        let mut b = CallBook::new([1; 16]);
        feed(
            &mut b,
            &[
                r#"{"event_id":"1","call_id":"a","type":"offered","ts":10,"line":"zeta"}"#,
                r#"{"event_id":"2","call_id":"a","type":"offered","ts":10,"line":"prelievi"}"#,
                r#"{"event_id":"3","call_id":"a","type":"offered","ts":11,"line":"alfa"}"#,
                r#"{"event_id":"4","call_id":"b","type":"offered","ts":10,"line":"zeta"}"#,
                r#"{"event_id":"5","call_id":"b","type":"offered","ts":10}"#,
                r#"{"call_id":"c","type":"queued","ts":10}"#,
            ],
        );
        let mut got: Vec<_> = b.records(0).map(|r| (r.anchor, r.line)).collect();
        got.sort();
        // Ties need distinct events (event_id): without one, the second `offered` at the
        // same instant is a duplicate. "cup" (absent line) < "zeta"; call c has no offered.
        assert_eq!(got, [(10, "cup"), (10, "cup"), (10, "prelievi")]);
    }

    #[test]
    fn agent_events_move_the_clock_only() {
        let mut b = CallBook::new([1; 16]);
        feed(
            &mut b,
            &[
                r#"{"call_id":"a","type":"offered","ts":0}"#,
                r#"{"type":"agent_login","ts":21600000,"agent":"op1"}"#,
            ],
        );
        assert_eq!(b.calls(), 1);
        let now = b.clock(0);
        assert_eq!(now, 21_600_000);
        assert_eq!(
            b.records(now).next().map(|r| r.outcome),
            Some(Outcome::Unresolved)
        );
    }

    #[test]
    fn agent_and_call_events_share_one_key_space_and_duplicates_keep_the_clock() {
        let mut b = CallBook::new([1; 16]);
        let r = feed(
            &mut b,
            &[
                r#"{"event_id":"e1","type":"agent_login","ts":1000,"agent":"op1"}"#,
                // Same event_id on a call event: a duplicate, whatever it carries.
                r#"{"event_id":"e1","call_id":"a","type":"offered","ts":500}"#,
                r#"{"event_id":"e2","call_id":"b","type":"offered","ts":2000}"#,
                // Duplicates far in the future, of an agent and of a call event: no clock move.
                r#"{"event_id":"e2","type":"agent_logout","ts":99000000,"agent":"op1"}"#,
                r#"{"event_id":"e1","call_id":"c","type":"offered","ts":98000000}"#,
            ],
        );
        use Applied::{Accepted, Duplicate};
        assert_eq!(r, [Accepted, Duplicate, Accepted, Duplicate, Duplicate]);
        assert_eq!(b.calls(), 1, "only call b exists");
        assert_eq!(b.newest_ts(), Some(2000));
        assert_eq!(b.clock(0), 2000);
        assert_eq!(
            b.records(b.clock(0)).next().map(|r| r.outcome),
            Some(Outcome::Open)
        );
    }

    #[test]
    fn line_names_are_those_seen_and_the_default() {
        let mut b = CallBook::new([1; 16]);
        assert_eq!(b.line_names().collect::<Vec<_>>(), ["cup"]);
        feed(
            &mut b,
            &[r#"{"call_id":"a","type":"offered","ts":0,"line":"prelievi"}"#],
        );
        assert_eq!(b.line_names().collect::<Vec<_>>(), ["cup", "prelievi"]);
    }
}
