//! An append-only file of checksummed frames, one frame per commit.
//!
//! Frame (version 2, every commit written now): magic `NWL2`, payload length (u32 LE),
//! CRC-32 of the payload (u32 LE), tag (u64 LE), CRC-32 of the 20 header bytes before it
//! (u32 LE), payload. The tag is SipHash-2-4, keyed with the store's log key (derived from
//! its secret, see [`super::secrets::Secrets::log_key`]), of the frame's position, length
//! and payload CRC: only this store's writer can make a header that holds at a position.
//! So a damaged length is damage, never an unfinished write, and bytes inside a payload (a
//! rejected line is stored as it came, frames included) never pass for a commit.
//!
//! Version 1 frames (`NWL1`, length, payload CRC, payload: no header checksum, no tag),
//! written before, are still read where they stand.
//!
//! A commit is acknowledged only after `fdatasync`, so a crash can leave at most one torn
//! frame, at the end: opening cuts it off. Bytes after the last good frame count as torn
//! only when they cannot be a complete frame (see [`tail_verdict`]); anything else — a
//! complete frame failing its CRC, last or not, a header failing its checksum or tag, or
//! foreign bytes — is damage, which opening refuses rather than dropping acknowledged data.

use super::{LogPosition, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Magic of the frames written now (version 2).
pub const MAGIC: [u8; 4] = *b"NWL2";
/// Header of a version 2 frame: magic, length, payload CRC, tag, header CRC.
pub const HEADER: usize = 24;
/// Magic of the frames of version 1 (read, never written).
pub const MAGIC_V1: [u8; 4] = *b"NWL1";
/// Header of a version 1 frame: magic, length, payload CRC.
pub const HEADER_V1: usize = 12;
/// Largest payload accepted when reading (a guard against garbage lengths).
const MAX_FRAME: usize = 1 << 30;

/// The key of a store's frame tags.
pub type LogKey = [u8; 16];

/// The tag of a version 2 frame at `at` of `len` payload bytes whose CRC is `crc`.
pub fn tag(key: &LogKey, at: LogPosition, len: u32, crc: u32) -> u64 {
    let mut message = [0u8; 16];
    message[..8].copy_from_slice(&at.to_le_bytes());
    message[8..12].copy_from_slice(&len.to_le_bytes());
    message[12..].copy_from_slice(&crc.to_le_bytes());
    siphasher::sip::SipHasher24::new_with_key(key).hash(&message)
}

/// The header of a version 2 frame at `at`.
pub fn encode_header(key: &LogKey, at: LogPosition, len: u32, crc: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h[12..20].copy_from_slice(&tag(key, at, len, crc).to_le_bytes());
    let check = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&check.to_le_bytes());
    h
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Length and payload CRC of a version 2 header at `at` whose tag holds, whatever its
/// magic and header checksum say (the tag alone proves that the writer put these there).
pub fn tag_holds(bytes: &[u8], at: LogPosition, key: &LogKey) -> Option<(usize, u32)> {
    let h = bytes.first_chunk::<HEADER>()?;
    let (len, crc) = (u32_at(h, 4), u32_at(h, 8));
    let t = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    (tag(key, at, len, crc) == t).then_some((len as usize, crc))
}

/// A frame header, as read at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Version 2, its checksum and tag holding: written by this store's writer, there.
    Tagged { len: usize, crc: u32 },
    /// Version 1: nothing tells where it was written, or by whom.
    Untagged { len: usize, crc: u32 },
    /// A complete version 2 header failing its checksum or its tag.
    Bad,
    /// Fewer bytes than a header, all of them what a header starts with.
    Short,
    /// No magic.
    Foreign,
}

