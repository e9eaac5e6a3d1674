//! The call states of a book, in chunks of [`CHUNK`] calls (numbered in the order calls
//! were first seen), each behind an [`Arc`].
//!
//! - A published snapshot shares the chunks themselves (copy on write: the book copies a
//!   chunk a snapshot still holds before changing it), so publishing copies no state; it
//!   shares those still in the checkpoint too ([`SharedChunks`]), loaded by whichever
//!   side reads them first. A chunk the book changed since the last share is its own
//!   (not behind an `Arc`), so that changing it again costs no atomic operation.
//! - A chunk may be left where a checkpoint keeps it ([`ChunkSource`]) until it is read:
//!   an import into a long history decodes only the chunks its events touch.
//! - The book notes which chunks changed since the last checkpoint ([`Self::dirty`]), so
//!   that a checkpoint writes only those.

use super::call::CallState;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Calls per chunk (72 bytes a state: 288 KiB a chunk).
pub const CHUNK: usize = 4096;

/// One chunk's states (`CHUNK` of them, fewer in the last chunk).
pub type Chunk = Arc<Vec<CallState>>;

/// Where the chunks not in memory yet come from (a checkpoint's state segments).
pub trait ChunkSource: Send + Sync {
    /// The states of chunk `c`, exactly `calls` of them; `None` when its bytes are damaged.
    fn load(&self, c: usize, calls: usize) -> Option<Vec<CallState>>;
}

/// A chunk whose stored bytes fail their checksum or do not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stored call states of chunk {0} are damaged")]
pub struct ChunkDamaged(pub usize);

/// Where a shared chunk is, or will be once read: shared by the book and its snapshots
/// until the book changes the chunk (then the book takes it as its own).
type SharedSlot = Arc<OnceLock<Chunk>>;

/// A chunk as the book holds it.
enum Slot {
    /// In memory and the book's alone (changed since the last share): changed in place.
    Own(Vec<CallState>),
    /// Shared with snapshots, or not read from the checkpoint yet.
    Shared(SharedSlot),
}

impl Default for Slot {
    fn default() -> Self {
        Self::Shared(SharedSlot::default())
    }
}

impl Slot {
    fn is_loaded(&self) -> bool {
        match self {
            Self::Own(_) => true,
            Self::Shared(slot) => slot.get().is_some(),
        }
    }

    /// The slot a snapshot shares: an own chunk moves behind an `Arc` (not copied).
    fn share(&mut self) -> SharedSlot {
        let shared = match std::mem::take(self) {
            Self::Own(states) => Arc::new(OnceLock::from(Arc::new(states))),
            Self::Shared(slot) => slot,
        };
        *self = Self::Shared(Arc::clone(&shared));
        shared
    }
}

/// Chunk `c` (of `calls` states) of `slot`, loaded from `source` first if it is not in
/// memory.
fn load_slot<'a>(
    slot: &'a SharedSlot,
    source: Option<&Arc<dyn ChunkSource>>,
    c: usize,
    calls: usize,
) -> Result<&'a Chunk, ChunkDamaged> {
    if let Some(chunk) = slot.get() {
        return Ok(chunk);
    }
    let loaded = source
        .and_then(|s| s.load(c, calls))
        .filter(|v| v.len() == calls)
        .ok_or(ChunkDamaged(c))?;
    Ok(slot.get_or_init(|| Arc::new(loaded)))
}

/// The states of every call of a book (see the module doc).
#[derive(Default)]
pub struct StateChunks {
    chunks: Vec<Slot>,
    len: usize,
    source: Option<Arc<dyn ChunkSource>>,
    /// One bit per chunk: changed or created since [`Self::clear_dirty`].
    dirty: Vec<u64>,
}

impl std::fmt::Debug for StateChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loaded = self.chunks.iter().filter(|c| c.is_loaded()).count();
        write!(
            f,
            "StateChunks({} calls, {loaded}/{} chunks loaded)",
            self.len,
            self.chunks.len()
        )
    }
}

impl StateChunks {
    /// States in memory, every chunk dirty (nothing of them is stored yet).
    pub fn from_vec(states: Vec<CallState>) -> Self {
        let mut s = Self::default();
        for st in states {
            s.push(st);
        }
        s
    }

