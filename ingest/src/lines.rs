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
        let body = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        let empty = self.bytes.is_empty();
        body.split(|&b| b == b'\n')
            .filter(move |_| !empty)
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .zip(self.first_line..)
            .map(|(l, n)| (n, l))
    }
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
            if let Some(last_nl) = buf[searched..].iter().rposition(|&b| b == b'\n') {
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
            let start = buf.len();
            buf.resize(start + want, 0);
            let n = loop {
                match self.input.read(&mut buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            buf.truncate(start + n);
            if n == 0 {
                self.eof = true;
            }
        }
    }

    fn finish(&mut self, bytes: Vec<u8>) -> Chunk {
        let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
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
