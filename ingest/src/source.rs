//! Where input comes from. Today: files and stdin. The Kafka consumer and the PBX
//! adapters (Asterisk queue_log) implement the same trait in their own issues: a source
//! hands out chunks of lines with a resumable offset, and learns when a chunk's records
//! are durable, so it can commit its own offset only then (at-least-once in, idempotent
//! by dedupe).

use crate::bom::{SkipBom, UTF8_BOM};
use crate::lines::{Chunk, ChunkBytes, ChunkReader};
use memmap2::Mmap;
use std::fs::File;
use std::io::Read;
use std::sync::Arc;

pub trait Source: Send {
    /// Name kept with dead letters (file path, topic, ...).
    fn name(&self) -> &str;

    /// Next chunk of whole lines; `None` when the source is exhausted.
    fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>>;

    /// Gives back the bytes of a chunk once processed, for reuse.
    fn recycle(&mut self, _bytes: Vec<u8>) {}

    /// Total size in bytes when known (for progress display).
    fn size_hint(&self) -> Option<u64> {
        None
    }
}

/// NDJSON from a file or stdin (a leading BOM skipped).
pub struct ReaderSource<R> {
    name: String,
    size: Option<u64>,
    reader: ChunkReader<SkipBom<R>>,
}

/// Chunk size for file input: big enough to amortise the per-chunk work, small enough
/// that the chunks in flight (recycled, see [`Source::recycle`]) stay in the caches.
pub const FILE_CHUNK_BYTES: usize = 1 << 20;

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
        Self {
            name: name.into(),
            size,
            reader: ChunkReader::new(SkipBom::new(input), chunk_bytes),
        }
    }
}

impl<R: Read + Send> Source for ReaderSource<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        self.reader.next_chunk()
    }

    fn recycle(&mut self, bytes: Vec<u8>) {
        self.reader.recycle(bytes);
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
pub struct MappedSource {
    name: String,
    map: Arc<Mmap>,
    at: usize,
    chunk_bytes: usize,
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
        })
    }
}

impl Source for MappedSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let len = self.map.len();
        if self.at >= len {
            return Ok(None);
        }
        let mut end = (self.at + self.chunk_bytes).min(len);
        if end < len {
            end = memchr::memchr(b'\n', &self.map[end..]).map_or(len, |p| end + p + 1);
        }
        // The chunk's bytes are not read here (beyond finding its end): the parse workers
        // are the first and only ones to go through them.
        let chunk = Chunk {
            bytes: ChunkBytes::Mapped(Arc::clone(&self.map), self.at..end),
            end_offset: end as u64,
        };
        self.at = end;
        Ok(Some(chunk))
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
        while let Some(c) = source.next_chunk().expect("chunk") {
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
}
