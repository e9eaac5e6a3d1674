//! Where input comes from: acknowledged, positioned streams (the quickwit model). A
//! source hands out batches of raw bytes in a [`Format`], each with the
//! [`CheckpointDelta`] of the partitions it read (a file: its path and byte range); the
//! driver ([`crate::pipeline`]) decodes them, commits the events with their positions in
//! the same commit, and tells the source ([`Source::on_durable`]) where the store stands
//! once it is durable, so that it can acknowledge upstream only then (at-least-once in,
//! idempotent by dedupe). On start the driver tells it where to resume
//! ([`Source::resume`]). Files (ending) and followed logs or Kafka (never ending) are
//! driven alike.

use crate::bom::{SkipBom, UTF8_BOM};
use crate::format::Format;
use crate::lines::ChunkReader;
use memmap2::Mmap;
pub use netwait_aggregator::store::positions::{
    CheckpointDelta, PartitionId, Position, PositionError, SourceCheckpoint,
};
use std::fs::File;
use std::io::Read;
use std::ops::{Deref, Range};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Why a source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Positions(#[from] PositionError),
    /// Anything else a source's own client reports (a broker, a PBX API).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// What one [`Source::poll`] brings.
#[derive(Debug)]
pub enum Poll {
    Batch(RawBatch),
    /// Whole lines committed before, read again after a restart only for the decoding
    /// rules that look back across rows (queue_log's earliest ENTERQUEUE of a call):
    /// the driver learns from them and makes no events of them (no position moves).
    Context {
        bytes: RawBytes,
        format: Format,
    },
    /// Nothing new for now (a followed file, a quiet topic): poll again.
    Idle,
    /// The source is exhausted (the end of a file); never for a long-running source.
    End,
}

/// Whole records (lines) of input, as read.
#[derive(Debug)]
pub struct RawBatch {
    pub bytes: RawBytes,
    pub format: Format,
    /// The partitions this batch moved (empty for input without positions, e.g. stdin).
    pub delta: CheckpointDelta,
    /// The number of the batch's first line in its partition (1-based), when the
    /// source knows it (a resumed source): dead letters carry their line of the
    /// partition. `None`: lines are counted from the start of this run.
    pub first_line: Option<u64>,
    /// Bytes of the source read up to the end of this batch (for progress).
    pub end_offset: u64,
}

/// A long-running source is polled in a loop: `poll` may wait for input a little (at
/// most some 250 ms) but must then return [`Poll::Idle`], so the driver can keep its
/// commit cadence, pass on acknowledgements and see a stop signal.
pub trait Source: Send {
    /// Name kept with dead letters (a file's path, a topic, ...).
    fn name(&self) -> &str;

    /// Called once by the driver before the first poll, with where the store stands for
    /// every source (a source reads its own partitions, e.g. [`SourceCheckpoint::with_prefix`]).
    fn resume(&mut self, checkpoint: &SourceCheckpoint) -> Result<(), SourceError> {
        let _ = checkpoint;
        Ok(())
    }

    fn poll(&mut self) -> Result<Poll, SourceError>;

    /// The store made durable every batch up to the positions in `checkpoint` (a
    /// source may now commit its offsets upstream). Called on the driver's reading
    /// thread, between polls, and once more at the end.
    fn on_durable(&mut self, checkpoint: &SourceCheckpoint) {
        let _ = checkpoint;
    }

    /// Total size in bytes when known (for progress display).
    fn size_hint(&self) -> Option<u64> {
        None
    }
}

/// The bytes of a batch. Whoever decodes them just drops them when done: a file
/// source's buffers then go back to it for reuse, and the pages of a mapped file are
/// released at once (on the decoding thread) instead of all at the end.
pub struct RawBytes(Held);

enum Held {
    Owned(Vec<u8>, Option<SyncSender<Vec<u8>>>),
    Mapped(Arc<Mmap>, Range<usize>),
}

impl std::fmt::Debug for RawBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBytes({} bytes)", self.len())
    }
}

impl From<Vec<u8>> for RawBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(Held::Owned(v, None))
    }
}

impl Deref for RawBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Held::Owned(v, _) => v,
            Held::Mapped(map, range) => &map[range.clone()],
        }
    }
}

