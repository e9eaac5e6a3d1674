//! What the engine takes in: encoded input records with what folding needs of each,
//! and how a chunk's accepted records are applied to the book and kept for the commit.

use crate::domain::callbook::{CallsHalf, Fold};
use crate::domain::dedupe::{CallKey, CallKeyCache, DedupeKey, KeyHasher};
use crate::domain::event::{Event, EventType};
use crate::domain::time::Millis;
use crate::observe;
use crate::store::codec::{
    Decoder, RecordKind, encode_dead_letter, encode_event, rebase_dead_letter,
};
use crate::store::positions::CheckpointDelta;
use crate::store::record::{DeadLetter, Record};
use crate::store::{Batch, PartPool, StoreError};
use std::sync::mpsc::SyncSender;

use super::IngestSummary;
use super::open::damaged_states;

/// Encoded input records (see `codec`), with what folding needs of each event record,
/// in order: its dedupe key and its [`Fold`] view. Whoever validates the input builds
/// these (parse workers, the push handler), so the folding threads decode nothing.
#[derive(Debug, Default)]
pub struct EncodedChunk {
    /// The encoded records: the part the store commits.
    pub bytes: Vec<u8>,
    pub(super) keys: Vec<DedupeKey>,
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
    pub(super) delta: CheckpointDelta,
    /// Commit what is staged once this chunk is (a source's time cadence).
    pub(super) commit_after: bool,
    /// The call keys of the call ids met last (kept across reuses of the chunk).
    call_keys: CallKeyCache,
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
        let call = ev
            .call_id
            .as_deref()
            .map(|c| self.call_keys.key(hasher, c.as_bytes()));
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
    pub(super) fn flag_dead_letters(
        &mut self,
        hasher: &KeyHasher,
        mut first: impl FnMut(DedupeKey) -> bool,
    ) {
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
pub fn dead_letter_key(hasher: &KeyHasher, d: &DeadLetter<'_>) -> DedupeKey {
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
pub(super) fn apply_chunk(
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
