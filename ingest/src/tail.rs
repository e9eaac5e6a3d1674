//! A growing log followed like `tail -F` (a PBX's `queue_log`): its whole lines as they
//! are written, across logrotate's rename + new file and copytruncate.
//!
//! Its partition is `tail:<absolute path>`; its position holds a generation (one more at
//! each rotation or truncation, so that positions keep their order), the byte offset
//! and line number read to, the identity of the file read (device, inode) and a
//! fingerprint of its first bytes (a file truncated or replaced in place no longer
//! starts with them). On resume the file is found again by its identity — under the
//! path, or renamed by a rotation while netwait was stopped (in the same directory) —
//! and read again from its start: the lines before the position are the same lines,
//! their events dropped by dedupe, and the queue_log rules that look back (a call's
//! earliest ENTERQUEUE) see them again.
//!
//! The file is polled (every 200 ms when idle) rather than watched with inotify: no
//! dependency, the same on every filesystem (network and overlay mounts do not always
//! deliver inotify events), and a copytruncate shows as a size below the offset either
//! way; 200 ms keeps delivery well within a second.

use crate::format::Format;
use crate::source::{
    CheckpointDelta, PartitionId, Poll, Position, RawBatch, Source, SourceCheckpoint, SourceError,
};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an idle poll waits before saying so.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes of a file's start that identify its content.
const FINGERPRINT: usize = 64;
/// Bytes read at most per batch.
const BATCH_BYTES: usize = 1 << 20;

/// Where a followed file stands (see the module).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Mark {
    generation: u64,
    offset: u64,
    line: u64,
    dev: u64,
    ino: u64,
    fingerprint: Vec<u8>,
}

impl Mark {
    fn position(&self) -> Position {
        let mut b = Vec::with_capacity(40 + self.fingerprint.len());
        for n in [self.generation, self.offset, self.line, self.dev, self.ino] {
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
            dev: n(3)?,
            ino: n(4)?,
            fingerprint: b.get(40..)?.to_vec(),
        })
    }
}

/// The file being read.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
}

pub struct TailSource {
    path: PathBuf,
    name: String,
    partition: PartitionId,
    format: Format,
    mark: Mark,
    open: Option<Open>,
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
                let m = file.metadata()?;
                Ok(Some(Open {
                    file,
                    dev: m.dev(),
                    ino: m.ino(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The file of the directory with this identity (a rotation renamed it).
    fn find_renamed(&self, dev: u64, ino: u64) -> Option<Open> {
        let dir = self.path.parent()?;
        std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
            let m = e.metadata().ok()?;
            (m.is_file() && m.dev() == dev && m.ino() == ino)
                .then(|| Self::open_path(&e.path()).ok().flatten())
                .flatten()
        })
    }

    fn fingerprint_of(file: &File, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = read_at_most(file, &mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Starts a new generation on `open` from its first byte.
    fn start(&mut self, open: Open) {
        self.mark = Mark {
            generation: self.mark.generation + 1,
            offset: 0,
            line: 0,
            dev: open.dev,
            ino: open.ino,
            fingerprint: Vec::new(),
        };
        self.open = Some(open);
    }

    /// Whole lines after the mark, if any.
    fn read_lines(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(open) = &self.open else {
            return Ok(None);
        };
        let len = open.file.metadata()?.len();
        let fp_ok = |file: &File, fp: &[u8]| -> std::io::Result<bool> {
            Ok(fp.is_empty() || Self::fingerprint_of(file, fp.len())? == fp)
        };
        if len < self.mark.offset || !fp_ok(&open.file, &self.mark.fingerprint)? {
            // Truncated (copytruncate) or rewritten in place: a new file in all but name.
            tracing::info!(file = %self.name, "followed file truncated: reading it from its start");
            let open = self.open.take().expect("open");
            self.start(open);
            return Ok(None);
        }
        if len == self.mark.offset {
            return Ok(None);
        }
        let want = usize::try_from(len - self.mark.offset)
            .unwrap_or(usize::MAX)
            .min(BATCH_BYTES);
        let mut buf = vec![0u8; want];
        let n = read_at_most(&open.file, &mut buf, self.mark.offset)?;
        buf.truncate(n);
        let Some(last_nl) = memchr::memrchr(b'\n', &buf) else {
            // A line being written: wait for its end (a line longer than a batch is cut).
            if buf.len() < BATCH_BYTES {
                return Ok(None);
            }
            buf.push(b'\n');
            return Ok(Some(buf));
        };
        buf.truncate(last_nl + 1);
        if self.mark.fingerprint.len() < FINGERPRINT {
            self.mark.fingerprint = Self::fingerprint_of(&open.file, FINGERPRINT)?;
        }
        Ok(Some(buf))
    }

    /// At the end of the file read: a rotation (the path names another file now)
    /// switches to the new file.
    fn follow_rotation(&mut self) -> std::io::Result<bool> {
        let Some(now) = Self::open_path(&self.path)? else {
            return Ok(false);
        };
        match &self.open {
            Some(o) if o.dev == now.dev && o.ino == now.ino => Ok(false),
            _ => {
                tracing::info!(file = %self.name, "followed file rotated: reading the new one");
                self.start(now);
                Ok(true)
            }
        }
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
        let Some(at) = checkpoint.get(&self.partition) else {
            self.open = Self::open_path(&self.path)?;
            if let Some(o) = &self.open {
                self.mark.dev = o.dev;
                self.mark.ino = o.ino;
            }
            return Ok(());
        };
        self.handed = at.clone();
        let Some(mark) = Mark::read(at) else {
            return Err(std::io::Error::other("a tail position of another netwait version").into());
        };
        let here = Self::open_path(&self.path)?;
        let same = |o: &Open| o.dev == mark.dev && o.ino == mark.ino;
        let open = match here {
            Some(o) if same(&o) => Some(o),
            other => self.find_renamed(mark.dev, mark.ino).or_else(|| {
                if other.is_some() {
                    tracing::warn!(file = %self.name, "the file read before the restart is gone: reading the new one from its start");
                }
                None
            }),
        };
        match open {
            Some(o) => {
                // The same file: read again from its start (see the module), same generation.
                self.mark = Mark {
                    offset: 0,
                    line: 0,
                    fingerprint: Vec::new(),
                    ..mark
                };
                self.open = Some(o);
            }
            None => {
                self.mark = mark;
                if let Some(o) = Self::open_path(&self.path)? {
                    self.start(o);
                }
            }
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        if self.open.is_none() {
            if let Some(o) = Self::open_path(&self.path)? {
                self.start(o);
            } else {
                std::thread::sleep(self.poll_interval);
                return Ok(Poll::Idle);
            }
        }
        let lines = match self.read_lines()? {
            Some(lines) => lines,
            None => {
                if !self.follow_rotation()? {
                    std::thread::sleep(self.poll_interval);
                }
                return Ok(Poll::Idle);
            }
        };
        let before = self.mark.position();
        let first_line = self.mark.line + 1;
        self.mark.offset += lines.len() as u64;
        self.mark.line += memchr::memchr_iter(b'\n', &lines).count() as u64;
        let to = self.mark.position();
        // After a rotation the batch goes on from where the last one ended (an older
        // generation); read again after a restart, it starts before it.
        let from = std::mem::replace(&mut self.handed, to.clone()).min(before);
        let delta = CheckpointDelta::single(self.partition.clone(), from, to)?;
        Ok(Poll::Batch(RawBatch {
            bytes: lines.into(),
            format: self.format,
            delta,
            first_line: Some(first_line),
            end_offset: self.mark.offset,
        }))
    }
}
