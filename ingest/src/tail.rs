//! A growing log followed like `tail -F` (a PBX's `queue_log`): its whole lines as they
//! are written, across logrotate's rename + new file and copytruncate, and restarts.
//!
//! Its partition is `tail:<absolute path>`; its position holds a generation (one more at
//! each new file: rotation or truncation, so that positions keep their order), the byte
//! offset and line number read to, the identity (device, inode) of the file read and of
//! the one read before it, and a fingerprint of the file's first bytes (a file truncated
//! or replaced in place no longer starts with them).
//!
//! Rotation. Every poll looks at what the path names: a file not seen yet (a rotation
//! renamed the one read) is opened at once and queued, so that a second rotation before
//! the first file is read to its end loses nothing (the open file is read under any
//! name). The file read is left for the next one only once the next one has data AND
//! the file read is read to its end (looked at in that order): a writer that keeps
//! appending to the renamed file until it reopens (Asterisk until `logger reload`,
//! logrotate's `create` having made the new file empty) loses no line.
//!
//! Copytruncate. A file shorter than the offset read, or no longer starting with its
//! fingerprint, was truncated: the lines written after the last read and before the
//! copy are in the copy, which is found in the directory (same first bytes, at least
//! as long as the offset) and read from the offset to its end before the truncated file
//! is read as a new generation. (Lines written between the copy and the truncation are
//! lost for every reader: logrotate's documented race.)
//!
//! Restart. The file of the position is found by its identity (under the path, or
//! renamed in the same directory), or by its fingerprint when a copytruncate replaced
//! it; reading goes on at the offset. The files that rotated in since (names starting
//! with the path's file name, modified after it, not compressed) and then the path's
//! file follow, oldest first. For queue_log, whose rules look back at a call's earliest
//! ENTERQUEUE (and DID), the file before the position's file (found by identity: a call
//! may straddle the rotation) and the lines of the position's file before the offset
//! are read again as [`Poll::Context`]: the decoder learns from them, makes no events.
//!
//! The file is polled (every 200 ms when idle) rather than watched with inotify: no
//! dependency, the same on every filesystem (network and overlay mounts do not always
//! deliver inotify events), and a copytruncate shows as a size below the offset either
//! way; 200 ms keeps delivery well within a second.

use crate::format::Format;
use crate::source::{
    CheckpointDelta, PartitionId, Poll, Position, RawBatch, Source, SourceCheckpoint, SourceError,
};
use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long an idle poll waits before saying so.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes of a file's start that identify its content.
const FINGERPRINT: usize = 64;
/// Bytes read at most per batch.
const BATCH_BYTES: usize = 1 << 20;
/// Rotated files with these endings are compressed: not readable as lines.
const COMPRESSED: [&str; 6] = [".gz", ".bz2", ".xz", ".zst", ".Z", ".zip"];

/// A file's identity on its filesystem (all zero: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    fn of(m: &Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    fn is_none(self) -> bool {
        self == Self::default()
    }
}

/// Where a followed file stands (see the module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mark {
    generation: u64,
    offset: u64,
    line: u64,
    file: Identity,
    previous: Identity,
    fingerprint: Vec<u8>,
}

impl Mark {
    /// Generation first (big-endian): positions order as generations, then offsets.
    fn position(&self) -> Position {
        let mut b = Vec::with_capacity(56 + self.fingerprint.len());
        for n in [
            self.generation,
            self.offset,
            self.line,
            self.file.dev,
            self.file.ino,
            self.previous.dev,
            self.previous.ino,
        ] {
            b.extend_from_slice(&n.to_be_bytes());
        }
        b.extend_from_slice(&self.fingerprint);
        Position::from_bytes(b)
    }

    fn read(p: &Position) -> Option<Self> {
        let b = p.as_bytes();
        let n = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(*b.get(i * 8..)?.first_chunk::<8>()?))
        };
        Some(Self {
            generation: n(0)?,
            offset: n(1)?,
            line: n(2)?,
            file: Identity {
                dev: n(3)?,
                ino: n(4)?,
            },
            previous: Identity {
                dev: n(5)?,
                ino: n(6)?,
            },
            fingerprint: b.get(56..)?.to_vec(),
        })
    }
}

/// An open file, readable under any name it is given later.
struct Open {
    file: File,
    id: Identity,
}

