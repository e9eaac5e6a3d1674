//! What one parse worker does per line, on one thread: `cargo run --release -p
//! netwait-ingest --example encode_speed -- FILE` cuts FILE into the import's chunks and
//! validates, pseudonymises, encodes and hashes dedupe keys of every line (no I/O timed;
//! best of 3 passes).

use netwait_aggregator::domain::dedupe::KeyHasher;
use netwait_aggregator::domain::line_scan::scan_lines;
use netwait_aggregator::domain::privacy::Pseudonymizer;
use netwait_aggregator::engine::EncodedChunk;
use netwait_ingest::lines::ChunkReader;
use netwait_ingest::parse::encode_chunk_into;
use netwait_ingest::source::FILE_CHUNK_BYTES;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: encode_speed FILE")?;
    let bytes = std::fs::read(path)?;
    let mut reader = ChunkReader::new(bytes.as_slice(), FILE_CHUNK_BYTES);
    let mut chunks = Vec::new();
    while let Some(c) = reader.next_chunk()? {
        chunks.push(c);
    }
    let lines = chunks
        .iter()
        .map(|c| scan_lines(&c.bytes).count())
        .sum::<usize>() as u64;
    let pseudo = Pseudonymizer::new([0; 32]);
    let hasher = KeyHasher::new([0; 16]);
    let mut best = f64::MAX;
    let mut encoded = 0;
    let mut out = EncodedChunk::default();
    for _ in 0..3 {
        let t = Instant::now();
        encoded = 0;
        // One reused output chunk, as a worker's (its buffers come back through spares).
        for c in &chunks {
            out.clear();
            encode_chunk_into(&mut out, &c.bytes, "bench", &pseudo, &hasher);
            encoded += out.bytes.len();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{lines} lines, {encoded} bytes encoded, {:.1} ns/line, {:.0} MB/s",
        best * 1e9 / lines as f64,
        bytes.len() as f64 / best / 1e6
    );
    Ok(())
}
