//! An append-only file of checksummed frames, one frame per commit.
//!
//! Frame: magic `NWL1`, payload length (u32 LE), CRC-32 of the payload (u32 LE), payload.
//! A commit is acknowledged only after `fdatasync`, so a crash can leave at most one torn
//! frame, at the end: opening cuts it off. A bad frame followed by good ones is not a
//! torn write but damage, and opening refuses it rather than dropping acknowledged data.

use super::{LogPosition, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"NWL1";
const HEADER: usize = 12;
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

impl LogFile {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
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

    fn io(&self, e: std::io::Error) -> StoreError {
        StoreError::io(&self.path, e)
    }

    /// Visits each good frame's payload from `from` on; stops at the first bad frame.
    pub fn scan(
        &self,
        from: LogPosition,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<ScanEnd, StoreError> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(from)).map_err(|e| self.io(e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut at = from;
        let mut payload = Vec::new();
        while let Some(len) = read_frame(&mut r, &mut payload).map_err(|e| self.io(e))? {
            at += (HEADER + len) as u64;
            visit(&payload);
        }
        let torn_bytes = self.end.saturating_sub(at);
        if torn_bytes > 0 && self.has_good_frame_after(at)? {
            return Err(StoreError::Corrupt {
                path: self.path.display().to_string(),
                what: format!("damaged frame at byte {at} followed by valid frames"),
            });
        }
        Ok(ScanEnd {
            valid_end: at,
            torn_bytes,
        })
    }

    /// Looks for a frame that checks out anywhere after `at` (damage, not a torn tail).
    fn has_good_frame_after(&self, at: LogPosition) -> Result<bool, StoreError> {
        let mut rest = Vec::new();
        let mut f = &self.file;
        f.seek(SeekFrom::Start(at + 1)).map_err(|e| self.io(e))?;
        f.read_to_end(&mut rest).map_err(|e| self.io(e))?;
        let mut payload = Vec::new();
        for i in 0..rest.len().saturating_sub(HEADER) {
            if rest[i..].starts_with(&MAGIC) {
                let mut slice = &rest[i..];
                if let Ok(Some(_)) = read_frame(&mut slice, &mut payload) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Cuts the file back to `at` (after a torn last frame).
    pub fn truncate(&mut self, at: LogPosition) -> Result<(), StoreError> {
        self.file.set_len(at).map_err(|e| self.io(e))?;
        self.file.sync_all().map_err(|e| self.io(e))?;
        self.end = at;
        Ok(())
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
        let end = log.scan(0, &mut |p| v.push(p.to_vec())).expect("scan");
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
            log.scan(0, &mut |_| {}),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
