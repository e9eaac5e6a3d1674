//! Where input comes from. Today: files and stdin. The Kafka consumer and the PBX
//! adapters (Asterisk queue_log) implement the same trait in their own issues: a source
//! hands out chunks of lines with a resumable offset, and learns when a chunk's records
//! are durable, so it can commit its own offset only then (at-least-once in, idempotent
//! by dedupe).

use crate::lines::{Chunk, ChunkReader};
use std::io::Read;

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

/// NDJSON from a file or stdin.
pub struct ReaderSource<R> {
    name: String,
    size: Option<u64>,
    reader: ChunkReader<R>,
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
            reader: ChunkReader::new(input, chunk_bytes),
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