    /// `len` states kept by `source`, loaded when first read; nothing dirty.
    pub fn stored(len: usize, source: Arc<dyn ChunkSource>) -> Self {
        Self {
            chunks: (0..len.div_ceil(CHUNK)).map(|_| Slot::default()).collect(),
            len,
            source: Some(source),
            dirty: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks there are.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Calls in chunk `c`.
    fn calls_in(&self, c: usize) -> usize {
        CHUNK.min(self.len - c * CHUNK)
    }

    /// Chunk `c`, loaded first if it is not in memory.
    pub fn try_chunk(&self, c: usize) -> Result<&[CallState], ChunkDamaged> {
        match self.chunks.get(c).ok_or(ChunkDamaged(c))? {
            Slot::Own(states) => Ok(states),
            Slot::Shared(slot) => {
                load_slot(slot, self.source.as_ref(), c, self.calls_in(c)).map(|s| s.as_slice())
            }
        }
    }

    /// Chunk `c` to change: loaded first if stored, taken as the book's own (copied when a
    /// snapshot still holds it); marked dirty.
    fn chunk_mut(&mut self, c: usize) -> Result<&mut Vec<CallState>, ChunkDamaged> {
        let calls = self.chunks.get(c).map(|_| self.calls_in(c));
        let slot = self.chunks.get_mut(c).ok_or(ChunkDamaged(c))?;
        if let Slot::Shared(shared) = slot {
            let chunk = Arc::clone(load_slot(
                shared,
                self.source.as_ref(),
                c,
                calls.unwrap_or(0),
            )?);
            // Let go of the shared slot first: when no snapshot holds the chunk any more,
            // it is taken without a copy.
            *slot = Slot::Own(Vec::new());
            *slot = Slot::Own(Arc::try_unwrap(chunk).unwrap_or_else(|held| (*held).clone()));
        }
        let Slot::Own(states) = slot else {
            return Err(ChunkDamaged(c));
        };
        mark(&mut self.dirty, c);
        Ok(states)
    }

    /// Chunk `c`, loaded first if it is not in memory.
    ///
    /// # Panics
    /// When it must be loaded and its stored bytes are damaged: a store checks them
    /// before it hands them over (see [`Self::try_load_all`] for the careful way).
    pub fn chunk(&self, c: usize) -> &[CallState] {
        match self.try_chunk(c) {
            Ok(chunk) => chunk,
            Err(e) => panic!("{e} (checked when the store was opened)"),
        }
    }

    /// The state of call `i`, loading its chunk first if needed.
    pub fn try_get(&self, i: u32) -> Result<&CallState, ChunkDamaged> {
        let i = i as usize;
        Ok(&self.try_chunk(i / CHUNK)?[i % CHUNK])
    }

    /// The state of call `i` (see [`Self::chunk`] for when it panics).
    #[inline]
    pub fn get(&self, i: u32) -> &CallState {
        let i = i as usize;
        &self.chunk(i / CHUNK)[i % CHUNK]
    }

    /// The chunks not in memory yet.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.chunks.len())
            .filter(|&c| !self.chunks[c].is_loaded())
            .collect()
    }

    /// Loads every chunk not in memory yet.
    pub fn try_load_all(&self) -> Result<(), ChunkDamaged> {
        self.missing()
            .into_iter()
            .try_for_each(|c| self.try_chunk(c).map(drop))
    }

    /// True when some chunk is not in memory yet.
    pub fn has_stored(&self) -> bool {
        self.source.is_some() && self.chunks.iter().any(|c| !c.is_loaded())
    }

    /// The state of call `i`, to change (its chunk copied first if a snapshot shares it,
    /// loaded first if stored); marks the chunk dirty.
    pub fn try_get_mut(&mut self, i: u32) -> Result<&mut CallState, ChunkDamaged> {
        let (c, at) = (i as usize / CHUNK, i as usize % CHUNK);
        self.chunk_mut(c)?.get_mut(at).ok_or(ChunkDamaged(c))
    }

    /// Appends the state of a new call; returns its number.
    pub fn try_push(&mut self, state: CallState) -> Result<u32, ChunkDamaged> {
        let i = self.len;
        let c = i / CHUNK;
        if i.is_multiple_of(CHUNK) {
            self.chunks.push(Slot::Own(Vec::with_capacity(CHUNK)));
        }
        self.chunk_mut(c)?.push(state);
        self.len += 1;
        Ok(i as u32)
    }

    /// [`Self::try_push`] on a book whose last chunk is in memory (every book but one
    /// whose stored last chunk is damaged: [`Self::try_chunk`] it first).
    pub fn push(&mut self, state: CallState) -> u32 {
        match self.try_push(state) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    fn mark(&mut self, c: usize) {
        mark(&mut self.dirty, c);
    }

    /// Makes room for about `calls` more calls.
    pub fn reserve(&mut self, calls: usize) {
        self.chunks.reserve(calls.div_ceil(CHUNK));
    }

    /// The chunks changed or created since [`Self::clear_dirty`], in order.
    pub fn dirty(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (w, &bits) in self.dirty.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                out.push(w * 64 + b.trailing_zeros() as usize);
                b &= b - 1;
            }
        }
        out
    }

