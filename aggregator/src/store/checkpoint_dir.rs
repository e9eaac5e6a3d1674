//! A checkpoint kept in a local directory: the files of a store's checkpoint (see
//! [`super::EventStore::save_checkpoint`] and the methods after it), whatever keeps its
//! log. The embedded store keeps it in its data directory; the ClickHouse store in a
//! state directory of the aggregator's, whose checkpoint positions are the database's.
//!
//! ```text
//! DIR/checkpoint.calls  latest checkpoint of the call book: what queries need (the
//!                       lines, the pack of each chunk of call states)
//! DIR/checkpoint.keys   the rest of it: which runs hold the dedupe keys, the call
//!                       index and the states, the dead letters' keys (atomic renames)
//! DIR/positions     where the sources stood as of the checkpoint (their deltas after it
//!                   are in the log's commits)
//! DIR/presence      a table kept aside (see `Aside`)
//! DIR/runs/ID.run   the runs: immutable key-table images and packs of call states,
//!                   written once and in place before a checkpoint names them, mapped
//!                   when loaded, removed once no checkpoint names them (`store::runs`)
//! ```
//!
//! A checkpoint is derived from the log, which alone makes events durable (a commit
//! returns once the log is synced), so its files are not synced before they are named:
//! only the renames are (the directories' fsync). Every byte of it is checked before it
//! is used, whatever a power cut left of it: parts, asides and positions by their
//! CRC-32, runs whole by their trailing CRC-32 at a writer's open, and each segment of
//! the packs of states by its own CRC at a query-only open. A file the cut
//! left empty, short or stale therefore costs a replay of the log, never a wrong figure,
//! and a checkpoint costs no wait for the disk (the data goes out with the kernel's
//! writeback).
//!
//! Files are mapped: the directory must be kept from other writers for the life of a
//! [`CheckpointDir`] (the embedded store's lock, or [`CheckpointDir::lock`]'s own).

use super::positions::SourceCheckpoint;
use super::{Aside, Checkpoint, LogPosition, PartBytes, PartWriter, RunId, StoreError};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const SNAPSHOT_QUERY: &str = "checkpoint.calls";
pub(super) const SNAPSHOT_FOLD: &str = "checkpoint.keys";
const SNAPSHOT_MAGIC: &[u8; 8] = b"NWSNAP01";
const RUNS: &str = "runs";
const RUN_SUFFIX: &str = ".run";
/// The lock of a directory that [`CheckpointDir::lock`] keeps for itself.
const LOCK: &str = "LOCK";

/// The sources' positions as of a checkpoint (see
/// [`super::EventStore::save_positions`]), kept aside as the other tables derived from
/// the log (see [`CheckpointDir::write_aside`]).
const POSITIONS: &str = "positions";
const POSITIONS_MAGIC: &[u8; 8] = b"NWPOS1\0\0";

/// The file and magic of each table kept aside.
fn aside_file(aside: Aside) -> (&'static str, &'static [u8; 8]) {
    match aside {
        Aside::Presence => ("presence", b"NWAGT1\0\0"),
    }
}

/// Takes the lock of `file` (shared or exclusive) without waiting.
pub(super) fn try_lock(
    file: &File,
    shared: bool,
    dir: &Path,
    path: &Path,
) -> Result<(), StoreError> {
    let taken = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match taken {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(path, e)),
    }
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// The checkpoint files of one directory (see the module).
pub struct CheckpointDir {
    dir: PathBuf,
    /// Nothing in the directory is ever written, cut or created.
    read_only: bool,
    /// The directory's own lock ([`Self::lock`]), held for the life of this value.
    _lock: Option<File>,
}

impl CheckpointDir {
    /// The checkpoint files of `dir`, which its owner keeps locked from every other
    /// writer for the life of this value (the store module's own: the mapped files'
    /// soundness rests on that lock).
    pub(super) fn under_store_lock(dir: &Path, read_only: bool) -> Self {
        Self {
            dir: dir.to_owned(),
            read_only,
            _lock: None,
        }
    }