impl Header {
    /// The header at the start of `bytes`, which are at `at` in the log.
    pub fn read(bytes: &[u8], at: LogPosition, key: &LogKey) -> Self {
        let n = bytes.len().min(4);
        if bytes[..n] == MAGIC[..n] {
            let Some(h) = bytes.first_chunk::<HEADER>() else {
                return Self::Short;
            };
            if crc32fast::hash(&h[..20]) != u32_at(h, 20) {
                return Self::Bad;
            }
            return match tag_holds(h, at, key) {
                Some((len, crc)) => Self::Tagged { len, crc },
                None => Self::Bad,
            };
        }
        if bytes[..n] == MAGIC_V1[..n] {
            let Some(h) = bytes.first_chunk::<HEADER_V1>() else {
                return Self::Short;
            };
            return Self::Untagged {
                len: u32_at(h, 4) as usize,
                crc: u32_at(h, 8),
            };
        }
        Self::Foreign
    }
}

/// A good frame: its header checks out and its payload matches its CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Header bytes ([`HEADER`] or [`HEADER_V1`]).
    pub header: usize,
    pub len: usize,
    pub crc: u32,
    /// Version 2: its tag holds.
    pub tagged: bool,
}

impl Frame {
    /// Header and payload.
    pub fn bytes(&self) -> usize {
        self.header + self.len
    }
}

/// The good frame at the start of `bytes` (which are at `at` in the log), if there is one.
pub fn frame_at(bytes: &[u8], at: LogPosition, key: &LogKey) -> Option<Frame> {
    let (header, len, crc, tagged) = match Header::read(bytes, at, key) {
        Header::Tagged { len, crc } => (HEADER, len, crc, true),
        Header::Untagged { len, crc } => (HEADER_V1, len, crc, false),
        _ => return None,
    };
    if len > MAX_FRAME {
        return None;
    }
    let payload = bytes.get(header..header.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some(Frame {
        header,
        len,
        crc,
        tagged,
    })
}

/// What the bytes after the last good frame are, as far as their first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailVerdict {
    /// An unfinished last write: fewer bytes than a header, or a header that checks out
    /// (a tagged one: the writer's) whose payload runs past the end of the file.
    Torn,
    /// A complete frame failing its checksum, a header failing its checksum or its tag.
    Damage,
    /// Torn if every byte is zero (space the file system allocated but never wrote),
    /// else foreign bytes: damage.
    TornIfZeros,
    /// A version 1 header whose payload runs past the end, in a log where no tagged frame
    /// came before it (one written before tags, which a crash of that version could leave
    /// torn): torn unless a header whose tag holds lies after it (then the log went on
    /// past it and its length is damaged).
    TornUnlessTaggedAfter,
}

/// Whether the bytes after the last good frame, at `at`, can be an unfinished last
/// write. `head` holds their first bytes (up to a [`HEADER`]), `rest` how many there are;
/// `legacy` says that no tagged frame came before them. Only the header is looked at,
/// never payload bytes, which may hold anything.
///
/// A version 2 header is trusted only when its checksum and tag hold: a flipped length
/// bit then makes it damage, not a frame that seems to run past the end. A version 1
/// header after a tagged frame cannot be a torn write (a writer that tags never writes
/// version 1 again): damage.
pub fn tail_verdict(
    head: &[u8],
    at: LogPosition,
    rest: u64,
    key: &LogKey,
    legacy: bool,
) -> TailVerdict {
    if rest < HEADER_V1 as u64 {
        return TailVerdict::Torn;
    }
    match Header::read(head, at, key) {
        Header::Short => TailVerdict::Torn,
        Header::Tagged { len, .. } if HEADER as u64 + len as u64 > rest => TailVerdict::Torn,
        Header::Tagged { .. } | Header::Bad => TailVerdict::Damage,
        Header::Untagged { len, .. } if legacy && HEADER_V1 as u64 + len as u64 > rest => {
            TailVerdict::TornUnlessTaggedAfter
        }
        Header::Untagged { .. } => TailVerdict::Damage,
        Header::Foreign => TailVerdict::TornIfZeros,
    }
}