    /// Counts chunk `c` as changed (loading it first): the next checkpoint writes it.
    pub fn try_rewrite(&mut self, c: usize) -> Result<(), ChunkDamaged> {
        self.try_chunk(c)?;
        self.mark(c);
        Ok(())
    }

    /// After a checkpoint wrote every dirty chunk.
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Right after a checkpoint wrote every chunk (none dirty) to `source`: it becomes
    /// the chunks' source, and each chunk in memory but the last (where new calls go)
    /// that is `settled` leaves memory, read from `source` again when next needed (a
    /// snapshot that shares one keeps it). Returns how many left.
    pub fn release_settled(
        &mut self,
        source: Arc<dyn ChunkSource>,
        settled: impl Fn(&[CallState]) -> bool,
    ) -> usize {
        if !self.dirty.iter().all(|&w| w == 0) {
            // A chunk changed since the checkpoint: its pack is not its state.
            return 0;
        }
        self.source = Some(source);
        let last = self.chunks.len().saturating_sub(1);
        let mut released = 0;
        for slot in &mut self.chunks[..last] {
            let leaves = match slot {
                Slot::Own(states) => settled(states),
                Slot::Shared(shared) => shared.get().is_some_and(|states| settled(states)),
            };
            if leaves {
                *slot = Slot::default();
                released += 1;
            }
        }
        released
    }

    /// Every state, in order (loading what is not in memory).
    pub fn iter(&self) -> impl Iterator<Item = &CallState> + '_ {
        (0..self.chunks.len()).flat_map(|c| self.chunk(c).iter())
    }

    /// The states of chunks `chunks`, in order, by value; a chunk not in memory is read
    /// for the walk only (see [`walk`]).
    ///
    /// # Panics
    /// As [`Self::chunk`].
    pub fn walk(&self, chunks: Range<usize>) -> impl Iterator<Item = CallState> + '_ {
        walk(chunks, self.source.as_ref(), self.len, |c| {
            match &self.chunks[c] {
                Slot::Own(states) => Some(states.as_slice()),
                Slot::Shared(slot) => slot.get().map(|s| s.as_slice()),
            }
        })
    }

    /// Every chunk, shared for a snapshot as it is (those not in memory yet are loaded by
    /// whichever of the book and the snapshot reads them first).
    pub fn share(&mut self) -> SharedChunks {
        SharedChunks {
            slots: self.chunks.iter_mut().map(Slot::share).collect(),
            len: self.len,
            source: self.source.clone(),
        }
    }
}

/// The states of chunks `chunks` (of `len` states in all) in order, by value: a chunk in
/// memory (`in_memory`) is read in place, one still stored is decoded from `source` for
/// the walk and dropped after it, not kept. A scan of every call (a report of a store
/// opened for one query) then holds a chunk at a time instead of every state: fresh
/// memory is the dearest part of such a scan.
///
/// # Panics
/// When a stored chunk's bytes are damaged (the store checked them when it was opened).
fn walk<'a>(
    chunks: Range<usize>,
    source: Option<&'a Arc<dyn ChunkSource>>,
    len: usize,
    in_memory: impl Fn(usize) -> Option<&'a [CallState]> + 'a,
) -> impl Iterator<Item = CallState> + 'a {
    chunks.flat_map(move |c| {
        let calls = CHUNK.min(len - c * CHUNK);
        match in_memory(c) {
            Some(states) => Walked::InPlace(states.iter()),
            None => match source
                .and_then(|s| s.load(c, calls))
                .filter(|v| v.len() == calls)
            {
                Some(states) => Walked::Read(states.into_iter()),
                None => panic!("{} (checked when the store was opened)", ChunkDamaged(c)),
            },
        }
    })
}

