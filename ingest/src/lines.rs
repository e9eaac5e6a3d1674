//! Cuts a byte stream into chunks of whole lines, numbering the lines (1-based), so that
//! chunks can be parsed in parallel and their results put back in order.

use std::io::Read;

/// Whole lines from a stream; `first_line` is the number of its first line.
#[derive(Debug, Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub first_line: u64,
    /// Number of lines in `bytes` (a last line without terminator counts).
    pub lines: u64,
    /// Bytes of the stream consumed up to the end of this chunk.
    pub end_offset: u64,
}

impl Chunk {
    /// The lines with their numbers, terminators (`\n`, `\r\n`) stripped.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        split_lines(&self.bytes)
            .zip(self.first_line..)
            .map(|(l, n)| (n, l))
    }
}

/// Splits at `\n`, strips a `\r` before it; a final line without terminator counts.
/// Agrees with `str::lines` (the fast path for chunks that are valid UTF-8).
pub fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', bytes);
    std::iter::from_fn(move || {
        let end = match ends.next() {
            Some(e) => e,
            None if start < bytes.len() => bytes.len(),
            None => return None,
        };
        let line = &bytes[start..end];
        let terminated = end < bytes.len();
        start = end + 1;
        // Like `str::lines`: a `\r` is stripped only as part of a `\r\n` terminator.
        Some(match line.strip_suffix(b"\r") {
            Some(l) if terminated => l,
            _ => line,
        })
    })
}

/// Reads chunks of about `target` bytes, always ending at a line end (or at EOF).
pub struct ChunkReader<R> {
    input: R,
    target: usize,
    carry: Vec<u8>,
    next_line: u64,
    offset: u64,
    eof: bool,
}

impl<R: Read> ChunkReader<R> {
    pub fn new(input: R, target: usize) -> Self {
        Self {
            input,
            target: target.max(1),
            carry: Vec::new(),
            next_line: 1,
            offset: 0,
            eof: false,
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut buf = std::mem::take(&mut self.carry);
        let mut searched = 0;
        loop {
            if let Some(last_nl) = memchr::memrchr(b'\n', &buf[searched..]) {
                let cut = searched + last_nl + 1;
                if buf.len() >= self.target || self.eof {
                    self.carry = buf.split_off(cut);
                    return Ok(Some(self.finish(buf)));
                }
            }
            if self.eof {
                return Ok((!buf.is_empty()).then(|| self.finish(buf)));
            }
            searched = buf.len();
            let want = self.target.max(buf.len() / 2).max(1 << 16);
            buf.reserve(want);
            // `take` + `read_to_end` fills spare capacity without zeroing it first.
            let n = (&mut self.input).take(want as u64).read_to_end(&mut buf)?;
            if n == 0 {
                self.eof = true;
            }
        }
    }

    fn finish(&mut self, bytes: Vec<u8>) -> Chunk {
        let newlines = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        let lines = newlines + u64::from(bytes.last().is_some_and(|&b| b != b'\n'));
        self.offset += bytes.len() as u64;
        let chunk = Chunk {
            bytes,
            first_line: self.next_line,
            lines,
            end_offset: self.offset,
        };
        self.next_line += lines;
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(input: &[u8], target: usize) -> Vec<(u64, Vec<u8>)> {
        let mut r = ChunkReader::new(input, target);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().expect("read") {
            assert_eq!(c.lines().count() as u64, c.lines);
            out.extend(c.lines().map(|(n, l)| (n, l.to_vec())));
        }
        out
    }

    #[test]
    fn numbers_lines_across_chunk_sizes() {
        let input = b"a\r\nbb\n\nccc\nlast";
        let text = std::str::from_utf8(input).expect("utf-8");
        let std_lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
        assert_eq!(split_lines(input).collect::<Vec<_>>(), std_lines);
        let want: Vec<(u64, Vec<u8>)> = vec![
            (1, b"a".to_vec()),
            (2, b"bb".to_vec()),
            (3, b"".to_vec()),
            (4, b"ccc".to_vec()),
            (5, b"last".to_vec()),
        ];
        for target in [1, 2, 3, 7, 100] {
            assert_eq!(all_lines(input, target), want, "target {target}");
        }
        assert_eq!(all_lines(b"x\n", 1), vec![(1, b"x".to_vec())]);
        assert!(all_lines(b"", 4).is_empty());
        assert_eq!(all_lines(b"\n", 4), vec![(1, b"".to_vec())]);
    }
}
