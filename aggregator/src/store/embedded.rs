//! The default store: one directory on the local disk, no server.
//!
//! ```text
//! DIR/LOCK          lock: one writer (exclusive) or any number of readers (shared);
//!                   a writer also locks DIR itself (exclusive), so that a reader of a
//!                   directory without LOCK locks DIR (shared) and creates nothing
//! DIR/secret.key    dedupe and caller-hash keys (0600)
//! DIR/events.log    framed commits of events and dead letters (see `log`)
//! DIR/checkpoint.*, DIR/positions, DIR/presence, DIR/runs/
//!                   the checkpoint (see `checkpoint_dir`)
//! ```

use super::checkpoint_dir::{CheckpointDir, sync_dir, try_lock};
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
    /// The checkpoint's files, in the directory (kept by the locks above).
    checkpoint: CheckpointDir,
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
            checkpoint: CheckpointDir::under_store_lock(dir, false),
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
            checkpoint: CheckpointDir::under_store_lock(dir, true),
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
        self.checkpoint.load_checkpoint(with_fold, self.log.end())
    }

    fn save_checkpoint(
        &mut self,
        position: LogPosition,
        query: PartWriter<'_>,
        fold: PartWriter<'_>,
        runs: &[(RunId, PartWriter<'_>)],
    ) -> Result<(), StoreError> {
        self.checkpoint.save_checkpoint(position, query, fold, runs)
    }

    fn save_positions(
        &mut self,
        at: LogPosition,
        positions: &SourceCheckpoint,
    ) -> Result<(), StoreError> {
        self.checkpoint.save_positions(at, positions)
    }

    fn load_positions(&mut self) -> Result<Option<(LogPosition, SourceCheckpoint)>, StoreError> {
        self.checkpoint.load_positions()
    }

    fn save_aside(
        &mut self,
        aside: Aside,
        at: LogPosition,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.checkpoint.save_aside(aside, at, bytes)
    }

    fn load_aside(&mut self, aside: Aside) -> Result<Option<(LogPosition, Vec<u8>)>, StoreError> {
        self.checkpoint.load_aside(aside, self.log.end())
    }

    fn load_run(&mut self, id: RunId, verify: bool) -> Result<Option<PartBytes>, StoreError> {
        self.checkpoint.load_run(id, verify)
    }

    fn verify_runs(&mut self, ids: &[RunId]) -> Result<bool, StoreError> {
        self.checkpoint.verify_runs(ids)
    }

    fn retain_runs(&mut self, keep: &[RunId]) -> Result<(), StoreError> {
        self.checkpoint.retain_runs(keep)
    }
}

impl EmbeddedStore {
    /// Defence in depth against cutting acknowledged commits: the bytes a checkpoint
    /// covers were acknowledged, so a torn tail starting before its position is damage,
    /// never cut (nor skipped by a reader).
    fn refuse_cut_below_checkpoint(&self, valid_end: LogPosition) -> Result<(), StoreError> {
        match self.checkpoint.position()? {
            Some(position) if position > valid_end => Err(self.log.damaged(
                valid_end,
                format!(
                    "the last good frame ends there, but the checkpoint covers the log up to byte {position}: the bytes after it were acknowledged, they are no unfinished last write"
                ),
            )),
            _ => Ok(()),
        }
    }
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
            dir.path().join(crate::store::checkpoint_dir::SNAPSHOT_FOLD),
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
