//! An append-only file of checksummed frames, one frame per commit.
//!
//! Frame: magic `NWL1`, payload length (u32 LE), CRC-32 of the payload (u32 LE), payload.
//! A commit is acknowledged only after `fdatasync`, so a crash can leave at most one torn
//! frame, at the end: opening cuts it off. Bytes after the last good frame count as torn
//! only when they cannot be a complete frame (see [`is_torn_tail`]: a length damaged
//! upwards is recognised by the payload checksum holding earlier); anything else — a
//! complete frame failing its CRC, last or not, or foreign bytes — is damage, which
//! opening refuses rather than dropping acknowledged data.

use super::{LogPosition, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 4] = *b"NWL1";
pub const HEADER: usize = 12;
/// Largest payload accepted when reading (a guard against garbage lengths).
const MAX_FRAME: usize = 1 << 30;

pub struct LogFile {
    path: PathBuf,
    file: File,
    end: LogPosition,
}

/// Outcome of scanning a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// End of the last good frame.
    pub valid_end: LogPosition,
    /// Bytes after it (a torn last frame).
    pub torn_bytes: u64,
}

/// Whether the bytes after the last good frame can be an unfinished last write: fewer
/// than a header, a header whose frame reaches past the end of the file (unless its
/// payload is complete earlier, see [`ends_early`]), or zeros (space the file system
/// allocated but never wrote). `head` holds the first bytes (up to a header), `rest` how
/// many there are, `zeros` tells whether all are zero, `ends_early` whether the payload
/// checksum of the header holds at an earlier end.
pub fn is_torn_tail(
    head: &[u8],
    rest: u64,
    zeros: impl FnOnce() -> bool,
    ends_early: impl FnOnce(u32) -> bool,
) -> bool {
    if rest < HEADER as u64 {
        return true;
    }
    if head[..4] == MAGIC {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
        let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        // A frame that fits is complete: failing its CRC, it is damage, not a torn write.
        // One that does not fit is torn, unless its length is what is wrong.
        return HEADER as u64 + len > rest && len as usize <= MAX_FRAME && !ends_early(crc);
    }
    zeros()
}

/// Whether `after_header` (the bytes after a frame header that claims more than the file
/// holds) holds a complete payload ending earlier: where a frame begins, or at the end
/// of the file, with the header's checksum. Only the payload is checksummed, not the
/// header, so a length damaged upwards would otherwise pass for an unfinished write and
/// be cut off with every acknowledged commit after it; an unfinished write matches by
/// chance once in 2^32.
pub fn ends_early(after_header: &[u8], crc: u32) -> bool {
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0;
    let ends = memchr::memmem::find_iter(after_header, &MAGIC).chain([after_header.len()]);
    for end in ends {
        hasher.update(&after_header[done..end]);
        done = end;
        if hasher.clone().finalize() == crc {
            return true;
        }
    }
    false
}

/// The payload length of the good frame at the start of `bytes`, if there is one.
pub fn frame_at(bytes: &[u8]) -> Option<usize> {
    let header = bytes.first_chunk::<HEADER>()?;
    if header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (len <= MAX_FRAME && crc32fast::hash(payload) == crc).then_some(len)
}

