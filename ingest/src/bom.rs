//! A leading UTF-8 byte order mark (written by some Windows tools) is skipped, not
//! rejected: it is not part of the first line. Only the first bytes of an input are
//! looked at; the line splitter and the parse workers never see it.

use std::io::Read;

pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading BOM (the start of an input, or the first line of a stream).
pub fn strip(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// A reader that drops a BOM at the very start of `R`, however its first reads are cut.
pub struct SkipBom<R> {
    input: R,
    /// The first bytes read while looking for a BOM, not yet handed out (`None`: not
    /// looked yet).
    head: Option<([u8; 3], usize, usize)>,
}

impl<R: Read> SkipBom<R> {
    pub fn new(input: R) -> Self {
        Self { input, head: None }
    }

    /// Reads up to 3 bytes (fewer only at the end of input) and keeps them unless they
    /// are a BOM.
    fn look(&mut self) -> std::io::Result<([u8; 3], usize, usize)> {
        let mut head = [0u8; 3];
        let mut len = 0;
        while len < 3 {
            match self.input.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let start = if head[..len] == *UTF8_BOM { 3 } else { 0 };
        Ok((head, start, len))
    }
}

impl<R: Read> Read for SkipBom<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (head, start, len) = match self.head {
            Some(h) => h,
            None => {
                let h = self.look()?;
                self.head = Some(h);
                h
            }
        };
        if start < len && !buf.is_empty() {
            let n = (len - start).min(buf.len());
            buf[..n].copy_from_slice(&head[start..start + n]);
            self.head = Some((head, start + n, len));
            return Ok(n);
        }
        self.input.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte a read (a slow pipe).
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }

    fn read_all(r: impl Read) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = r;
        r.read_to_end(&mut out).expect("read");
        out
    }

    #[test]
    fn a_leading_bom_is_dropped_and_nothing_else() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"\xEF\xBB\xBF{\"a\":1}\n", b"{\"a\":1}\n"),
            (b"{\"a\":1}\n", b"{\"a\":1}\n"),
            (b"\xEF\xBB\xBF", b""),
            (b"\xEF\xBB", b"\xEF\xBB"),
            (b"", b""),
            // Only the first one: a second BOM is the line's (and rejected with it).
            (b"\xEF\xBB\xBF\xEF\xBB\xBFx", b"\xEF\xBB\xBFx"),
        ];
        for (input, want) in cases {
            assert_eq!(read_all(SkipBom::new(input)), want, "{input:?}");
            assert_eq!(read_all(SkipBom::new(Trickle(input))), want, "{input:?}");
            if input.starts_with(UTF8_BOM) || input.len() >= 3 {
                assert_eq!(strip(input), want);
            }
        }
    }
}
