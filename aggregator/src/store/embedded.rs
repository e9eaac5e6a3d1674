//! The default store: one directory on the local disk, no server.
//!
//! ```text
//! DIR/LOCK          lock: one writer (exclusive) or any number of readers (shared);
//!                   a writer also locks DIR itself (exclusive), so that a reader of a
//!                   directory without LOCK locks DIR (shared) and creates nothing
//! DIR/secret.key    dedupe and caller-hash keys (0600)
//! DIR/events.log    framed commits of events and dead letters (see `log`)
//! DIR/checkpoint.calls  latest checkpoint of the call book: what queries need (the
//!                       lines, the pack of each chunk of call states)
//! DIR/checkpoint.keys   the rest of it: which runs hold the dedupe keys, the call
//!                       index and the states, the dead letters' keys (atomic renames)
//! DIR/positions     where the sources stood as of the checkpoint (their deltas after it
//!                   are in the log's commits)
//! DIR/runs/ID.run   the runs: immutable key-table images and packs of call states,
//!                   written once and fsynced before a checkpoint names them, mapped
//!                   when loaded, removed once no checkpoint names them (`store::runs`)
//! ```

use super::codec::Decoder;
use super::log::{HEADER, LogFile, LogKey, encode_header};
use super::positions::SourceCheckpoint;
use super::record::Record;
use super::secrets::{self, Secrets};
use super::verify::{self, Survey};
use super::{
    Aside, Batch, Checkpoint, EventStore, LogPosition, PartBytes, PartWriter, RunId, StoreError,
};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const LOG: &str = "events.log";
const LOCK: &str = "LOCK";
const SNAPSHOT_QUERY: &str = "checkpoint.calls";
const SNAPSHOT_FOLD: &str = "checkpoint.keys";
const SNAPSHOT_MAGIC: &[u8; 8] = b"NWSNAP01";
const RUNS: &str = "runs";
const RUN_SUFFIX: &str = ".run";

pub struct EmbeddedStore {
    dir: PathBuf,
    log: LogFile,
    /// Opened for queries: nothing in the directory is ever written, cut or created.
    read_only: bool,
    /// Held for the life of the store; the OS releases it if the process dies. `None`
    /// for a reader of a directory without a lock file (a read-only copy).
    _lock: Option<File>,
    /// The directory itself, locked like `LOCK` (flock on a directory fd creates
    /// nothing). A writer holds both, so a reader holding either excludes every writer.
    /// `None` only for a reader holding `LOCK` that cannot open the directory.
    _dir_lock: Option<File>,
    key: LogKey,
}