impl Drop for RawBytes {
    fn drop(&mut self) {
        match &mut self.0 {
            Held::Owned(v, Some(back)) => {
                let _ = back.try_send(std::mem::take(v));
            }
            Held::Owned(_, None) => {}
            Held::Mapped(map, range) => {
                #[cfg(unix)]
                // SAFETY: the mapping is shared and read-only (`MappedSource`): dropping
                // page mappings only makes a later access read the page cache again, and
                // the file does not change while it is imported (the documented
                // condition), so whoever still reads a byte here reads the same byte.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        range.start,
                        range.len(),
                    )
                };
            }
        }
    }
}

/// Chunk size for file input: big enough to amortise the per-chunk work, small enough
/// that the chunks in flight (their buffers come back when dropped) stay in the caches.
pub const FILE_CHUNK_BYTES: usize = 1 << 20;

/// Buffers of dropped batches coming back to the reader that filled them.
const RECYCLED: usize = 4;

/// Input from a stream (a file that cannot be mapped, a pipe, stdin; a leading BOM
/// skipped), in whole lines.
pub struct ReaderSource<R> {
    name: String,
    size: Option<u64>,
    reader: ChunkReader<SkipBom<R>>,
    format: Format,
    /// The partition its positions are kept under (none for stdin: it has no identity).
    partition: Option<PartitionId>,
    offset: u64,
    back: SyncSender<Vec<u8>>,
    returned: Receiver<Vec<u8>>,
}

impl<R: Read + Send> ReaderSource<R> {
    pub fn new(name: impl Into<String>, input: R, size: Option<u64>) -> Self {
        Self::with_chunk_bytes(name, input, size, FILE_CHUNK_BYTES)
    }

    pub fn with_chunk_bytes(
        name: impl Into<String>,
        input: R,
        size: Option<u64>,
        chunk_bytes: usize,
    ) -> Self {
        let (back, returned) = sync_channel(RECYCLED);
        Self {
            name: name.into(),
            size,
            reader: ChunkReader::new(SkipBom::new(input), chunk_bytes),
            format: Format::Ndjson,
            partition: None,
            offset: 0,
            back,
            returned,
        }
    }

    /// Keeps the byte positions read under `partition` (a file's absolute path).
    pub fn positioned(mut self, partition: impl Into<PartitionId>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }
}

/// The delta of a file read from `from` to `to` (bytes), under `partition` if any.
fn file_delta(
    partition: Option<&str>,
    from: u64,
    to: u64,
) -> Result<CheckpointDelta, PositionError> {
    match partition {
        Some(p) => CheckpointDelta::single(p, Position::offset(from), Position::offset(to)),
        None => Ok(CheckpointDelta::default()),
    }
}

impl<R: Read + Send> Source for ReaderSource<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        while let Ok(buf) = self.returned.try_recv() {
            self.reader.recycle(buf);
        }
        let Some(chunk) = self.reader.next_chunk()? else {
            return Ok(Poll::End);
        };
        let delta = file_delta(self.partition.as_deref(), self.offset, chunk.end_offset)?;
        self.offset = chunk.end_offset;
        Ok(Poll::Batch(RawBatch {
            bytes: RawBytes(Held::Owned(chunk.bytes, Some(self.back.clone()))),
            format: self.format,
            delta,
            first_line: None,
            end_offset: chunk.end_offset,
        }))
    }

    fn size_hint(&self) -> Option<u64> {
        self.size
    }
}

/// A regular file, memory-mapped: parse workers read the page cache in place instead of
/// a copy of it (the copy cost a fifth of a parse worker's time). Chunks end at line
/// ends; a runaway line stays whole (it is mapped, not held) and is rejected as too long.
/// As with any mapped input, the file must not be modified or truncated while it is
/// imported (appending is fine: the mapping ends where the file ended when opened).
/// A leading BOM is skipped.
///
/// Its positions are the bytes read, under the file's name (its absolute path). A file
/// given to `import` is read whole however far an earlier import of it went: it may
/// have been replaced since, and what is read again is dropped by dedupe.
pub struct MappedSource {
    name: String,
    map: Arc<Mmap>,
    at: usize,
    chunk_bytes: usize,
    format: Format,
}

impl MappedSource {
    /// Maps `file`; fails for what cannot be mapped (pipes, empty files on some systems):
    /// read those with [`ReaderSource`].
    pub fn open(name: impl Into<String>, file: &File) -> std::io::Result<Self> {
        // SAFETY: the mapping is read-only; the documented condition (the file is not
        // modified or truncated during the import) keeps every mapped byte readable and
        // unchanged while it is borrowed.
        let map = unsafe { Mmap::map(file)? };
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        // A leading BOM is not part of the first line.
        let at = if map.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        Ok(Self {
            name: name.into(),
            map: Arc::new(map),
            at,
            chunk_bytes: FILE_CHUNK_BYTES,
            format: Format::Ndjson,
        })
    }

    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }
}

