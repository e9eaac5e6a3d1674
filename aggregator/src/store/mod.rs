//! Where the accepted events and the dead letters are kept durably.
//!
//! A store is a log of commits: each commit holds records in receive order and is
//! durable when [`EventStore::commit`] returns. The figures are never stored: they are
//! recomputed by the domain core from the replayed events, so every store gives the same
//! figures by construction. A store may also keep a checkpoint (an encoded
//! [`CallBook`](crate::domain::callbook::CallBook), its tables and call states in runs
//! written once) so that opening does not replay everything.

pub mod checkpoint_dir;
pub mod codec;
pub mod embedded;
#[cfg(any(test, feature = "test-support"))]
pub mod fault;
pub mod log;
pub mod memory;
pub mod positions;
pub mod record;
pub mod runs;
pub mod secrets;
pub mod snapshot;
pub mod verify;

use positions::SourceCheckpoint;
use record::Record;

/// Position in a store's log: replaying from it skips what a checkpoint already holds.
pub type LogPosition = u64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data directory {0} is in use by another netwait process (stop it, or query it with --server)"
    )]
    Locked(String),
    #[error("corrupt data in {path}: {what}")]
    Corrupt { path: String, what: String },
    /// Acknowledged commits that cannot be read back: never cut, never repaired in place.
    #[error(
        "the log {path} is damaged at byte {at}: {what}; `netwait check --data {dir}` reports the damage, `netwait repair --data {dir} --out NEWDIR` salvages every intact commit into a new directory"
    )]
    Damaged {
        path: String,
        dir: String,
        at: LogPosition,
        what: String,
    },
    #[error("no netwait store in {0}")]
    NoStore(String),
    #[error("{0} is a file, not a data directory")]
    NotADirectory(String),
    #[error(
        "the store failed to persist a commit; it takes no work until it recovers (retried in the background)"
    )]
    Poisoned,
    #[error("opened for queries only")]
    ReadOnly,
    /// Another writer holds the store (a database of the ClickHouse store has one
    /// writer at a time), or took it over from this one.
    #[error("{0}")]
    OtherWriter(String),
    /// A source handed input that does not follow where it stands (a bug of the source).
    #[error("source positions: {0}")]
    Positions(#[from] positions::PositionError),
}

/// What a caller can do about a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// May pass: retry later (a full disk, an I/O error, a store recovering from one).
    Transient,
    /// The store is in a state that refuses this use (locked by another process, opened
    /// for queries only).
    Conflict,
    /// Will not pass by retrying: damaged data, a bug.
    Fatal,
}

impl StoreError {
    /// The one table of what each error means for a caller.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            Self::Io { .. } | Self::Poisoned => StoreErrorKind::Transient,
            Self::Locked(_) | Self::ReadOnly | Self::OtherWriter(_) => StoreErrorKind::Conflict,
            Self::Corrupt { .. }
            | Self::Damaged { .. }
            | Self::NoStore(_)
            | Self::NotADirectory(_)
            | Self::Positions(_) => StoreErrorKind::Fatal,
        }
    }

    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The records of one commit, in order. A store sees them typed ([`Self::records`]),
/// or, when it keeps records as bytes, in their one encoding ([`codec`], the same in every
/// store) as consecutive parts ([`Self::parts`]): whole input chunks are committed
/// without being copied or decoded again.
#[derive(Debug, Default)]
pub struct Batch {
    parts: Vec<Vec<u8>>,
    records: u32,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records in the batch.
    pub fn record_count(&self) -> u32 {
        self.records
    }

    /// Encoded bytes in the batch.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn clear(&mut self) {
        self.parts.clear();
        self.records = 0;
    }

    /// The records, typed, in commit order; an error only when the batch was built from
    /// bytes that are not records (a bug of whoever encoded them).
    pub fn records(&self) -> impl Iterator<Item = Result<Record<'_>, codec::DecodeError>> + '_ {
        self.parts.iter().flat_map(|p| codec::Decoder::new(p))
    }

    /// Adds one record.
    pub fn push(&mut self, record: &Record<'_>) {
        let mut part = Vec::new();
        match record {
            Record::Event(ev) => codec::encode_event(&mut part, ev),
            Record::DeadLetter(d) => codec::encode_dead_letter(&mut part, d),
            Record::Positions(delta) => codec::encode_positions(&mut part, delta),
        }
        self.append(part, 1);
    }

    /// The records in their encoding, as consecutive parts.
    pub fn parts(&self) -> &[Vec<u8>] {
        &self.parts
    }

    /// Adds encoded records as a part of their own.
    pub fn append(&mut self, part: Vec<u8>, records: u32) {
        if !part.is_empty() {
            self.parts.push(part);
            self.records += records;
        }
    }

    /// Adds encoded records by copying them to the last part, or to a new one from `pool`.
    pub fn append_copy(&mut self, bytes: &[u8], records: u32, pool: &mut PartPool) {
        if bytes.is_empty() {
            return;
        }
        match self.parts.last_mut() {
            Some(last) if last.capacity() - last.len() >= bytes.len() => {
                last.extend_from_slice(bytes);
            }
            _ => {
                let mut part = pool.take(bytes.len());
                part.extend_from_slice(bytes);
                self.parts.push(part);
            }
        }
        self.records += records;
    }

    /// The parts as slices, for writing.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.parts.iter().map(Vec::as_slice).collect()
    }
}