impl Open {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Lines committed before, to be read again as context (see the module).
struct Context {
    open: Open,
    at: u64,
    until: u64,
}

/// What the file read has after the mark.
enum Ahead {
    /// Bytes to hand out, and how many of the file they cover (a line cut for being
    /// longer than a batch is handed out with an end added).
    Lines(Vec<u8>, u64),
    /// Nothing, or only a line being written.
    Nothing,
    /// Truncated, or rewritten in place: a new file in all but identity.
    Replaced,
}

pub struct TailSource {
    path: PathBuf,
    name: String,
    partition: PartitionId,
    format: Format,
    mark: Mark,
    /// The file read (the mark's).
    open: Option<Open>,
    /// Files that took the path's place after the one read, oldest first.
    next: VecDeque<Open>,
    /// Read again before anything else after a restart.
    context: VecDeque<Context>,
    /// Where the last batch handed out ended (the next batch's `from`).
    handed: Position,
    poll_interval: Duration,
}

impl TailSource {
    /// Follows `path` (made absolute; it need not exist yet).
    pub fn new(path: &Path, format: Format) -> std::io::Result<Self> {
        let path = std::path::absolute(path)?;
        let name = path.display().to_string();
        Ok(Self {
            partition: format!("tail:{name}"),
            name,
            path,
            format,
            mark: Mark::default(),
            open: None,
            next: VecDeque::new(),
            context: VecDeque::new(),
            handed: Position::BEGINNING,
            poll_interval: POLL_INTERVAL,
        })
    }

    /// Polls this often when idle (tests go faster).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The followed path, as shown to people.
    pub fn name_for_humans(&self) -> &str {
        &self.name
    }