/// One chunk of a [`walk`].
enum Walked<'a> {
    InPlace(std::slice::Iter<'a, CallState>),
    Read(std::vec::IntoIter<CallState>),
}

impl Iterator for Walked<'_> {
    type Item = CallState;

    fn next(&mut self) -> Option<CallState> {
        match self {
            Self::InPlace(states) => states.next().copied(),
            Self::Read(states) => states.next(),
        }
    }
}

/// Marks chunk `c` in a bitset of chunks.
fn mark(bits: &mut Vec<u64>, c: usize) {
    let (word, bit) = (c / 64, 1u64 << (c % 64));
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    bits[word] |= bit;
}

/// A book's chunks of states as [`StateChunks::share`] handed them to a snapshot: what
/// the book held then, whatever it changes later.
#[derive(Clone, Default)]
pub struct SharedChunks {
    slots: Vec<SharedSlot>,
    len: usize,
    source: Option<Arc<dyn ChunkSource>>,
}

impl std::fmt::Debug for SharedChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedChunks({} calls)", self.len)
    }
}

impl SharedChunks {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks there are.
    pub fn chunk_count(&self) -> usize {
        self.slots.len()
    }

    /// Chunk `c`, loaded first if needed.
    ///
    /// # Panics
    /// As [`StateChunks::chunk`]: when the chunk must be loaded and its stored bytes
    /// are damaged (the store checked them when it was opened).
    pub fn chunk(&self, c: usize) -> &Chunk {
        let calls = CHUNK.min(self.len - c * CHUNK);
        match load_slot(&self.slots[c], self.source.as_ref(), c, calls) {
            Ok(chunk) => chunk,
            Err(e) => panic!("{e} (checked when the store was opened)"),
        }
    }

    /// The state of call `i`, loading its chunk first if needed (see [`Self::chunk`]).
    pub fn get(&self, i: u32) -> &CallState {
        let i = i as usize;
        &self.chunk(i / CHUNK)[i % CHUNK]
    }