/// Buffers for batch parts: new ones of `block` bytes, or those of committed batches
/// handed back (fresh memory costs a page fault and a kernel clear per 4 KiB).
#[derive(Debug)]
pub struct PartPool {
    block: usize,
    spare: Vec<Vec<u8>>,
}

impl PartPool {
    /// Spare buffers kept at most.
    const KEPT: usize = 8;

    pub fn new(block: usize) -> Self {
        Self {
            block,
            spare: Vec::new(),
        }
    }

    /// An empty buffer with room for at least `min` bytes.
    pub fn take(&mut self, min: usize) -> Vec<u8> {
        match self.spare.pop() {
            Some(mut part) if part.capacity() >= min => {
                part.clear();
                part
            }
            _ => Vec::with_capacity(self.block.max(min)),
        }
    }

    /// Takes back the buffers of a committed batch.
    pub fn give(&mut self, batch: Batch) {
        let room = Self::KEPT.saturating_sub(self.spare.len());
        self.spare.extend(batch.parts.into_iter().take(room));
    }
}

/// An encoded [`CallBook`](crate::domain::callbook::CallBook) covering the log up to
/// `position`, in two parts: what queries need, and what folding more events needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: LogPosition,
    pub query: PartBytes,
    pub fold: Option<PartBytes>,
}

/// The body of a checkpoint part as loaded: its file mapped (no copy, no fresh memory:
/// a year's fold part is 17 MB), or bytes in memory.
pub struct PartBytes {
    bytes: PartSource,
    start: usize,
}

enum PartSource {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl PartBytes {
    /// The mapped file's bytes from `start`.
    pub fn mapped(map: memmap2::Mmap, start: usize) -> Self {
        Self {
            bytes: PartSource::Mapped(map),
            start,
        }
    }
}

impl From<Vec<u8>> for PartBytes {
    fn from(v: Vec<u8>) -> Self {
        Self {
            bytes: PartSource::Owned(v),
            start: 0,
        }
    }
}

impl std::ops::Deref for PartBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let all: &[u8] = match &self.bytes {
            PartSource::Mapped(m) => m,
            PartSource::Owned(v) => v,
        };
        all.get(self.start..).unwrap_or_default()
    }
}

impl AsRef<[u8]> for PartBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl crate::domain::key_runs::RunMemory for PartBytes {
    fn release(&self) {
        if let PartSource::Mapped(map) = &self.bytes {
            // SAFETY: the mapping is of a file opened read-only, shared: dropping its
            // pages loses nothing (the next read maps them again from the file, whose
            // bytes do not change while it is mapped: see `EmbeddedStore::load_run`).
            let dropped = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            if let Err(e) = dropped {
                tracing::debug!(error = %e, "madvise(DONTNEED) on a run refused");
            }
        }
    }
}

impl PartialEq for PartBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PartBytes {}

impl std::fmt::Debug for PartBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartBytes({} bytes)", self.len())
    }
}

/// Writes one part of a checkpoint (see [`snapshot`]) into the given output.
pub type PartWriter<'a> = &'a (dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()> + Sync);

/// A table derived from the log that a store may keep beside it ([`EventStore::save_aside`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aside {
    /// The operators' presence: the latest agent event of each operator.
    Presence,
}

/// Names a run of a checkpoint (see [`runs`]): unique within a store.
pub type RunId = u64;

/// A durable, append-only home for events and dead letters.
pub trait EventStore: Send {
    /// Visits every committed record after `from`, in commit order; returns the end.
    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError>;

