//! Cuts a byte stream into chunks of whole lines, so that chunks can be parsed in
//! parallel and their results put back in order. Lines are not counted here (a pass over
//! every byte): the parse workers number a chunk's lines from 1 as they split them, and
//! the in-order stage turns those numbers into the stream's (see `pipeline`).

use std::io::Read;

/// Whole lines from a stream.
#[derive(Debug, Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// Bytes of the stream consumed up to the end of this chunk.
    pub end_offset: u64,
}

/// A line longer than this is cut while reading (it is malformed anyway: the limit is
/// 65,536 bytes), so one runaway line cannot exhaust memory.
const OVERLONG_LINE_BYTES: usize = 1 << 20;
/// What is kept of such a line: more than the limit, so that it is rejected as too long.
const KEPT_OF_OVERLONG: usize = 65_536 + 1_024;

/// Reads chunks of about `target` bytes, always ending at a line end (or at EOF).
pub struct ChunkReader<R> {
    input: R,
    target: usize,
    carry: Vec<u8>,
    /// Buffers of chunks already processed, to fill again: fresh memory costs a page
    /// fault per 4 KiB, more than reading into it.
    spare: Vec<Vec<u8>>,
    offset: u64,
    eof: bool,
    /// See [`Self::eager`].
    eager: bool,
}

impl<R: Read> ChunkReader<R> {
    pub fn new(input: R, target: usize) -> Self {
        Self {
            input,
            target: target.max(1),
            carry: Vec::new(),
            spare: Vec::new(),
            offset: 0,
            eof: false,
            eager: false,
        }
    }

    /// Like [`Self::new`], but a chunk is handed out as soon as one read brings whole
    /// lines, however few (at most `target` bytes): for a pipe fed slowly, such as
    /// `tail -f`, whose lines must not wait for more input to accumulate.
    pub fn eager(input: R, target: usize) -> Self {
        Self {
            eager: true,
            ..Self::new(input, target)
        }
    }

    /// Hands back the buffer of a processed chunk for a later chunk.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        const KEPT: usize = 4;
        if self.spare.len() < KEPT {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        // The carry never holds a line end: the current line starts at 0.
        let mut line_start = 0;
        let mut searched = 0;
        loop {
            if let Some(last_nl) = memchr::memrchr(b'\n', &buf[searched..]) {
                line_start = searched + last_nl + 1;
                if buf.len() >= self.target || self.eof || self.eager {
                    self.carry.extend_from_slice(&buf[line_start..]);
                    buf.truncate(line_start);
                    return Ok(Some(self.finish(buf)));
                }
            }
            if self.eof {
                return Ok((!buf.is_empty()).then(|| self.finish(buf)));
            }
            if buf.len() - line_start > OVERLONG_LINE_BYTES {
                // A line far over the limit (a binary file, a runaway writer): keep enough
                // of it to be rejected as too long, skip the rest without holding it.
                let dropped = buf.len() - (line_start + KEPT_OF_OVERLONG);
                buf.truncate(line_start + KEPT_OF_OVERLONG);
                let (skipped, rest) = self.skip_to_line_end()?;
                self.offset += (dropped + skipped) as u64;
                searched = buf.len();
                if let Some(rest) = rest {
                    buf.push(b'\n');
                    searched = buf.len() - 1;
                    buf.extend_from_slice(&rest);
                }
                continue;
            }
            searched = buf.len();
            let want = self.target.max(buf.len() / 2).max(1 << 16);
            buf.reserve(want);
            let n = if self.eager {
                read_once(&mut self.input, &mut buf, want)?
            } else {
                // `take` + `read_to_end` fills spare capacity without zeroing it first.
                (&mut self.input).take(want as u64).read_to_end(&mut buf)?
            };
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// Reads and drops input up to and including the next `\n`. Returns the bytes dropped
    /// before it and what followed it in the last block read (`None` at end of input).
    fn skip_to_line_end(&mut self) -> std::io::Result<(usize, Option<Vec<u8>>)> {
        let mut skipped = 0;
        let mut block = vec![0u8; 1 << 16];
        loop {
            let n = match self.input.read(&mut block) {
                Ok(0) => {
                    self.eof = true;
                    return Ok((skipped, None));
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match memchr::memchr(b'\n', &block[..n]) {
                Some(p) => return Ok((skipped + p, Some(block[p + 1..n].to_vec()))),
                None => skipped += n,
            }
        }
    }

    fn finish(&mut self, bytes: Vec<u8>) -> Chunk {
        self.offset += bytes.len() as u64;
        Chunk {
            bytes,
            end_offset: self.offset,
        }
    }
}

/// One `read` of at most `max` bytes appended to `buf` (0 at the end of the input).
fn read_once(input: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    let len = buf.len();
    buf.resize(len + max, 0);
    let read = loop {
        match input.read(&mut buf[len..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    buf.truncate(len + *read.as_ref().unwrap_or(&0));
    read
}

#[cfg(test)]
mod tests {
    use super::*;
    use netwait_aggregator::domain::line_scan::scan_lines;

    /// Input arriving in pieces, one per `read`, as from a pipe; counts the reads.
    struct Pieces {
        pieces: std::collections::VecDeque<&'static [u8]>,
        reads: usize,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            let Some(piece) = self.pieces.pop_front() else {
                return Ok(0);
            };
            buf[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    #[test]
    fn an_eager_reader_hands_out_whole_lines_without_waiting_for_more() {
        let input = Pieces {
            pieces: [&b"one\ntw"[..], b"o\n", b"three"].into(),
            reads: 0,
        };
        let mut r = ChunkReader::eager(input, 1 << 20);
        let first = r.next_chunk().expect("read").expect("a chunk");
        assert_eq!(&*first.bytes, b"one\n");
        assert_eq!(
            r.input.reads, 1,
            "read no further than the first whole line"
        );
        let second = r.next_chunk().expect("read").expect("a chunk");
        assert_eq!(&*second.bytes, b"two\n");
        let last = r.next_chunk().expect("read").expect("a chunk");
        assert_eq!(&*last.bytes, b"three");
        assert!(r.next_chunk().expect("read").is_none());
    }

    fn all_lines(input: &[u8], target: usize) -> Vec<(u64, Vec<u8>)> {
        let mut r = ChunkReader::new(input, target);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().expect("read") {
            let before = out.len() as u64;
            let lines = scan_lines(&c.bytes).zip(before + 1..);
            out.extend(lines.map(|(l, n)| (n, l.bytes().to_vec())));
            // Dirty recycled buffers must not leak into later chunks.
            let mut bytes = c.bytes;
            bytes.fill(b'#');
            r.recycle(bytes);
        }
        out
    }

    #[test]
    fn a_runaway_line_is_cut_and_numbering_goes_on() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5 << 20));
        input.extend_from_slice(b"\nthird\nfourth");
        let got = all_lines(&input, 1 << 16);
        let lens: Vec<(u64, usize)> = got.iter().map(|(n, l)| (*n, l.len())).collect();
        assert_eq!(lens, vec![(1, 5), (2, KEPT_OF_OVERLONG), (3, 5), (4, 6)]);
        // Also when the runaway line is the last one.
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'y', 3 << 20));
        let got = all_lines(&input, 1 << 16);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1.len(), KEPT_OF_OVERLONG);
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