impl Source for MappedSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        let len = self.map.len();
        if self.at >= len {
            return Ok(Poll::End);
        }
        let mut end = (self.at + self.chunk_bytes).min(len);
        if end < len {
            end = memchr::memchr(b'\n', &self.map[end..]).map_or(len, |p| end + p + 1);
        }
        // The chunk's bytes are not read here (beyond finding its end): the parse workers
        // are the first and only ones to go through them.
        let delta = file_delta(Some(&self.name), self.at as u64, end as u64)?;
        let batch = RawBatch {
            bytes: RawBytes(Held::Mapped(Arc::clone(&self.map), self.at..end)),
            format: self.format,
            delta,
            first_line: None,
            end_offset: end as u64,
        };
        self.at = end;
        Ok(Poll::Batch(batch))
    }

    fn size_hint(&self) -> Option<u64> {
        Some(self.map.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::domain::line_scan::scan_lines;
    use std::io::Write;

    fn all_lines(source: &mut dyn Source) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Poll::Batch(c) = source.poll().expect("chunk") {
            let before = out.len() as u64;
            let lines = scan_lines(&c.bytes).zip(before + 1..);
            out.extend(lines.map(|(l, n)| (n, l.bytes().to_vec())));
        }
        out
    }

    #[test]
    fn mapped_and_read_files_give_the_same_numbered_lines() {
        let mut text = Vec::new();
        for i in 0..5_000 {
            text.extend_from_slice(format!("{{\"n\":{i}}}\r\n").as_bytes());
        }
        text.extend_from_slice(&vec![b'x'; 3 << 20]); // a runaway last line, unterminated
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&text).expect("write");
        let file = File::open(f.path()).expect("open");
        let mut mapped = MappedSource::open("f", &file).expect("map");
        mapped.chunk_bytes = 1_000;
        let mut read = ReaderSource::with_chunk_bytes("f", text.as_slice(), None, 1_000);
        let (m, r) = (all_lines(&mut mapped), all_lines(&mut read));
        assert_eq!(m.len(), 5_001);
        assert_eq!(m[..5_000], r[..5_000]);
        assert_eq!(m[4_999], (5_000, b"{\"n\":4999}".to_vec()));
        // The reader keeps only enough of a runaway line to reject it; both are too long.
        assert_eq!((m[5_000].0, r[5_000].0), (5_001, 5_001));
        assert!(m[5_000].1.len() > 65_536 && r[5_000].1.len() > 65_536);
    }

    #[test]
    fn a_leading_bom_is_skipped_mapped_and_read() {
        let text = b"\xEF\xBB\xBF{\"n\":1}\n{\"n\":2}\n";
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text).expect("write");
        let file = File::open(f.path()).expect("open");
        let mut mapped = MappedSource::open("f", &file).expect("map");
        let mut read = ReaderSource::new("f", &text[..], None);
        let want = vec![(1, b"{\"n\":1}".to_vec()), (2, b"{\"n\":2}".to_vec())];
        assert_eq!(all_lines(&mut mapped), want);
        assert_eq!(all_lines(&mut read), want);
    }

    #[test]
    fn file_batches_carry_contiguous_byte_positions_and_buffers_come_back() {
        let text = "{\"n\":1}\n".repeat(100_000);
        let mut read =
            ReaderSource::with_chunk_bytes("f", text.as_bytes(), None, 1_000).positioned("/abs/f");
        let mut cp = SourceCheckpoint::default();
        let mut batches = 0;
        while let Poll::Batch(b) = read.poll().expect("poll") {
            cp.check(&b.delta)
                .expect("each batch starts where the last ended");
            cp.apply(&b.delta);
            batches += 1;
            drop(b); // its buffer goes back to the reader
        }
        assert!(batches > 3);
        assert_eq!(cp.position("/abs/f"), Position::offset(text.len() as u64));
        // Stdin-like input (no partition) moves nothing.
        let mut anon = ReaderSource::new("stdin", text.as_bytes(), None);
        let Poll::Batch(b) = anon.poll().expect("poll") else {
            panic!("a batch")
        };
        assert!(b.delta.is_empty());
    }
}