    /// Visits the committed records after `from` up to the end of a window of the log
    /// (a store that checkpoints a long log in steps chooses it; by default the whole
    /// log, as [`Self::replay`]); returns where it stopped and whether more follow.
    fn replay_window(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<(LogPosition, bool), StoreError> {
        self.replay(from, visit).map(|end| (end, false))
    }

    /// Bytes of log in `(from, to]` (two positions it returned): what an open from a
    /// checkpoint at `from` replays. By default positions are byte offsets.
    fn log_bytes(&mut self, from: LogPosition, to: LogPosition) -> Result<u64, StoreError> {
        Ok(to.saturating_sub(from))
    }

    /// Appends one commit; when this returns `Ok`, the batch survives a crash.
    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError>;

    /// Whether the store keeps checkpoints ([`Self::save_checkpoint`]); one that does
    /// not (the default, with the defaults of the checkpoint methods: none kept) is
    /// replayed whole on open.
    fn checkpoints(&self) -> bool {
        false
    }

    /// Whether the store keeps the figures' cells and call records of its own: the
    /// engine then keeps cells and hands each commit's changes to [`Self::commit_derived`].
    fn derives(&self) -> bool {
        false
    }

    /// [`Self::commit`] of `batch` together with what it changed in the cells and call
    /// records: all of it durable and visible together, or none of it.
    fn commit_derived(
        &mut self,
        batch: &Batch,
        derived: &crate::domain::derived::Derived,
    ) -> Result<LogPosition, StoreError> {
        let _ = derived;
        self.commit(batch)
    }

    /// After a failed [`Self::commit`]: puts the store back at its last durable commit
    /// (nothing of the failed one is replayed) and checks that it can take a commit
    /// again. `Ok` means the next commit may succeed; an error, that it is still failing.
    fn recover(&mut self) -> Result<(), StoreError>;

    /// The latest checkpoint, if any; its fold part only when asked for (and intact).
    /// A store without checkpoints ([`Self::checkpoints`] false) has none.
    fn load_checkpoint(&mut self, with_fold: bool) -> Result<Option<Checkpoint>, StoreError> {
        let _ = with_fold;
        Ok(None)
    }

    /// Replaces the checkpoint (both parts, for `position`), after writing the new
    /// `runs` it names (see [`runs`]): the runs are in place before either part names
    /// them, and both parts when this returns (durable once the OS has written them
    /// back: a checkpoint is checked before it is used, see `checkpoint_dir`). Each part
    /// and run is written by its function straight into the store's output (several may
    /// run on several threads), so that no copy of a big book is built in memory first.
    fn save_checkpoint(
        &mut self,
        position: LogPosition,
        query: PartWriter<'_>,
        fold: PartWriter<'_>,
        runs: &[(RunId, PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        // A store without checkpoints keeps none (its owner replays it whole).
        let _ = (position, query, fold, runs);
        Ok(())
    }

    /// A run written by [`Self::save_checkpoint`], when it is there whole (with
    /// `verify`, its trailing CRC-32 is checked against the rest of it first); `None`
    /// when missing or damaged. A store without runs has none.
    fn load_run(&mut self, id: RunId, verify: bool) -> Result<Option<PartBytes>, StoreError> {
        let _ = (id, verify);
        Ok(None)
    }

    /// Whether every run of `ids` is there whole (its trailing CRC-32 checked against the
    /// rest of it), checked at once (several runs on several threads). A store without
    /// runs has all of none.
    fn verify_runs(&mut self, ids: &[RunId]) -> Result<bool, StoreError> {
        Ok(ids.is_empty())
    }

    /// Keeps where the sources stood at `at` (the position of the checkpoint about to
    /// be written), so that an open from that checkpoint need not read the log before
    /// it for them. A store without it reads them from the whole log.
    fn save_positions(
        &mut self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        let _ = (at, positions);
        Ok(())
    }

    /// What [`Self::save_positions`] kept last, and at which log position; `None` when
    /// nothing (intact) was kept.
    fn load_positions(&mut self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        Ok(None)
    }

    /// Keeps `bytes`, a table derived from the log up to `at` (see [`Aside`]), so that an
    /// open may read it instead of the log before `at`. Not made durable: lost or
    /// damaged, it is derived from the whole log again. A store without it derives the
    /// table from the whole log at each open.
    fn save_aside(
        &mut self,
        aside: Aside,
        at: LogPosition,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let _ = (aside, at, bytes);
        Ok(())
    }

    /// What [`Self::save_aside`] kept last of `aside` (intact), and at which position.
    fn load_aside(&mut self, aside: Aside) -> Result<Option<(LogPosition, Vec<u8>)>, StoreError> {
        let _ = aside;
        Ok(None)
    }

    /// Removes the runs but `keep` (those the checkpoint names); only a writer does.
    fn retain_runs(&mut self, keep: &[RunId]) -> Result<(), StoreError> {
        let _ = keep;
        Ok(())
    }
}