    fn open_path(path: &Path) -> std::io::Result<Option<Open>> {
        match File::open(path) {
            Ok(file) => {
                let id = Identity::of(&file.metadata()?);
                Ok(Some(Open { file, id }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The regular files of the directory other than the path's own name: all of them,
    /// or only those named like rotations of it (the file name and more, uncompressed).
    fn directory(&self, rotations_only: bool) -> Vec<(PathBuf, Metadata)> {
        let (Some(dir), Some(base)) = (self.path.parent(), self.path.file_name()) else {
            return Vec::new();
        };
        let base = base.to_string_lossy();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rotated = name.len() > base.len()
                    && name.starts_with(&*base)
                    && !COMPRESSED.iter().any(|c| name.ends_with(c));
                if name == base || (rotations_only && !rotated) {
                    return None;
                }
                let m = e.metadata().ok()?;
                m.is_file().then(|| (e.path(), m))
            })
            .collect()
    }

    /// The file of the directory with this identity (a rotation renamed it).
    fn find_renamed(&self, id: Identity) -> Option<Open> {
        if id.is_none() {
            return None;
        }
        self.directory(false)
            .into_iter()
            .filter(|(_, m)| Identity::of(m) == id)
            .find_map(|(p, _)| Self::open_path(&p).ok().flatten().filter(|o| o.id == id))
    }

    /// The copy a copytruncate made of the file read (not `truncated`): it starts with
    /// the fingerprint and holds at least the offset read; the newest such.
    fn find_copy(&self, truncated: Identity) -> std::io::Result<Option<Open>> {
        if self.mark.offset == 0 || self.mark.fingerprint.is_empty() {
            return Ok(None);
        }
        let mut found: Option<(SystemTime, Open)> = None;
        for (p, m) in self.directory(true) {
            if Identity::of(&m) == truncated || m.len() < self.mark.offset {
                continue;
            }
            let Some(o) = Self::open_path(&p)? else {
                continue;
            };
            if !self.still_holds(&o)? {
                continue;
            }
            let at = m.modified()?;
            if found.as_ref().is_none_or(|(t, _)| at > *t) {
                found = Some((at, o));
            }
        }
        Ok(found.map(|(_, o)| o))
    }

    fn fingerprint_of(file: &File, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = read_at_most(file, &mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Whether `open` still holds what the mark read: as long, the same first bytes.
    fn still_holds(&self, open: &Open) -> std::io::Result<bool> {
        let fp = &self.mark.fingerprint;
        Ok(open.len()? >= self.mark.offset
            && (fp.is_empty() || Self::fingerprint_of(&open.file, fp.len())? == *fp))
    }

    /// Starts a new generation on `open` from its first byte.
    fn start(&mut self, open: Open) {
        self.mark = Mark {
            generation: self.mark.generation + 1,
            offset: 0,
            line: 0,
            file: open.id,
            previous: if self.mark.file.is_none() {
                self.mark.previous
            } else {
                self.mark.file
            },
            fingerprint: Vec::new(),
        };
        self.open = Some(open);
    }

    /// Queues the file the path names when it is new (a rotation); starts it when no
    /// file is read yet.
    fn note_path(&mut self) -> std::io::Result<()> {
        let Some(now) = Self::open_path(&self.path)? else {
            return Ok(());
        };
        let known = |o: &Open| o.id == now.id;
        if self.open.as_ref().is_some_and(known) || self.next.iter().any(known) {
            return Ok(());
        }
        if self.open.is_none() {
            self.start(now);
        } else {
            tracing::info!(file = %self.name, "followed file rotated: the new one is read once the old one is read to its end");
            self.next.push_back(now);
        }
        Ok(())
    }

    /// Whether the writer went on to the next file: then the one read has all it will
    /// ever have (to be looked at before reading it to its end).
    fn moved_on(&self) -> std::io::Result<bool> {
        Ok(match self.next.front() {
            Some(o) => self.next.len() > 1 || o.len()? > 0,
            None => false,
        })
    }

    /// What the file read has after the mark; a last line without its end only when
    /// `all` (the writer moved on: it will never be finished).
    fn ahead(&self, all: bool) -> std::io::Result<Ahead> {
        let Some(open) = &self.open else {
            return Ok(Ahead::Nothing);
        };
        if !self.still_holds(open)? {
            return Ok(Ahead::Replaced);
        }
        let len = open.len()?;
        if len <= self.mark.offset {
            return Ok(Ahead::Nothing);
        }
        let want = usize::try_from(len - self.mark.offset)
            .unwrap_or(usize::MAX)
            .min(BATCH_BYTES);
        let mut buf = vec![0u8; want];
        let n = read_at_most(&open.file, &mut buf, self.mark.offset)?;
        buf.truncate(n);
        let read = buf.len() as u64;
        match memchr::memrchr(b'\n', &buf) {
            Some(last_nl) => {
                buf.truncate(last_nl + 1);
                let covered = buf.len() as u64;
                Ok(Ahead::Lines(buf, covered))
            }
            // A line longer than a batch is cut (and reported as too long).
            None if buf.len() >= BATCH_BYTES => {
                buf.push(b'\n');
                Ok(Ahead::Lines(buf, read))
            }
            // A cut last line (the writer crashed): read as it is (a damaged row).
            None if all && !buf.is_empty() => Ok(Ahead::Lines(buf, read)),
            None => Ok(Ahead::Nothing),
        }
    }

    /// The file read was truncated: its rest is read from its copy, when there is one,
    /// and the truncated file as a new generation after it.
    fn replaced(&mut self) -> std::io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        match self.find_copy(open.id)? {
            Some(copy) => {
                tracing::info!(file = %self.name, "followed file truncated: reading the rest of its copy, then the file from its start");
                self.mark.file = copy.id;
                self.open = Some(copy);
                self.next.push_front(open);
            }
            None => {
                tracing::info!(file = %self.name, "followed file truncated: reading it from its start");
                self.start(open);
            }
        }
        Ok(())
    }

    /// The next lines to read again as context, if any.
    fn context_lines(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        while let Some(c) = self.context.front_mut() {
            if c.at >= c.until {
                self.context.pop_front();
                continue;
            }
            let want = usize::try_from(c.until - c.at)
                .unwrap_or(usize::MAX)
                .min(BATCH_BYTES);
            let mut buf = vec![0u8; want];
            let n = read_at_most(&c.open.file, &mut buf, c.at)?;
            buf.truncate(n);
            if n == 0 {
                self.context.pop_front();
                continue;
            }
            if n == want
                && c.at + (n as u64) < c.until
                && let Some(last_nl) = memchr::memrchr(b'\n', &buf)
            {
                buf.truncate(last_nl + 1);
            }
            c.at += buf.len() as u64;
            return Ok(Some(buf));
        }
        Ok(None)
    }

    /// The batch of `bytes`, covering `covered` bytes of the file after the mark.
    fn batch(&mut self, bytes: Vec<u8>, covered: u64) -> Result<RawBatch, SourceError> {
        let before = self.mark.position();
        let first_line = self.mark.line + 1;
        self.mark.offset += covered;
        self.mark.line += memchr::memchr_iter(b'\n', &bytes).count() as u64
            + u64::from(bytes.last().is_some_and(|&b| b != b'\n'));
        if self.mark.fingerprint.len() < FINGERPRINT
            && let Some(open) = &self.open
        {
            self.mark.fingerprint = Self::fingerprint_of(&open.file, FINGERPRINT)?;
        }
        let to = self.mark.position();
        // After a new generation the batch goes on from where the last one ended (an
        // older generation).
        let from = std::mem::replace(&mut self.handed, to.clone()).min(before);
        let delta = CheckpointDelta::single(self.partition.clone(), from, to)?;
        Ok(RawBatch {
            bytes: bytes.into(),
            format: self.format,
            delta,
            first_line: Some(first_line),
            end_offset: self.mark.offset,
        })
    }

    /// After a restart: the file of the position (see the module), or `None` when it
    /// is gone.
    fn find_marked(&self, here: Option<&Open>) -> std::io::Result<Option<Open>> {
        let id = self.mark.file;
        let found = match here {
            Some(o) if o.id == id => Some(Open {
                file: o.file.try_clone()?,
                id,
            }),
            _ => self.find_renamed(id),
        };
        if let Some(o) = found
            && self.still_holds(&o)?
        {
            return Ok(Some(o));
        }
        // Truncated (copytruncate) or gone: its copy holds what it held.
        self.find_copy(Identity::default())
    }
}

/// `pread` until `buf` is full or the file ends.
fn read_at_most(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Source for TailSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn resume(&mut self, checkpoint: &SourceCheckpoint) -> Result<(), SourceError> {
        let here = Self::open_path(&self.path)?;
        let Some(at) = checkpoint.get(&self.partition) else {
            if let Some(o) = here {
                self.start(o);
            }
            return Ok(());
        };
        self.handed = at.clone();
        let Some(mark) = Mark::read(at) else {
            return Err(std::io::Error::other("a tail position of another netwait version").into());
        };
        self.mark = mark;
        let Some(open) = self.find_marked(here.as_ref())? else {
            tracing::warn!(file = %self.name, "the file read before the restart is gone: reading the one under the path from its start");
            if let Some(o) = here {
                self.start(o);
            }
            return Ok(());
        };
        if self.format == Format::QueueLog {
            if let Some(previous) = self.find_renamed(self.mark.previous) {
                let until = previous.len()?;
                self.context.push_back(Context {
                    open: previous,
                    at: 0,
                    until,
                });
            }
            self.context.push_back(Context {
                open: Open {
                    file: open.file.try_clone()?,
                    id: open.id,
                },
                at: 0,
                until: self.mark.offset,
            });
        }
        let here = here.filter(|h| h.id != open.id);
        if self.mark.file != open.id || here.is_some() || !self.path.exists() {
            // Rotated while stopped (the path may even name nothing yet): the files
            // rotated in after the one read, oldest first, then the path's.
            let since = open.file.metadata()?.modified()?;
            let mut later: Vec<(SystemTime, PathBuf)> = self
                .directory(true)
                .into_iter()
                .filter(|(_, m)| {
                    let id = Identity::of(m);
                    id != open.id && here.as_ref().is_none_or(|h| h.id != id)
                })
                .filter_map(|(p, m)| Some((m.modified().ok()?, p)))
                .filter(|(t, _)| *t > since)
                .collect();
            later.sort();
            for (_, p) in later {
                if let Some(o) = Self::open_path(&p)? {
                    self.next.push_back(o);
                }
            }
        }
        self.mark.file = open.id;
        self.open = Some(open);
        self.next.extend(here);
        Ok(())
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        if let Some(bytes) = self.context_lines()? {
            return Ok(Poll::Context {
                bytes: bytes.into(),
                format: self.format,
            });
        }
        self.note_path()?;
        if self.open.is_none() {
            std::thread::sleep(self.poll_interval);
            return Ok(Poll::Idle);
        }
        // Looked at before the file read is read to its end (see the module).
        let moved_on = self.moved_on()?;
        match self.ahead(moved_on)? {
            Ahead::Lines(bytes, covered) => Ok(Poll::Batch(self.batch(bytes, covered)?)),
            Ahead::Replaced => {
                self.replaced()?;
                Ok(Poll::Idle)
            }
            Ahead::Nothing => {
                match self.next.pop_front() {
                    Some(next) if moved_on => {
                        tracing::info!(file = %self.name, "followed file rotated: reading the new one");
                        self.start(next);
                    }
                    other => {
                        if let Some(o) = other {
                            self.next.push_front(o);
                        }
                        std::thread::sleep(self.poll_interval);
                    }
                }
                Ok(Poll::Idle)
            }
        }
    }
}

#[cfg(test)]
mod tests;