    /// As [`StateChunks::walk`].
    pub fn walk(&self, chunks: Range<usize>) -> impl Iterator<Item = CallState> + '_ {
        walk(chunks, self.source.as_ref(), self.len, |c| {
            self.slots[c].get().map(|s| s.as_slice())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn st(n: i64) -> CallState {
        CallState {
            first_event: n,
            ..CallState::default()
        }
    }

    struct Numbered {
        loads: AtomicUsize,
        broken: Option<usize>,
    }

    impl ChunkSource for Numbered {
        fn load(&self, c: usize, calls: usize) -> Option<Vec<CallState>> {
            self.loads.fetch_add(1, Ordering::Relaxed);
            (Some(c) != self.broken)
                .then(|| (0..calls).map(|k| st((c * CHUNK + k) as i64)).collect())
        }
    }

    #[test]
    fn settled_chunks_leave_memory_after_a_checkpoint_and_come_back_when_read() {
        let mut s = StateChunks::from_vec((0..3 * CHUNK as i64 + 5).map(st).collect());
        let source = Arc::new(Numbered {
            loads: AtomicUsize::new(0),
            broken: None,
        });
        // Dirty chunks (not yet written) never leave.
        assert_eq!(s.release_settled(source.clone(), |_| true), 0);
        s.clear_dirty();
        // Chunk 0 and 2 settled; the last (new calls go there) stays whatever it holds.
        let settled = |chunk: &[CallState]| chunk[0].first_event % (2 * CHUNK as i64) == 0;
        assert_eq!(s.release_settled(source.clone(), settled), 2);
        assert_eq!(s.missing(), vec![0, 2]);
        assert_eq!(source.loads.load(Ordering::Relaxed), 0);
        assert_eq!(
            s.get(CHUNK as u32 * 2 + 1).first_event,
            2 * CHUNK as i64 + 1
        );
        assert_eq!(
            source.loads.load(Ordering::Relaxed),
            1,
            "read back from the source"
        );
        *s.try_get_mut(3).expect("chunk 0") = st(-3);
        assert_eq!(s.get(3).first_event, -3);
        assert_eq!(s.dirty(), vec![0]);
        assert_eq!(s.push(st(-9)) as usize, 3 * CHUNK + 5);
    }

    #[test]
    fn stored_chunks_load_when_read_and_changes_mark_them_dirty() {
        let source = Arc::new(Numbered {
            loads: AtomicUsize::new(0),
            broken: Some(1),
        });
        let mut s = StateChunks::stored(3 * CHUNK + 10, source.clone());
        assert_eq!(s.chunk_count(), 4);
        assert!(s.dirty().is_empty());
        assert_eq!(s.get(5).first_event, 5);
        assert_eq!(source.loads.load(Ordering::Relaxed), 1);
        assert_eq!(s.get(7).first_event, 7, "loaded once");
        assert_eq!(source.loads.load(Ordering::Relaxed), 1);
        assert_eq!(s.try_chunk(1).err(), Some(ChunkDamaged(1)));
        assert_eq!(s.try_load_all(), Err(ChunkDamaged(1)));
        let i = s.push(st(-1));
        assert_eq!(i as usize, 3 * CHUNK + 10);
        assert_eq!(s.get(i).first_event, -1);
        s.try_get_mut(2 * CHUNK as u32).expect("loads").bookings = 3;
        assert_eq!(s.dirty(), [2, 3]);
        // A snapshot shares a chunk; changing it afterwards copies it.
        let shared = s.share();
        s.try_get_mut(2 * CHUNK as u32 + 1)
            .expect("loaded")
            .bookings = 9;
        assert_eq!(shared.get(2 * CHUNK as u32 + 1).bookings, 0);
        assert_eq!(s.get(2 * CHUNK as u32 + 1).bookings, 9);
        s.clear_dirty();
        assert!(s.dirty().is_empty());
    }

    #[test]
    fn a_share_keeps_what_the_book_held_and_loads_stored_chunks_once() {
        let source = Arc::new(Numbered {
            loads: AtomicUsize::new(0),
            broken: None,
        });
        let mut s = StateChunks::stored(2 * CHUNK + 3, source.clone());
        let shared = s.share();
        assert_eq!(source.loads.load(Ordering::Relaxed), 0, "shared unloaded");
        // Read by the snapshot first: the book finds it loaded.
        assert_eq!(shared.get(CHUNK as u32 + 1).first_event, CHUNK as i64 + 1);
        assert_eq!(s.get(CHUNK as u32 + 2).first_event, CHUNK as i64 + 2);
        assert_eq!(source.loads.load(Ordering::Relaxed), 1);
        // Changed by the book, before and after the snapshot read them.
        s.try_get_mut(CHUNK as u32 + 1).expect("loaded").bookings = 4;
        s.try_get_mut(5).expect("loads").bookings = 6;
        let i = s.push(st(-3));
        assert_eq!(shared.get(CHUNK as u32 + 1).bookings, 0);
        assert_eq!(shared.get(5).bookings, 0);
        assert_eq!(shared.len(), 2 * CHUNK + 3);
        assert_eq!(
            shared.get(2 * CHUNK as u32 + 2).first_event,
            2 * CHUNK as i64 + 2
        );
        assert_eq!(s.get(CHUNK as u32 + 1).bookings, 4);
        assert_eq!(s.get(5).bookings, 6);
        assert_eq!(s.get(i).first_event, -3);
        assert_eq!(source.loads.load(Ordering::Relaxed), 3);
        // A share of a book in memory loads nothing.
        let mem = StateChunks::from_vec(vec![st(1), st(2)]).share();
        assert_eq!(mem.get(1).first_event, 2);
    }

    #[test]
    fn pushes_fill_chunks_in_order() {
        let mut s = StateChunks::from_vec((0..CHUNK as i64 + 1).map(st).collect());
        assert_eq!((s.len(), s.chunk_count()), (CHUNK + 1, 2));
        assert_eq!(s.dirty(), [0, 1]);
        assert!(!s.has_stored());
        assert!(s.iter().map(|x| x.first_event).eq(0..CHUNK as i64 + 1));
        s.push(st(99));
        assert_eq!(s.share().len(), CHUNK + 2);
    }
}