/// Positions of the headers in `bytes` (which start at `base` in the log) whose tag
/// holds, in order; `bytes` should run [`HEADER`] − 1 bytes past the last position
/// wanted.
pub fn tagged_headers<'a>(
    bytes: &'a [u8],
    base: LogPosition,
    key: &'a LogKey,
) -> impl Iterator<Item = usize> + 'a {
    memchr::memmem::find_iter(bytes, &MAGIC)
        .filter(move |&i| tag_holds(&bytes[i..], base + i as u64, key).is_some())
}

pub struct LogFile {
    path: PathBuf,
    file: File,
    end: LogPosition,
    key: LogKey,
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
    /// Opens for appending, creating the file if needed; `key` tags the frames.
    pub fn open(path: &Path, key: LogKey) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        Self::with_file(path, file, key)
    }

    /// Opens an existing log for reading only.
    pub fn open_read_only(path: &Path, key: LogKey) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        Self::with_file(path, file, key)
    }

    fn with_file(path: &Path, file: File, key: LogKey) -> Result<Self, StoreError> {
        let end = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            end,
            key,
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
        let mut tagged_seen = false;
        while let Some(frame) =
            read_frame(&mut r, at, &self.key, &mut payload).map_err(|e| self.io(e))?
        {
            visit(at, &payload);
            tagged_seen |= frame.tagged;
            at += frame.bytes() as u64;
        }
        let torn_bytes = self.end.saturating_sub(at);
        if torn_bytes > 0 && !self.is_torn_tail(at, !tagged_seen)? {
            return Err(self.damaged(
                at,
                format!(
                    "{torn_bytes} bytes from there to the end are not an unfinished last write (a complete frame failing its checksum, a frame header failing its checksum, or foreign bytes)"
                ),
            ));
        }
        Ok(ScanEnd {
            valid_end: at,
            torn_bytes,
        })
    }

    /// [`tail_verdict`] of the bytes from `at` to the end, resolved.
    fn is_torn_tail(&self, at: LogPosition, legacy: bool) -> Result<bool, StoreError> {
        let rest = self.end - at;
        let mut header = [0u8; HEADER];
        let n = rest.min(HEADER as u64) as usize;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(at)).map_err(|e| self.io(e))?;
        f.read_exact(&mut header[..n]).map_err(|e| self.io(e))?;
        match tail_verdict(&header[..n], at, rest, &self.key, legacy) {
            TailVerdict::Torn => Ok(true),
            TailVerdict::Damage => Ok(false),
            TailVerdict::TornIfZeros => self.all_zeros(at).map_err(|e| self.io(e)),
            TailVerdict::TornUnlessTaggedAfter => self
                .tagged_header_after(at)
                .map(|found| !found)
                .map_err(|e| self.io(e)),
        }
    }

    /// Whether every byte from `at` to the end is zero.
    fn all_zeros(&self, at: LogPosition) -> std::io::Result<bool> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(at))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a header whose tag holds starts after `at` (read in blocks that overlap by
    /// a header, so that none is missed at a block's edge). Only asked of a version 1
    /// tail, once, when a writer opens after a crash.
    fn tagged_header_after(&self, at: LogPosition) -> std::io::Result<bool> {
        const BLOCK: usize = 1 << 20;
        let mut f = &self.file;
        let mut base = at + 1;
        let mut buf = vec![0u8; BLOCK + HEADER];
        while base < self.end {
            f.seek(SeekFrom::Start(base))?;
            let want = usize::try_from(self.end - base).map_or(buf.len(), |r| r.min(buf.len()));
            f.read_exact(&mut buf[..want])?;
            if tagged_headers(&buf[..want], base, &self.key)
                .next()
                .is_some()
            {
                return Ok(true);
            }
            base += BLOCK as u64;
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
        let header = encode_header(&self.key, self.end, len, crc.finalize());
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

/// Reads the frame at `at`; `Ok(None)` at a clean end or at a torn / damaged frame.
fn read_frame(
    r: &mut impl Read,
    at: LogPosition,
    key: &LogKey,
    payload: &mut Vec<u8>,
) -> std::io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER];
    if !read_full(r, &mut header[..4])? {
        return Ok(None);
    }
    let size = match header[..4].try_into() {
        Ok(MAGIC) => HEADER,
        Ok(MAGIC_V1) => HEADER_V1,
        _ => return Ok(None),
    };
    if !read_full(r, &mut header[4..size])? {
        return Ok(None);
    }
    let (len, crc, tagged) = match Header::read(&header[..size], at, key) {
        Header::Tagged { len, crc } => (len, crc, true),
        Header::Untagged { len, crc } => (len, crc, false),
        _ => return Ok(None),
    };
    if len > MAX_FRAME {
        return Ok(None);
    }
    payload.resize(len, 0);
    if !read_full(r, payload)? || crc32fast::hash(payload) != crc {
        return Ok(None);
    }
    Ok(Some(Frame {
        header: size,
        len,
        crc,
        tagged,
    }))
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

    const KEY: LogKey = [7; 16];

    fn frames(log: &LogFile) -> (Vec<Vec<u8>>, ScanEnd) {
        let mut v = Vec::new();
        let end = log.scan(0, &mut |_, p| v.push(p.to_vec())).expect("scan");
        (v, end)
    }

    fn open(path: &Path) -> LogFile {
        LogFile::open(path, KEY).expect("open")
    }

    fn add(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).expect("reopen");
        f.write_all(bytes).expect("write");
    }

    /// A frame of version 1, as written before tags.
    fn v1_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = MAGIC_V1.to_vec();
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A version 2 frame as the writer would put it at `at`.
    fn v2_frame(at: LogPosition, payload: &[u8]) -> Vec<u8> {
        let crc = crc32fast::hash(payload);
        let mut f = encode_header(&KEY, at, payload.len() as u32, crc).to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn damage_at(log: &LogFile) -> Option<LogPosition> {
        match log.scan(0, &mut |_, _| {}) {
            Err(StoreError::Damaged { at, .. }) => Some(at),
            Ok(_) => None,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn append_scan_and_cut_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = open(&path);
        log.append(&[b"one"]).expect("append");
        let end = log.append(&[b"t", b"wo"]).expect("append");
        drop(log);
        // A torn third frame: its header and part of the payload.
        let whole = v2_frame(end, &[b'x'; 16]);
        for cut in [3, 11, 12, 20, HEADER, HEADER + 3, whole.len() - 1] {
            let f = OpenOptions::new().write(true).open(&path).expect("reopen");
            f.set_len(end).expect("cut");
            add(&path, &whole[..cut]);
            let (v, scan) = frames(&open(&path));
            assert_eq!(v, vec![b"one".to_vec(), b"two".to_vec()], "cut at {cut}");
            assert_eq!(scan.valid_end, end);
            assert_eq!(scan.torn_bytes, cut as u64);
        }
        let mut log = open(&path);
        log.truncate(end).expect("truncate");
        log.append(&[b"three"]).expect("append");
        let (v, scan) = frames(&log);
        assert_eq!(v.len(), 3);
        assert_eq!(scan.torn_bytes, 0);
    }

    #[test]
    fn a_flipped_length_bit_is_damage_not_a_torn_tail() {
        // Three commits; bit 0 of byte 2 of a frame's length makes it reach past the end
        // of the file, which looked like an unfinished write: it must be damage.
        for victim in [1, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("events.log");
            let mut log = open(&path);
            let ends: Vec<LogPosition> = [&b"first commit"[..], b"second commit", b"third"]
                .iter()
                .map(|p| log.append(&[p]).expect("append"))
                .collect();
            drop(log);
            let at = ends[victim - 1];
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[at as usize + 4 + 2] ^= 0x01;
            std::fs::write(&path, &bytes).expect("write");
            let log = open(&path);
            assert_eq!(damage_at(&log), Some(at), "frame {victim}");
        }
    }

    #[test]
    fn a_header_failing_its_tag_is_damage() {
        // A well-formed header made with another key, or for another position.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let end = open(&path).append(&[b"first"]).expect("append");
        add(&path, &v2_frame(end + 1, b"moved")[..HEADER + 2]);
        assert_eq!(damage_at(&open(&path)), Some(end));
        let log = LogFile::open(&path, [8; 16]).expect("open");
        assert_eq!(damage_at(&log), Some(0), "another store's key");
    }

    #[test]
    fn a_torn_frame_holding_a_valid_frame_is_still_torn() {
        // A rejected line can contain bytes that look like a whole frame; torn in the
        // middle of its commit, it must be cut off, not taken for damage.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = open(&path);
        let end = log.append(&[b"first"]).expect("append");
        drop(log);
        let mut payload = b"raw line: ".to_vec();
        payload.extend_from_slice(&v1_frame(b"abc"));
        payload.extend_from_slice(&v2_frame(end + HEADER as u64 + 25, b"abc"));
        payload.resize(100, b' ');
        let outer = v2_frame(end, &payload);
        add(&path, &outer[..HEADER + 60]);
        let (v, scan) = frames(&open(&path));
        assert_eq!((v.len(), scan.valid_end), (1, end));
        // Zeros after the last frame (allocated, never written) are torn too.
        let f = OpenOptions::new().write(true).open(&path).expect("reopen");
        f.set_len(end).expect("cut");
        f.set_len(end + 4096).expect("extend");
        drop(f);
        assert_eq!(frames(&open(&path)).1.torn_bytes, 4096);
    }

    #[test]
    fn frames_of_version_1_are_read_and_followed_by_version_2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let old = [v1_frame(b"old one"), v1_frame(b"old two")].concat();
        std::fs::write(&path, &old).expect("write");
        // A torn version 1 frame of a log written before tags is still torn...
        add(&path, &v1_frame(b"torn, never acknowledged")[..20]);
        let (v, scan) = frames(&open(&path));
        assert_eq!((v.len(), scan.valid_end), (2, old.len() as u64));
        // ...unless a tagged frame lies after it: then its length is damaged.
        let mut grown = v1_frame(b"old three");
        grown[6] ^= 0x01;
        let tagged = v2_frame((old.len() + grown.len()) as u64, b"new");
        std::fs::write(&path, [old.clone(), grown.clone(), tagged].concat()).expect("write");
        assert_eq!(damage_at(&open(&path)), Some(old.len() as u64));
        // A writer of tags appends version 2 after version 1.
        std::fs::write(&path, &old).expect("write");
        let mut log = open(&path);
        let end = log.append(&[b"new"]).expect("append");
        let (v, scan) = frames(&log);
        assert_eq!(
            v,
            vec![b"old one".to_vec(), b"old two".to_vec(), b"new".to_vec()]
        );
        assert_eq!(scan.valid_end, end);
        // After a tagged frame, a version 1 header reaching past the end is damage.
        drop(log);
        add(&path, &grown);
        assert_eq!(damage_at(&open(&path)), Some(end));
    }

    #[test]
    fn damage_before_good_frames_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = open(&path);
        log.append(&[b"first frame"]).expect("append");
        log.append(&[b"second frame"]).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER + 2] ^= 0xff; // flip a payload byte of the first frame
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(damage_at(&open(&path)), Some(0));
    }

    #[test]
    fn a_complete_last_frame_failing_its_crc_is_damage_not_torn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.log");
        let mut log = open(&path);
        let first = log.append(&[b"first frame"]).expect("append");
        log.append(&[b"second frame"]).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01; // inside the last, acknowledged commit
        std::fs::write(&path, &bytes).expect("write");
        match open(&path).scan(0, &mut |_, _| {}) {
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
        let end = open(&path).append(&[b"only frame"]).expect("append");
        add(&path, b"0123456789abcdef");
        assert_eq!(damage_at(&open(&path)), Some(end));
        // Fewer bytes than a header cannot be a frame: torn.
        let f = OpenOptions::new().write(true).open(&path).expect("reopen");
        f.set_len(end + 11).expect("cut");
        drop(f);
        assert_eq!(frames(&open(&path)).1.torn_bytes, 11);
    }
}