impl LogFile {
    /// Opens for appending, creating the file if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        Self::with_file(path, file)
    }

    /// Opens an existing log for reading only.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        Self::with_file(path, file)
    }

    fn with_file(path: &Path, file: File) -> Result<Self, StoreError> {
        let end = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            end,
        })
    }

    pub fn end(&self) -> LogPosition {
        self.end
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: std::io::Error) -> StoreError {
        StoreError::io(&self.path, e)
    }

    /// The error for damage at `at`.
    pub fn damaged(&self, at: LogPosition, what: String) -> StoreError {
        StoreError::Damaged {
            path: self.path.display().to_string(),
            dir: self
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .display()
                .to_string(),
            at,
            what,
        }
    }

    /// Visits each good frame's payload from `from` on, with the frame's position;
    /// stops at the first bad frame, which must be a torn tail (else: damage).
    pub fn scan(
        &self,
        from: LogPosition,
        visit: &mut dyn FnMut(LogPosition, &[u8]),
    ) -> Result<ScanEnd, StoreError> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(from)).map_err(|e| self.io(e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut at = from;
        let mut payload = Vec::new();
        while let Some(len) = read_frame(&mut r, &mut payload).map_err(|e| self.io(e))? {
            visit(at, &payload);
            at += (HEADER + len) as u64;
        }
        let torn_bytes = self.end.saturating_sub(at);
        if torn_bytes > 0 && !self.is_torn_tail(at)? {
            return Err(self.damaged(
                at,
                format!(
                    "{torn_bytes} bytes from there to the end are not an unfinished last write (a complete frame failing its checksum, or foreign bytes)"
                ),
            ));
        }
        Ok(ScanEnd {
            valid_end: at,
            torn_bytes,
        })
    }

    /// [`is_torn_tail`] of the bytes from `at` to the end.
    fn is_torn_tail(&self, at: LogPosition) -> Result<bool, StoreError> {
        let rest = self.end - at;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(at)).map_err(|e| self.io(e))?;
        let mut header = [0u8; HEADER];
        let n = rest.min(HEADER as u64) as usize;
        f.read_exact(&mut header[..n]).map_err(|e| self.io(e))?;
        let head = &header[..n];
        let mut error = None;
        let mut rest_error = None;
        let early = |crc: u32| {
            // Rare (only after a crash, or damage): the bytes a frame can span are read.
            let span = rest.min((HEADER + MAX_FRAME) as u64) as usize - HEADER;
            let mut after = vec![0u8; span];
            let read = (&self.file)
                .seek(SeekFrom::Start(at + HEADER as u64))
                .and_then(|_| (&self.file).read_exact(&mut after));
            match read {
                Ok(()) => ends_early(&after, crc),
                Err(e) => {
                    rest_error = Some(e);
                    false
                }
            }
        };
        let torn = is_torn_tail(
            head,
            rest,
            || {
                let mut zeros = header.iter().all(|&b| b == 0);
                let mut buf = vec![0u8; 1 << 16];
                while zeros {
                    match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => zeros = buf[..n].iter().all(|&b| b == 0),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                zeros
            },
            early,
        );
        match error.or(rest_error) {
            Some(e) => Err(self.io(e)),
            None => Ok(torn),
        }
    }

    /// Cuts the file back to `at` (after a torn last frame).
    pub fn truncate(&mut self, at: LogPosition) -> Result<(), StoreError> {
        self.file.set_len(at).map_err(|e| self.io(e))?;
        self.file.sync_all().map_err(|e| self.io(e))?;
        self.end = at;
        Ok(())
    }

    /// Cuts off whatever a failed [`Self::append`] may have left after the last
    /// acknowledged frame (its own cleanup can fail too, on a failing disk).
    pub fn cut_to_last_commit(&mut self) -> Result<(), StoreError> {
        self.truncate(self.end)
    }

    /// Appends one frame made of `parts` (written as they are, no copy into one buffer)
    /// and waits until it is on disk.
    pub fn append(&mut self, parts: &[&[u8]]) -> Result<LogPosition, StoreError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(total).map_err(|_| StoreError::Corrupt {
            path: self.path.display().to_string(),
            what: "commit larger than 4 GiB".into(),
        })?;
        let mut crc = crc32fast::Hasher::new();
        for p in parts {
            crc.update(p);
        }
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&len.to_le_bytes());
        header[8..].copy_from_slice(&crc.finalize().to_le_bytes());
        let mut written = self.file.write_all(&header);
        for p in parts {
            written = written.and_then(|()| self.file.write_all(p));
        }
        if let Err(e) = written.and_then(|()| self.file.sync_data()) {
            // Leave no half frame behind for the next append to follow.
            let _ = self.file.set_len(self.end);
            return Err(self.io(e));
        }
        self.end += (HEADER + total) as u64;
        Ok(self.end)
    }
}