/// Takes the lock of `file` (shared or exclusive) without waiting.
fn try_lock(file: &File, shared: bool, dir: &Path, path: &Path) -> Result<(), StoreError> {
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

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` for writing, taking its lock.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory(dir.display().to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock_path = dir.join(LOCK);
        let lock = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        try_lock(&lock, false, dir, &lock_path)?;
        let dir_lock = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
        try_lock(&dir_lock, false, dir, dir)?;
        let key = Secrets::load_or_create(dir, None)?.log_key();
        let log = LogFile::open(&dir.join(LOG), key)?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            log,
            read_only: false,
            _lock: Some(lock),
            _dir_lock: Some(dir_lock),
            key,
        })
    }

    /// Opens the existing store in `dir` for queries, with a shared lock (several readers
    /// at once, no writer). Never writes, cuts or creates anything: a torn tail is skipped
    /// in memory, a missing directory or log is [`StoreError::NoStore`]. The lock is
    /// taken on `LOCK` when there is one, and on the directory itself (which creates
    /// nothing: a read-only copy without `LOCK`, or a directory no writer has locked
    /// yet); a writer takes both, so either excludes it. A store that can take neither
    /// (no `LOCK`, and a directory that cannot be opened) does not open.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory(dir.display().to_string()));
        }
        let log_path = dir.join(LOG);
        match std::fs::metadata(&log_path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(StoreError::NoStore(dir.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoStore(dir.display().to_string()));
            }
            Err(e) => return Err(StoreError::io(&log_path, e)),
        }
        let lock_path = dir.join(LOCK);
        // Locking needs no write access: a lock file that is there is opened for reading.
        let lock = match File::open(&lock_path) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::debug!(error = %e, "no lock file to open: locking the directory only");
                None
            }
        };
        if let Some(f) = &lock {
            try_lock(f, true, dir, &lock_path)?;
        }
        let dir_lock = match File::open(dir) {
            Ok(d) => {
                try_lock(&d, true, dir, dir)?;
                Some(d)
            }
            // `LOCK`, locked, already excludes every writer.
            Err(e) if lock.is_some() => {
                tracing::debug!(error = %e, "the directory cannot be opened: locked by LOCK only");
                None
            }
            Err(e) => {
                let what = format!("no {LOCK} file, and the directory cannot be locked: {e}");
                return Err(StoreError::io(dir, std::io::Error::new(e.kind(), what)));
            }
        };
        let key = Secrets::load(dir, None)?.log_key();
        Ok(Self {
            dir: dir.to_owned(),
            log: LogFile::open_read_only(&log_path, key)?,
            read_only: true,
            _lock: lock,
            _dir_lock: dir_lock,
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Surveys the whole log, past any damage (see [`verify`]); reads only.
    pub fn survey(&self) -> Result<Survey, StoreError> {
        let path = self.dir.join(LOG);
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        if file.metadata().map_err(|e| StoreError::io(&path, e))?.len() == 0 {
            return Ok(Survey::default());
        }
        // SAFETY: only a writer changes the log (it appends, and cuts what follows the
        // last good frame), and every writer locks `LOCK` and the directory exclusively
        // before it opens the log, while this store holds one of them for its whole life
        // (see `open`, `open_read_only`): no other process changes the file while it is
        // mapped. Nor does this one: the map lives for this call only, and this store
        // changes its log only through `&mut self`.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| StoreError::io(&path, e))?;
        Ok(verify::survey(&map, &self.key))
    }

    /// The log of `dir` as committed now, mapped, for the writer that holds its lock (a
    /// server checking, in the background, the part its checkpoint covers). The mapping
    /// ends where the log ends now: the writer only appends past that, or cuts back to its
    /// last acknowledged commit, which is no earlier.
    ///
    /// # Safety
    ///
    /// The caller must hold a store of `dir` opened for writing ([`Self::open`]) whose
    /// log has been replayed (its torn tail, if any, cut), and keep it for as long as the
    /// returned log is surveyed: then no byte mapped is cut or changed (a writer only
    /// appends past them, or cuts what a failed commit left after them).
    pub unsafe fn map_committed(dir: &Path) -> Result<verify::CommittedLog, StoreError> {
        let key = Secrets::load(dir, None)?.log_key();
        let path = dir.join(LOG);
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        if file.metadata().map_err(|e| StoreError::io(&path, e))?.len() == 0 {
            return Ok(verify::CommittedLog::default());
        }
        // SAFETY: the caller holds the writer, its log replayed (this function's contract):
        // every byte mapped is an acknowledged commit, which stays in the file, unchanged,
        // while the mapping lives.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| StoreError::io(&path, e))?;
        Ok(verify::CommittedLog::new(map, key))
    }

    /// Copies every intact commit of the log into a new store in `out` (which must not
    /// hold one), with this store's keys; returns the survey that says what was left
    /// behind. Nothing here is changed. Each commit's payload is copied as it is, under a
    /// new (tagged) header for its new position: dropping damage moves the commits after it.
    pub fn salvage_into(&self, out: &Path) -> Result<Survey, StoreError> {
        let path = self.dir.join(LOG);
        let bytes = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        let survey = verify::survey(&bytes, &self.key);
        std::fs::create_dir_all(out).map_err(|e| StoreError::io(out, e))?;
        let new_log = out.join(LOG);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&new_log)
            .map_err(|e| StoreError::io(&new_log, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut at: LogPosition = 0;
        for c in &survey.commits {
            let payload = &bytes[(c.at + c.header()) as usize..c.end() as usize];
            // The survey checked the payload against this CRC (same place in both versions).
            let crc = &bytes[c.at as usize + 8..c.at as usize + 12];
            let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            let len = payload.len() as u32;
            w.write_all(&encode_header(&self.key, at, len, crc))
                .and_then(|()| w.write_all(payload))
                .map_err(|e| StoreError::io(&new_log, e))?;
            at += (HEADER + payload.len()) as u64;
        }
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(&new_log, e))?;
        let keys = self.dir.join(secrets::FILE);
        let new_keys = out.join(secrets::FILE);
        std::fs::copy(&keys, &new_keys).map_err(|e| StoreError::io(&new_keys, e))?;
        sync_dir(out)?;
        Ok(survey)
    }
}

impl EventStore for EmbeddedStore {
    fn checkpoints(&self) -> bool {
        true
    }

    fn replay(
        &mut self,
        from: LogPosition,
        visit: &mut dyn FnMut(Record<'_>),
    ) -> Result<LogPosition, StoreError> {
        let mut bad = None;
        let scan = self.log.scan(from, &mut |at, payload| {
            for rec in Decoder::new(payload) {
                match rec {
                    Ok(r) => visit(r),
                    Err(e) => {
                        bad.get_or_insert((at, e));
                    }
                }
            }
        })?;
        if let Some((at, e)) = bad {
            // The frame's CRC was right, so this is a bug or a format change, not a crash.
            return Err(self
                .log
                .damaged(at, format!("the commit there holds a {e}")));
        }
        if scan.torn_bytes > 0 {
            self.refuse_cut_below_checkpoint(scan.valid_end)?;
        }
        if scan.torn_bytes > 0 && self.read_only {
            tracing::warn!(
                bytes = scan.torn_bytes,
                "skipping an unacknowledged torn commit at the end of the log (the next writer cuts it off)"
            );
        } else if scan.torn_bytes > 0 {
            tracing::warn!(
                bytes = scan.torn_bytes,
                "cutting off an unacknowledged torn commit at the end of the log"
            );
            self.log.truncate(scan.valid_end)?;
        }
        Ok(scan.valid_end)
    }

    fn commit(&mut self, batch: &Batch) -> Result<LogPosition, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if batch.is_empty() {
            return Ok(self.log.end());
        }
        self.log.append(&batch.slices())
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        self.log.cut_to_last_commit()?;
        probe_space(&self.dir)
    }

    fn load_checkpoint(&mut self, with_fold: bool) -> Result<Option<Checkpoint>, StoreError> {
        let Some((position, query)) = self.read_part(SNAPSHOT_QUERY)? else {
            return Ok(None);
        };
        if position > self.log.end() {
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

    fn save_checkpoint(
        &mut self,
        position: LogPosition,
        query: PartWriter<'_>,
        fold: PartWriter<'_>,
        runs: &[(RunId, PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if !runs.is_empty() {
            let dir = self.dir.join(RUNS);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        // Every file is written and made durable under a temporary name at once; then
        // the runs are renamed into place (and their directory synced), and only then
        // the two parts, which name them. The runs no checkpoint names any more are
        // removed only after (`retain_runs`). A crash between the two parts' renames
        // leaves parts of different positions, which the loader refuses to pair (a
        // query-only open reads the query part alone: its runs are in place before it).
        let this = &*self;
        let panicked = || StoreError::Corrupt {
            path: RUNS.into(),
            what: "checkpoint writer panicked".into(),
        };
        let (parts, run_files) = std::thread::scope(|s| {
            let writers: Vec<_> = runs
                .iter()
                .map(|&(id, body)| {
                    s.spawn(move || {
                        let path = this.run_path(id);
                        let tmp = path.with_extension("tmp");
                        write_durable(&tmp, &[], body).map(|()| (tmp, path))
                    })
                })
                .collect();
            let fold_part = s.spawn(|| this.write_part(SNAPSHOT_FOLD, position, fold));
            let query_part = this.write_part(SNAPSHOT_QUERY, position, query);
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

    fn save_positions(
        &mut self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.write_positions(at, positions)
    }

    fn load_positions(&mut self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        self.read_positions()
    }

    fn save_aside(
        &mut self,
        aside: Aside,
        at: LogPosition,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let (name, magic) = aside_file(aside);
        self.write_aside(name, magic, at, bytes)
    }

    fn load_aside(&mut self, aside: Aside) -> Result<Option<(LogPosition, Vec<u8>)>, StoreError> {
        let (name, magic) = aside_file(aside);
        let kept = self.read_aside(name, magic)?;
        if kept.as_ref().is_some_and(|(at, _)| *at > self.log.end()) {
            tracing::warn!(file = name, "ignoring a table kept for a longer log");
            return Ok(None);
        }
        Ok(kept)
    }

    fn load_run(&mut self, id: RunId, verify: bool) -> Result<Option<PartBytes>, StoreError> {
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
        // directory is locked by this process, so the mapped bytes stay as they are.
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

    fn verify_runs(&mut self, ids: &[RunId]) -> Result<bool, StoreError> {
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

    fn retain_runs(&mut self, keep: &[RunId]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
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
}

/// The sources' positions as of a checkpoint (see [`EventStore::save_positions`]), kept
/// aside as the other tables derived from the log (see [`EmbeddedStore::write_aside`]).
const POSITIONS: &str = "positions";
const POSITIONS_MAGIC: &[u8; 8] = b"NWPOS1\0\0";

/// The file and magic of each table kept aside.
fn aside_file(aside: Aside) -> (&'static str, &'static [u8; 8]) {
    match aside {
        Aside::Presence => ("presence", b"NWAGT1\0\0"),
    }
}

impl EmbeddedStore {
    fn write_positions(
        &self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        let mut body = Vec::new();
        positions.encode(&mut body);
        self.write_aside(POSITIONS, POSITIONS_MAGIC, at, &body)
    }

    fn read_positions(&self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        let parsed = self
            .read_aside(POSITIONS, POSITIONS_MAGIC)?
            .and_then(|(at, body)| SourceCheckpoint::decode(&body).map(|cp| (at, cp)));
        if parsed.is_none() && self.dir.join(POSITIONS).exists() {
            tracing::warn!("ignoring a damaged positions file; reading them from the log");
        }
        Ok(parsed)
    }

    /// A table derived from the log up to `at`, in file `name`: `magic`, the log position
    /// (u64 LE), the CRC-32 of the body, the body. No fsync, as for checkpoint parts: one
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
}

impl EmbeddedStore {
    /// Defence in depth against cutting acknowledged commits: the bytes a checkpoint
    /// covers were acknowledged, so a torn tail starting before its position is damage,
    /// never cut (nor skipped by a reader).
    fn refuse_cut_below_checkpoint(&self, valid_end: LogPosition) -> Result<(), StoreError> {
        match self.read_part(SNAPSHOT_QUERY)? {
            Some((position, _)) if position > valid_end => Err(self.log.damaged(
                valid_end,
                format!(
                    "the last good frame ends there, but the checkpoint covers the log up to byte {position}: the bytes after it were acknowledged, they are no unfinished last write"
                ),
            )),
            _ => Ok(()),
        }
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
        // directory is locked by this process, so the mapped bytes stay as they are.
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

/// Free space a store needs before it is taken for writable again after a failure.
const PROBE_BYTES: usize = 1 << 20;
const PROBE: &str = "space.probe";

/// Whether `dir` can take [`PROBE_BYTES`] of durable writes: a file of that size is
/// written, synced and removed (a full disk fails the write or the sync).
fn probe_space(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(PROBE);
    let written = File::create(&path)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; PROBE_BYTES])?;
            f.sync_data()
        })
        .map_err(|e| StoreError::io(&path, e));
    let removed = std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e));
    written.and(removed)
}

impl EmbeddedStore {
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
        // (a mapping keeps the replaced file's bytes), and the directory is locked by
        // this process (exclusively, or shared with other readers: no writer), so the
        // mapped bytes stay as they are while borrowed.
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

    /// Writes a checkpoint part, durable, under a temporary name; returns that name and
    /// the part's own (the caller renames it once the runs it names are in place).
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
        write_durable(&tmp, &head, body)?;
        Ok((tmp, path))
    }
}

/// Writes `head` then `body` into a new file at `path`, and makes its data durable.
fn write_durable(path: &Path, head: &[u8], body: PartWriter<'_>) -> Result<(), StoreError> {
    let f = File::create(path).map_err(|e| StoreError::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, f);
    out.write_all(head)
        .and_then(|()| body(&mut out))
        .and_then(|()| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_data())
        .map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::DeadLetter;

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _a = EmbeddedStore::open(dir.path()).expect("open");
        assert!(matches!(
            EmbeddedStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    fn one_dead_letter(position: u64) -> Batch {
        let mut batch = Batch::default();
        batch.push(&Record::DeadLetter(DeadLetter {
            source: "f".into(),
            position,
            code: "empty".into(),
            reason: "empty line".into(),
            raw: (&b""[..]).into(),
            truncated_from: None,
            received_ms: None,
        }));
        batch
    }

    #[test]
    fn recover_cuts_what_a_failed_commit_left_and_commits_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = EmbeddedStore::open(dir.path()).expect("open");
        s.commit(&one_dead_letter(1)).expect("commit");
        // A failed commit whose own cleanup failed: part of a frame stays behind.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .expect("open log");
        f.write_all(b"NWL1\x40\0\0\0\0\0\0\0half a frame")
            .expect("write");
        drop(f);
        s.recover().expect("recover");
        assert!(
            !dir.path().join(PROBE).exists(),
            "the probe file is removed"
        );
        let end = s.commit(&one_dead_letter(2)).expect("commit");
        let mut positions = Vec::new();
        let replayed = s.replay(0, &mut |r| {
            if let Record::DeadLetter(d) = r {
                positions.push(d.position);
            }
        });
        assert_eq!(replayed.expect("no damage in the log"), end);
        assert_eq!(positions, vec![1, 2]);
    }

    #[test]
    fn the_committed_log_is_what_was_there_when_mapped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = EmbeddedStore::open(dir.path()).expect("open");
        s.replay(0, &mut |_| {}).expect("replay");
        assert!(
            // SAFETY: `s`, the writer, is open and replayed, and outlives both mappings.
            unsafe { EmbeddedStore::map_committed(dir.path()) }
                .expect("map")
                .is_empty()
        );
        let end = s.commit(&one_dead_letter(1)).expect("commit");
        // SAFETY: as above.
        let committed = unsafe { EmbeddedStore::map_committed(dir.path()) }.expect("map");
        // Commits after the mapping are not part of it.
        s.commit(&one_dead_letter(2)).expect("commit");
        assert_eq!(committed.len(), end);
        let survey = committed.survey();
        assert_eq!((survey.commits.len(), survey.records()), (1, (0, 1)));
        assert!(!survey.is_damaged() && survey.torn_tail.is_none());
    }

    #[test]
    fn readers_share_the_lock_and_exclude_a_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(EmbeddedStore::open(dir.path()).expect("create"));
        let a = EmbeddedStore::open_read_only(dir.path()).expect("reader");
        let _b = EmbeddedStore::open_read_only(dir.path()).expect("second reader");
        assert!(matches!(
            EmbeddedStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
        drop((a, _b));
        let _w = EmbeddedStore::open(dir.path()).expect("writer");
        assert!(matches!(
            EmbeddedStore::open_read_only(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn a_reader_creates_nothing_and_cuts_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("a/b");
        assert!(matches!(
            EmbeddedStore::open_read_only(&missing),
            Err(StoreError::NoStore(_))
        ));
        assert!(!dir.path().join("a").exists());
        assert!(matches!(
            EmbeddedStore::open_read_only(dir.path()),
            Err(StoreError::NoStore(_))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        // A torn last commit is skipped in memory, not cut; a writer cuts it.
        let mut w = EmbeddedStore::open(dir.path()).expect("create");
        let mut batch = Batch::default();
        batch.push(&Record::DeadLetter(DeadLetter {
            source: "f".into(),
            position: 1,
            code: "empty".into(),
            reason: "empty line".into(),
            raw: (&b""[..]).into(),
            truncated_from: None,
            received_ms: None,
        }));
        let end = w.commit(&batch).expect("commit");
        let log = dir.path().join(LOG);
        let mut torn = std::fs::read(&log).expect("read");
        torn.extend_from_slice(&encode_header(&w.key, end, 0xff, 0));
        torn.extend_from_slice(b"ab");
        drop(w);
        std::fs::write(&log, &torn).expect("write");
        let mut r = EmbeddedStore::open_read_only(dir.path()).expect("reader");
        let mut n = 0;
        assert_eq!(r.replay(0, &mut |_| n += 1).expect("replay"), end);
        assert_eq!(n, 1);
        assert!(matches!(r.commit(&batch), Err(StoreError::ReadOnly)));
        drop(r);
        assert_eq!(std::fs::read(&log).expect("read"), torn);
        let mut w = EmbeddedStore::open(dir.path()).expect("writer");
        assert_eq!(w.replay(0, &mut |_| {}).expect("replay"), end);
        assert_eq!(std::fs::metadata(&log).expect("stat").len(), end);
    }

    #[test]
    fn commits_replay_and_checkpoint_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = EmbeddedStore::open(dir.path()).expect("open");
        let mut batch = Batch::default();
        batch.push(&Record::DeadLetter(DeadLetter {
            source: "f".into(),
            position: 3,
            code: "empty".into(),
            reason: "empty line".into(),
            raw: (&b""[..]).into(),
            truncated_from: None,
            received_ms: None,
        }));
        let end = s.commit(&batch).expect("commit");
        s.save_checkpoint(
            end,
            &|w| w.write_all(b"calls"),
            &|w| w.write_all(b"keys"),
            &[(7, &|w| w.write_all(b"run\xc0\xa4\x76\x50"))],
        )
        .expect("checkpoint");
        let run = s.load_run(7, true).expect("load").expect("whole");
        assert_eq!(&*run, b"run\xc0\xa4\x76\x50");
        assert_eq!(s.load_run(8, true).expect("load"), None);
        s.retain_runs(&[]).expect("retain");
        assert_eq!(s.load_run(7, false).expect("load"), None);
        drop(s);
        let mut s = EmbeddedStore::open(dir.path()).expect("reopen");
        let mut n = 0;
        assert_eq!(s.replay(0, &mut |_| n += 1).expect("replay"), end);
        assert_eq!(n, 1);
        let want = Checkpoint {
            position: end,
            query: b"calls".to_vec().into(),
            fold: Some(b"keys".to_vec().into()),
        };
        assert_eq!(s.load_checkpoint(true).expect("load"), Some(want));
        let query_only = s.load_checkpoint(false).expect("load").expect("some");
        assert_eq!(query_only.fold, None);
        // Parts of different positions are not paired.
        std::fs::write(
            dir.path().join(SNAPSHOT_FOLD),
            b"NWSNAP01\x01\0\0\0\0\0\0\0keys",
        )
        .expect("write");
        let cp = s.load_checkpoint(true).expect("load").expect("some");
        assert_eq!(cp.fold, None);
    }

    fn dead_letter_with_raw(position: u64, raw: &[u8]) -> Batch {
        let mut batch = Batch::default();
        batch.push(&Record::DeadLetter(DeadLetter {
            source: "push:peer".into(),
            position,
            code: "invalid_json".into(),
            reason: "not JSON".into(),
            raw: raw.into(),
            truncated_from: None,
            received_ms: None,
        }));
        batch
    }

    fn records(dir: &Path) -> (usize, usize) {
        let mut s = EmbeddedStore::open(dir).expect("open");
        let (mut events, mut dead) = (0, 0);
        s.replay(0, &mut |r| match r {
            Record::Event(_) => events += 1,
            Record::DeadLetter(_) => dead += 1,
            Record::Positions(_) => {}
        })
        .expect("replay");
        (events, dead)
    }

    #[test]
    fn a_flipped_length_bit_is_refused_by_a_writer_never_cut() {
        for victim in [1, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut s = EmbeddedStore::open(dir.path()).expect("open");
            let ends: Vec<LogPosition> = (1..=3)
                .map(|p| s.commit(&one_dead_letter(p)).expect("commit"))
                .collect();
            drop(s);
            let log = dir.path().join(LOG);
            let mut bytes = std::fs::read(&log).expect("read");
            let at = ends[victim - 1];
            bytes[at as usize + 4 + 2] ^= 0x01;
            std::fs::write(&log, &bytes).expect("write");
            let mut s = EmbeddedStore::open(dir.path()).expect("open");
            match s.replay(0, &mut |_| {}) {
                Err(StoreError::Damaged { at: got, .. }) => assert_eq!(got, at),
                other => panic!("frame {victim}: expected damage, got {other:?}"),
            }
            drop(s);
            assert_eq!(std::fs::read(&log).expect("read"), bytes, "the log was cut");
            let survey = EmbeddedStore::open_read_only(dir.path())
                .expect("reader")
                .survey()
                .expect("survey");
            assert_eq!((survey.commits.len(), survey.torn_tail), (2, None));
            let next = ends
                .get(victim)
                .map_or(bytes.len() as u64, |_| ends[victim]);
            assert_eq!((survey.damage[0].at, survey.damage[0].end), (at, next));
        }
    }

    #[test]
    fn a_torn_tail_under_the_checkpoint_is_damage_never_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = EmbeddedStore::open(dir.path()).expect("open");
        let first = s.commit(&one_dead_letter(1)).expect("commit");
        let end = s.commit(&one_dead_letter(2)).expect("commit");
        s.save_checkpoint(
            end,
            &|w| w.write_all(b"calls"),
            &|w| w.write_all(b"keys"),
            &[],
        )
        .expect("checkpoint");
        drop(s);
        // The second, acknowledged, commit loses its last bytes: it looks torn.
        let log = dir.path().join(LOG);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open");
        f.set_len(end - 3).expect("cut");
        drop(f);
        for read_only in [false, true] {
            let mut s = if read_only {
                EmbeddedStore::open_read_only(dir.path()).expect("reader")
            } else {
                EmbeddedStore::open(dir.path()).expect("writer")
            };
            match s.replay(0, &mut |_| {}) {
                Err(StoreError::Damaged { at, what, .. }) => {
                    assert_eq!(at, first);
                    assert!(what.contains("checkpoint"), "{what}");
                }
                other => panic!("expected damage, got {other:?}"),
            }
        }
        assert_eq!(std::fs::metadata(&log).expect("stat").len(), end - 3);
    }

    #[test]
    fn repair_never_salvages_a_frame_sent_inside_a_rejected_line() {
        for tag_damaged_too in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut s = EmbeddedStore::open(dir.path()).expect("open");
            let a = s.commit(&one_dead_letter(1)).expect("commit A");
            // B: a dead letter whose raw line is a complete (untagged) frame of an event.
            let mut forged = Vec::new();
            crate::store::codec::encode_event(
                &mut forged,
                &crate::domain::event::Event {
                    kind: crate::domain::event::EventType::Answered,
                    ts: 1_551_682_805_250,
                    call_id: Some("never-acknowledged".into()),
                    event_id: None,
                    line: None,
                    agent: None,
                    booking: None,
                    reason: None,
                    caller: None,
                },
            );
            let mut raw = crate::store::log::MAGIC_V1.to_vec();
            raw.extend_from_slice(&(forged.len() as u32).to_le_bytes());
            raw.extend_from_slice(&crc32fast::hash(&forged).to_le_bytes());
            raw.extend_from_slice(&forged);
            let b = s.commit(&dead_letter_with_raw(2, &raw)).expect("commit B");
            s.commit(&one_dead_letter(3)).expect("commit C");
            drop(s);
            let log = dir.path().join(LOG);
            let mut bytes = std::fs::read(&log).expect("read");
            bytes[a as usize] ^= 0x01; // B's magic
            if tag_damaged_too {
                bytes[a as usize + 14] ^= 0x01;
            }
            std::fs::write(&log, &bytes).expect("write");
            let out = dir.path().join("fixed");
            let survey = EmbeddedStore::open_read_only(dir.path())
                .expect("reader")
                .salvage_into(&out)
                .expect("salvage");
            assert_eq!(
                survey.records(),
                (0, 2),
                "tag damaged too: {tag_damaged_too}"
            );
            assert_eq!((survey.damage[0].at, survey.damage[0].end), (a, b));
            // The new store opens, its commits framed for their new places.
            assert_eq!(records(&out), (0, 2));
        }
    }

    #[test]
    fn a_reader_without_lock_file_locks_the_directory_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = EmbeddedStore::open(dir.path()).expect("create");
        w.commit(&one_dead_letter(1)).expect("commit");
        drop(w);
        std::fs::remove_file(dir.path().join(LOCK)).expect("rm LOCK");
        let listing = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .expect("list")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            names
        };
        let before = listing();
        let r = EmbeddedStore::open_read_only(dir.path()).expect("reader");
        let _second = EmbeddedStore::open_read_only(dir.path()).expect("second reader");
        assert_eq!(listing(), before, "a reader created a file");
        assert!(r.survey().expect("survey").commits.len() == 1);
        // A writer cannot take the store (and so cannot cut the log under the reader).
        assert!(matches!(
            EmbeddedStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
        drop((r, _second));
        let _w = EmbeddedStore::open(dir.path()).expect("writer once the readers are gone");
        assert!(matches!(
            EmbeddedStore::open_read_only(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn a_reader_that_can_lock_nothing_does_not_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut w = EmbeddedStore::open(&data).expect("create");
        w.commit(&one_dead_letter(1)).expect("commit");
        drop(w);
        std::fs::remove_file(data.join(LOCK)).expect("rm LOCK");
        let mode = |m| std::fs::set_permissions(&data, std::fs::Permissions::from_mode(m));
        mode(0o300).expect("chmod"); // search, no read: the directory cannot be opened
        let enforced = File::open(&data).is_err();
        let opened = EmbeddedStore::open_read_only(&data);
        mode(0o700).expect("chmod");
        if !enforced {
            return; // (permissions are not enforced for this user, e.g. root)
        }
        assert!(
            matches!(opened, Err(StoreError::Io { .. })),
            "{:?}",
            opened.err()
        );
    }
}