    /// The checkpoint files of `dir` (created if needed), locked for this process alone
    /// ([`StoreError::Locked`] when another process holds it).
    pub fn lock(dir: &Path) -> Result<Self, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory(dir.display().to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let path = dir.join(LOCK);
        let lock = File::create(&path).map_err(|e| StoreError::io(&path, e))?;
        try_lock(&lock, false, dir, &path)?;
        Ok(Self {
            dir: dir.to_owned(),
            read_only: false,
            _lock: Some(lock),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.read_only {
            true => Err(StoreError::ReadOnly),
            false => Ok(()),
        }
    }

    /// The position of the checkpoint in place, if any.
    pub fn position(&self) -> Result<Option<LogPosition>, StoreError> {
        Ok(self.read_part(SNAPSHOT_QUERY)?.map(|(p, _)| p))
    }

    /// [`super::EventStore::load_checkpoint`] of a log that ends at `log_end`.
    pub fn load_checkpoint(
        &self,
        with_fold: bool,
        log_end: LogPosition,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let Some((position, query)) = self.read_part(SNAPSHOT_QUERY)? else {
            return Ok(None);
        };
        if position > log_end {
            tracing::warn!("ignoring a checkpoint newer than the log; replaying the log");
            return Ok(None);
        }
        let fold = if with_fold {
            match self.read_part(SNAPSHOT_FOLD)? {
                Some((p, fold)) if p == position => Some(fold),
                _ => None,
            }
        } else {
            None
        };
        Ok(Some(Checkpoint {
            position,
            query,
            fold,
        }))
    }

    /// [`super::EventStore::save_checkpoint`].
    pub fn save_checkpoint(
        &self,
        position: LogPosition,
        query: PartWriter<'_>,
        fold: PartWriter<'_>,
        runs: &[(RunId, PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        self.writable()?;
        if !runs.is_empty() {
            let dir = self.dir.join(RUNS);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        // Every file is written under a temporary name at once (not synced: see the
        // module); then the runs are renamed into place (and their directory synced), and
        // only then the two parts, which name them. The runs no checkpoint names any more are
        // removed only after (`retain_runs`). A crash between the two parts' renames
        // leaves parts of different positions, which the loader refuses to pair (a
        // query-only open reads the query part alone: its runs are in place before it).
        let panicked = || StoreError::Corrupt {
            path: RUNS.into(),
            what: "checkpoint writer panicked".into(),
        };
        let (parts, run_files) = std::thread::scope(|s| {
            let writers: Vec<_> = runs
                .iter()
                .map(|&(id, body)| {
                    s.spawn(move || {
                        let path = self.run_path(id);
                        let tmp = path.with_extension("tmp");
                        write_new(&tmp, &[], body).map(|()| (tmp, path))
                    })
                })
                .collect();
            let fold_part = s.spawn(|| self.write_part(SNAPSHOT_FOLD, position, fold));
            let query_part = self.write_part(SNAPSHOT_QUERY, position, query);
            let written: Result<Vec<_>, StoreError> = writers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Err(panicked())))
                .collect();
            let fold_part = fold_part.join().unwrap_or_else(|_| Err(panicked()));
            Ok::<_, StoreError>(([query_part?, fold_part?], written?))
        })?;
        for (tmp, path) in &run_files {
            std::fs::rename(tmp, path).map_err(|e| StoreError::io(path, e))?;
        }
        if !run_files.is_empty() {
            sync_dir(&self.dir.join(RUNS))?;
        }
        for (tmp, path) in &parts {
            std::fs::rename(tmp, path).map_err(|e| StoreError::io(path, e))?;
        }
        sync_dir(&self.dir)
    }

    /// [`super::EventStore::save_positions`].
    pub fn save_positions(
        &self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let mut body = Vec::new();
        positions.encode(&mut body);
        self.write_aside(POSITIONS, POSITIONS_MAGIC, at, &body)
    }

    /// [`super::EventStore::load_positions`].
    pub fn load_positions(&self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        let parsed = self
            .read_aside(POSITIONS, POSITIONS_MAGIC)?
            .and_then(|(at, body)| SourceCheckpoint::decode(&body).map(|cp| (at, cp)));
        if parsed.is_none() && self.dir.join(POSITIONS).exists() {
            tracing::warn!("ignoring a damaged positions file; reading them from the log");
        }
        Ok(parsed)
    }

    /// [`super::EventStore::save_aside`].
    pub fn save_aside(
        &self,
        aside: Aside,
        at: LogPosition,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let (name, magic) = aside_file(aside);
        self.write_aside(name, magic, at, bytes)
    }

    /// [`super::EventStore::load_aside`] of a log that ends at `log_end`.
    pub fn load_aside(
        &self,
        aside: Aside,
        log_end: LogPosition,
    ) -> Result<Option<(LogPosition, Vec<u8>)>, StoreError> {
        let (name, magic) = aside_file(aside);
        let kept = self.read_aside(name, magic)?;
        if kept.as_ref().is_some_and(|(at, _)| *at > log_end) {
            tracing::warn!(file = name, "ignoring a table kept for a longer log");
            return Ok(None);
        }
        Ok(kept)
    }

    /// [`super::EventStore::load_run`].
    pub fn load_run(&self, id: RunId, verify: bool) -> Result<Option<PartBytes>, StoreError> {
        let path = self.run_path(id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        if verify && !crc_trailer_holds(&file).map_err(|e| StoreError::io(&path, e))? {
            tracing::warn!(file = %path.display(), "a checkpoint run fails its checksum");
            return Ok(None);
        }
        // SAFETY: runs are never modified once renamed into place, only removed when no
        // checkpoint names them (a mapping keeps a removed file's bytes), and the
        // directory is kept from other writers (see `under_store_lock`, `lock`), so the
        // mapped bytes stay as they are.
        match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => {
                // Lookups probe a slot here and there: read no page around the one asked.
                if let Err(e) = map.advise(memmap2::Advice::Random) {
                    tracing::debug!(error = %e, "madvise(RANDOM) on a run refused");
                }
                Ok(Some(PartBytes::mapped(map, 0)))
            }
            Err(_) if file.metadata().is_ok_and(|m| m.len() == 0) => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// [`super::EventStore::verify_runs`].
    pub fn verify_runs(&self, ids: &[RunId]) -> Result<bool, StoreError> {
        // Biggest first, on two threads: about half the bytes each.
        let mut sized = Vec::with_capacity(ids.len());
        for &id in ids {
            let path = self.run_path(id);
            match std::fs::metadata(&path) {
                Ok(m) => sized.push((m.len(), path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        sized.sort_unstable_by_key(|&(len, _)| std::cmp::Reverse(len));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let check = || -> Result<bool, StoreError> {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((_, path)) = sized.get(i) else {
                    return Ok(true);
                };
                let whole = File::open(path)
                    .and_then(|f| crc_trailer_holds(&f))
                    .map_err(|e| StoreError::io(path, e))?;
                if !whole {
                    tracing::warn!(file = %path.display(), "a checkpoint run fails its checksum");
                    return Ok(false);
                }
            }
        };
        std::thread::scope(|s| {
            let other = s.spawn(check);
            let here = check();
            let there = other.join().unwrap_or(Ok(false));
            Ok(here? && there?)
        })
    }

    /// [`super::EventStore::retain_runs`].
    pub fn retain_runs(&self, keep: &[RunId]) -> Result<(), StoreError> {
        self.writable()?;
        let dir = self.dir.join(RUNS);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let name = entry.file_name();
            let kept = name
                .to_str()
                .and_then(|n| n.strip_suffix(RUN_SUFFIX))
                .and_then(|id| RunId::from_str_radix(id, 16).ok())
                .is_some_and(|id| keep.contains(&id));
            if !kept {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Removes the checkpoint (its parts first, so that no part names a missing run);
    /// the next open replays the whole log.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.writable()?;
        for name in [
            SNAPSHOT_QUERY,
            SNAPSHOT_FOLD,
            POSITIONS,
            aside_file(Aside::Presence).0,
        ] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        self.retain_runs(&[])
    }

    /// A table derived from the log up to `at`, in file `name`: `magic`, the log position
    /// (u64 LE), the CRC-32 of the body, the body. Not synced, as checkpoint parts: one
    /// lost or torn makes the next open derive it from the log instead.
    fn write_aside(
        &self,
        name: &str,
        magic: &[u8; 8],
        at: LogPosition,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let mut file = Vec::with_capacity(body.len() + 20);
        file.extend_from_slice(magic);
        file.extend_from_slice(&at.to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        file.extend_from_slice(body);
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, &file).map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))
    }

    /// What [`Self::write_aside`] wrote in `name`: `None` when missing, of another magic,
    /// or damaged.
    fn read_aside(
        &self,
        name: &str,
        magic: &[u8; 8],
    ) -> Result<Option<(LogPosition, Vec<u8>)>, StoreError> {
        let path = self.dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        Ok(bytes.strip_prefix(magic.as_slice()).and_then(|rest| {
            let at = u64::from_le_bytes(*rest.first_chunk::<8>()?);
            let crc = u32::from_le_bytes(*rest.get(8..)?.first_chunk::<4>()?);
            let body = rest.get(12..)?;
            (crc32fast::hash(body) == crc).then(|| (at, body.to_vec()))
        }))
    }

    fn run_path(&self, id: RunId) -> PathBuf {
        self.dir.join(RUNS).join(format!("{id:016x}{RUN_SUFFIX}"))
    }

    /// Reads one checkpoint file: its position and body; `None` when absent or foreign.
    fn read_part(&self, name: &str) -> Result<Option<(LogPosition, PartBytes)>, StoreError> {
        let path = self.dir.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        // SAFETY: checkpoint files are never modified in place, only replaced by a rename
        // (a mapping keeps the replaced file's bytes), and the directory is kept from
        // other writers (see `under_store_lock`, `lock`), so the mapped bytes stay as
        // they are while borrowed.
        let map = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => map,
            // An empty file cannot be mapped everywhere: it is no checkpoint anyway.
            Err(_) if file.metadata().is_ok_and(|m| m.len() == 0) => return Ok(None),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let Some(rest) = map.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
            tracing::warn!(
                file = name,
                "ignoring a checkpoint file with an unknown header"
            );
            return Ok(None);
        };
        let Some(pos) = rest.first_chunk::<8>().map(|p| u64::from_le_bytes(*p)) else {
            return Ok(None);
        };
        Ok(Some((
            pos,
            PartBytes::mapped(map, SNAPSHOT_MAGIC.len() + 8),
        )))
    }

    /// Writes a checkpoint part under a temporary name; returns that name and the part's
    /// own (the caller renames it once the runs it names are in place).
    fn write_part(
        &self,
        name: &str,
        position: LogPosition,
        body: PartWriter<'_>,
    ) -> Result<(PathBuf, PathBuf), StoreError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut head = SNAPSHOT_MAGIC.to_vec();
        head.extend_from_slice(&position.to_le_bytes());
        write_new(&tmp, &head, body)?;
        Ok((tmp, path))
    }
}

/// Whether a file's last 4 bytes are the CRC-32 of the rest. Read through mappings of a
/// few MiB at a time, each dropped once hashed: no copy into a buffer (a long history's
/// runs are some 250 MB), and no more than a window's pages count against the process.
fn crc_trailer_holds(file: &File) -> std::io::Result<bool> {
    const WINDOW: u64 = 8 << 20;
    let len = file.metadata()?.len();
    let Some(body) = len.checked_sub(4) else {
        return Ok(false);
    };
    let mut crc = crc32fast::Hasher::new();
    let mut trailer = Vec::with_capacity(4);
    let mut at = 0;
    while at < len {
        let n = WINDOW.min(len - at);
        // SAFETY: runs are never modified once renamed into place, only removed when no
        // checkpoint names them (a mapping keeps a removed file's bytes), and the
        // directory is kept from other writers (see `CheckpointDir`), so the mapped
        // bytes stay as they are.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(at)
                .len(usize::try_from(n).map_err(std::io::Error::other)?)
                .populate()
                .map(file)?
        };
        let hashed = usize::try_from(body.saturating_sub(at).min(n)).unwrap_or(map.len());
        crc.update(&map[..hashed]);
        trailer.extend_from_slice(&map[hashed..]);
        at += n;
    }
    Ok(trailer.first_chunk::<4>().map(|t| u32::from_le_bytes(*t)) == Some(crc.finalize()))
}

/// Writes `head` then `body` into a new file at `path` (not synced: see the module).
fn write_new(path: &Path, head: &[u8], body: PartWriter<'_>) -> Result<(), StoreError> {
    let f = File::create(path).map_err(|e| StoreError::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, f);
    out.write_all(head)
        .and_then(|()| body(&mut out))
        .and_then(|()| out.into_inner().map_err(|e| e.into_error()))
        .map(drop)
        .map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_and_a_cleared_one_holds_no_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = CheckpointDir::lock(dir.path()).expect("lock");
        assert!(matches!(
            CheckpointDir::lock(dir.path()),
            Err(StoreError::Locked(_))
        ));
        let part: PartWriter<'_> = &|w| w.write_all(b"part");
        let run: PartWriter<'_> = &|w| w.write_all(b"run");
        state
            .save_checkpoint(7, part, part, &[(1, run)])
            .expect("save");
        assert_eq!(state.position().expect("position"), Some(7));
        let cp = state.load_checkpoint(true, 7).expect("load").expect("some");
        assert_eq!((cp.position, &*cp.query), (7, &b"part"[..]));
        assert!(state.load_checkpoint(true, 6).expect("load").is_none());
        assert!(state.load_run(1, false).expect("run").is_some());
        state.clear().expect("clear");
        assert_eq!(state.position().expect("position"), None);
        assert!(state.load_run(1, false).expect("run").is_none());
        drop(state);
        CheckpointDir::lock(dir.path()).expect("free once dropped");
    }
}