/// Reads one frame; `Ok(None)` at a clean end or at a torn / damaged frame.
fn read_frame(r: &mut impl Read, payload: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    let mut header = [0u8; HEADER];
    if !read_full(r, &mut header)? || header[..4] != MAGIC {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if len > MAX_FRAME {
        return Ok(None);
    }
    payload.resize(len, 0);
    if !read_full(r, payload)? || crc32fast::hash(payload) != crc {
        return Ok(None);
    }
    Ok(Some(len))
}

/// Fills `buf`; false when the input ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(log: &LogFile) -> (Vec<Vec<u8>>, ScanEnd) {
        let mut v = Vec::new();
        let end = log.scan(0, &mut |_, p| v.push(p.to_vec())).expect("scan");
        (v, end)
    }

    #[test]
    fn append_scan_and_cut_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = LogFile::open(&path).expect("open");
        log.append(&[b"one"]).expect("append");
        let end = log.append(&[b"t", b"wo"]).expect("append");
        drop(log);
        // A torn third frame: header and part of the payload.
        let mut f = OpenOptions::new().append(true).open(&path).expect("reopen");
        f.write_all(b"NWL1\x10\0\0\0\0\0\0\0abc").expect("write");
        drop(f);
        let mut log = LogFile::open(&path).expect("open");
        let (v, scan) = frames(&log);
        assert_eq!(v, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(scan.valid_end, end);
        assert_eq!(scan.torn_bytes, 15);
        log.truncate(scan.valid_end).expect("truncate");
        log.append(&[b"three"]).expect("append");
        let (v, scan) = frames(&log);
        assert_eq!(v.len(), 3);
        assert_eq!(scan.torn_bytes, 0);
    }

    #[test]
    fn a_torn_frame_holding_a_valid_frame_is_still_torn() {
        // A rejected line can contain bytes that look like a whole frame; torn in the
        // middle of its commit, it must be cut off, not taken for damage.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = LogFile::open(&path).expect("open");
        let end = log.append(&[b"first"]).expect("append");
        let mut inner = Vec::new();
        inner.extend_from_slice(&MAGIC);
        inner.extend_from_slice(&3u32.to_le_bytes());
        inner.extend_from_slice(&crc32fast::hash(b"abc").to_le_bytes());
        inner.extend_from_slice(b"abc");
        let mut outer = Vec::new();
        outer.extend_from_slice(&MAGIC);
        outer.extend_from_slice(&100u32.to_le_bytes());
        outer.extend_from_slice(&0u32.to_le_bytes());
        outer.extend_from_slice(b"raw line: ");
        outer.extend_from_slice(&inner);
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).expect("reopen");
        f.write_all(&outer).expect("write");
        drop(f);
        let log = LogFile::open(&path).expect("open");
        let (_, scan) = frames(&log);
        assert_eq!(scan.valid_end, end);
        // Zeros after the last frame (allocated, never written) are torn too.
        let f = OpenOptions::new().write(true).open(&path).expect("reopen");
        f.set_len(end).expect("cut");
        f.set_len(end + 4096).expect("extend");
        drop(f);
        let log = LogFile::open(&path).expect("open");
        assert_eq!(frames(&log).1.torn_bytes, 4096);
    }

    #[test]
    fn a_length_damaged_upwards_is_damage_not_a_torn_tail() {
        // Three commits; a bit of one frame's length flipped so that it claims more than
        // the file holds. Its payload is whole: cutting there would drop acknowledged
        // commits (the middle frame's case) or the last one.
        for frame in [1usize, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("events.log");
            let mut log = LogFile::open(&path).expect("open");
            let mut starts = vec![0u64];
            for p in [&b"first commit"[..], b"second commit", b"third commit"] {
                starts.push(log.append(&[p]).expect("append"));
            }
            drop(log);
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[starts[frame] as usize + 6] ^= 0x01; // + 65,536 bytes of length
            std::fs::write(&path, &bytes).expect("write");
            let log = LogFile::open(&path).expect("open");
            let e = log
                .scan(0, &mut |_, _| {})
                .expect_err("damage, not a torn tail");
            assert!(
                matches!(e, StoreError::Damaged { at, .. } if at == starts[frame]),
                "{e}"
            );
            let survey = super::super::verify::survey(&bytes);
            assert_eq!(survey.torn_tail, None, "frame {frame}");
            assert_eq!(survey.damage.len(), 1, "frame {frame}");
        }
        // Cut inside the payload of the last frame: still an unfinished write.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = LogFile::open(&path).expect("open");
        let end = log.append(&[b"first commit"]).expect("append");
        let full = log.append(&[b"second commit, longer"]).expect("append");
        drop(log);
        let f = OpenOptions::new().write(true).open(&path).expect("reopen");
        f.set_len(full - 5).expect("cut");
        drop(f);
        let log = LogFile::open(&path).expect("open");
        let scan = log.scan(0, &mut |_, _| {}).expect("torn");
        assert_eq!((scan.valid_end, scan.torn_bytes), (end, full - 5 - end));
    }

    #[test]
    fn damage_before_good_frames_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = LogFile::open(&path).expect("open");
        log.append(&[b"first frame"]).expect("append");
        log.append(&[b"second frame"]).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER + 2] ^= 0xff; // flip a payload byte of the first frame
        std::fs::write(&path, &bytes).expect("write");
        let log = LogFile::open(&path).expect("open");
        assert!(matches!(
            log.scan(0, &mut |_, _| {}),
            Err(StoreError::Damaged { at: 0, .. })
        ));
    }

    #[test]
    fn a_complete_last_frame_failing_its_crc_is_damage_not_torn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = LogFile::open(&path).expect("open");
        let first = log.append(&[b"first frame"]).expect("append");
        log.append(&[b"second frame"]).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01; // inside the last, acknowledged commit
        std::fs::write(&path, &bytes).expect("write");
        let log = LogFile::open(&path).expect("open");
        match log.scan(0, &mut |_, _| {}) {
            Err(StoreError::Damaged { at, what, .. }) => {
                assert_eq!(at, first);
                assert!(what.contains("checksum"), "{what}");
            }
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn foreign_bytes_after_the_last_frame_are_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = LogFile::open(&path).expect("open");
        let end = log.append(&[b"only frame"]).expect("append");
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).expect("reopen");
        f.write_all(b"0123456789abcdef").expect("write");
        drop(f);
        let log = LogFile::open(&path).expect("open");
        assert!(matches!(
            log.scan(0, &mut |_, _| {}),
            Err(StoreError::Damaged { at, .. }) if at == end
        ));
        // Fewer bytes than a header cannot be a frame: torn.
        let f = OpenOptions::new().write(true).open(&path).expect("reopen");
        f.set_len(end + 11).expect("cut");
        drop(f);
        let log = LogFile::open(&path).expect("open");
        assert_eq!(log.scan(0, &mut |_, _| {}).expect("scan").torn_bytes, 11);
    }
}
