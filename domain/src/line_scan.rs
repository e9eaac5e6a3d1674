//! Where a line ends (a vectorised search) and where its quotes are, found 16 bytes at a
//! time (the first stage of simdjson-style parsers): the walk of a plain line then jumps
//! from a string's opening quote to its closing one with a bit scan. The same pass over
//! the line tells whether it is ASCII, so that it needs no UTF-8 check of its own: the
//! input is split and checked in one go instead of three passes over every byte.

/// Longest line whose quotes are located.
pub const MAX_BYTES: usize = 512;

/// Bit `i` is set when byte `i` of the line is `"`.
pub struct QuoteMask([u64; MAX_BYTES / 64]);

/// One line of a buffer with what [`scan_lines`] learned of it. Its fields are private and
/// only the scan makes one, so what it says of the bytes is true of these bytes: the
/// validation of a scanned line relies on it (it reads an ASCII line as `str` without a
/// second check).
pub struct ScannedLine<'a> {
    bytes: &'a [u8],
    quotes: Option<QuoteMask>,
    ascii: bool,
}

impl<'a> ScannedLine<'a> {
    /// The line's bytes, terminator excluded.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The line, its quotes when it is plain, and whether it is plain and all ASCII.
    pub(crate) fn into_parts(self) -> (&'a [u8], Option<QuoteMask>, bool) {
        (self.bytes, self.quotes, self.ascii)
    }
}

/// One line of a buffer, as found by [`scan_line`]. Lines split as [`str::lines`] does:
/// at `\n`, with a `\r` stripped only as part of a `\r\n` terminator; a last line without
/// terminator counts, the empty tail after a final `\n` does not.
struct LineScan {
    /// End of the line's content (before its terminator).
    end: usize,
    /// Start of the next line (past the `\n`), or the buffer's length.
    next: usize,
    /// The line's quotes, when the line is plain: at most [`MAX_BYTES`], no backslash and
    /// no control character (so every quote delimits a string without escapes, and no
    /// string holds a byte JSON forbids in strings).
    quotes: Option<QuoteMask>,
    /// True when the line is plain and every byte is ASCII (so it is UTF-8).
    ascii: bool,
}

impl QuoteMask {
    /// The quotes of `line` (without terminator); `None` when it is not plain.
    #[cfg(test)]
    pub fn of(line: &[u8]) -> Option<Self> {
        plain_masks(line, 0, line.len()).map(|(quotes, _)| quotes)
    }

    /// Position of the first quote at or after `at`.
    pub fn next(&self, at: usize) -> Option<usize> {
        let mut w = at / 64;
        let mut m = *self.0.get(w)? & (u64::MAX << (at % 64));
        while m == 0 {
            w += 1;
            m = *self.0.get(w)?;
        }
        Some(w * 64 + m.trailing_zeros() as usize)
    }
}

/// The lines of `buf`, each with its scan.
pub fn scan_lines(buf: &[u8]) -> impl Iterator<Item = ScannedLine<'_>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= buf.len() {
            return None;
        }
        let scan = scan_line(buf, start);
        let line = ScannedLine {
            bytes: &buf[start..scan.end],
            quotes: scan.quotes,
            ascii: scan.ascii,
        };
        start = scan.next;
        Some(line)
    })
}

/// Scans the line of `buf` that starts at `start`.
fn scan_line(buf: &[u8], start: usize) -> LineScan {
    let rest = buf.get(start..).unwrap_or_default();
    let (newline, next) = match memchr::memchr(b'\n', rest) {
        Some(p) => (start + p, start + p + 1),
        None => (buf.len(), buf.len()),
    };
    // Like `str::lines`: a `\r` is stripped only as part of a `\r\n` terminator.
    let stripped = next > newline && newline > start && buf[newline - 1] == b'\r';
    let end = newline - usize::from(stripped);
    let (quotes, ascii) = match plain_masks(buf, start, end) {
        Some((quotes, ascii)) => (Some(quotes), ascii),
        None => (None, false),
    };
    LineScan {
        end,
        next,
        quotes,
        ascii,
    }
}

/// The quotes of the line `buf[start..end]` and whether it is ASCII; `None` when it is
/// not plain. Blocks may extend past `end` into `buf` (their extra bits are dropped):
/// only the last line of a buffer needs a padded copy.
fn plain_masks(buf: &[u8], start: usize, end: usize) -> Option<(QuoteMask, bool)> {
    let len = end - start;
    if len > MAX_BYTES {
        return None;
    }
    let (mut bad, mut high) = (0u16, 0u16);
    let mut words = [0u64; MAX_BYTES / 64];
    let mut put = |n: usize, m: Masks, keep: u16| {
        words[n / 4] |= u64::from(m.quotes & keep) << (16 * (n % 4));
        bad |= m.bad & keep;
        high |= m.high & keep;
    };
    let (blocks, _) = buf[start..].as_chunks::<16>();
    let full = len / 16;
    for (n, block) in blocks[..full].iter().enumerate() {
        put(n, block_masks(block), u16::MAX);
    }
    let tail = len % 16;
    if tail != 0 {
        let m = match blocks.get(full) {
            Some(block) => block_masks(block),
            None => {
                let mut last = [b'a'; 16];
                last[..tail].copy_from_slice(&buf[end - tail..end]);
                block_masks(&last)
            }
        };
        put(full, m, (1 << tail) - 1);
    }
    (bad == 0).then_some((QuoteMask(words), high == 0))
}

/// For 16 bytes, a bit per byte that is: `"`; a backslash or a control character;
/// non-ASCII.
#[derive(Debug, PartialEq, Eq)]
struct Masks {
    quotes: u16,
    bad: u16,
    high: u16,
}

fn block_masks(block: &[u8; 16]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86_64 baseline, so the CPU has it.
        unsafe { sse2::block_masks(block) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        swar_block_masks(block)
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::Masks;
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };

    #[target_feature(enable = "sse2")]
    pub(super) fn block_masks(block: &[u8; 16]) -> Masks {
        let x = u128::from_le_bytes(*block);
        let v = _mm_set_epi64x((x >> 64) as i64, x as i64);
        let quotes = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `byte <= 0x1f` as `max(byte, 0x1f) == 0x1f`.
        let ctl = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        Masks {
            quotes: quotes as u16,
            bad: _mm_movemask_epi8(_mm_or_si128(backslash, ctl)) as u16,
            high: _mm_movemask_epi8(v) as u16,
        }
    }
}

/// The same, a word at a time, exactly per byte (no borrow between bytes).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn swar_block_masks(block: &[u8; 16]) -> Masks {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // High bit of each byte that is zero.
    let zero = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
    // High bit of each byte below 0x20.
    let small = |x: u64| !(((x & LOW7) + ONES * 0x60) | x | LOW7);
    // The high bits gathered into the low 8 bits, byte 0 first.
    let gather = |h: u64| ((h >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u16;
    let mut m = Masks {
        quotes: 0,
        bad: 0,
        high: 0,
    };
    for (half, w) in block.as_chunks::<8>().0.iter().enumerate() {
        let x = u64::from_le_bytes(*w);
        let shift = 8 * half;
        m.quotes |= gather(zero(x ^ (ONES * u64::from(b'"')))) << shift;
        m.bad |= gather(zero(x ^ (ONES * u64::from(b'\\'))) | small(x)) << shift;
        m.high |= gather(x & (ONES * 0x80)) << shift;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_edits::Rng;

    #[test]
    fn finds_every_quote_and_refuses_escapes_and_controls() {
        let line =
            br#"{"a":"b","type":"offered","ts":"2019-01-02T08:00:47.055+01:00","call_id":"x"}"#;
        let q = QuoteMask::of(line).expect("plain");
        let mut at = 0;
        let mut found = Vec::new();
        while let Some(p) = q.next(at) {
            found.push(p);
            at = p + 1;
        }
        let want: Vec<usize> = (0..line.len()).filter(|&i| line[i] == b'"').collect();
        assert_eq!(found, want);
        assert!(QuoteMask::of(br#"{"a":"b\"c"}"#).is_none());
        assert!(QuoteMask::of(b"{\"a\":\"b\tc\"}").is_none());
        assert!(QuoteMask::of(b"{\"a\":\"b\nc\"}").is_none());
        assert!(QuoteMask::of(b"{\"a\":\"bc\"}\r").is_none());
        assert!(QuoteMask::of(&[b' '; MAX_BYTES + 1]).is_none());
        assert!(QuoteMask::of(&[b' '; MAX_BYTES]).is_some());
    }

    #[test]
    fn simd_and_word_versions_agree_on_every_byte() {
        for special in 0..=255u8 {
            for pos in 0..16 {
                let mut block = [b'a'; 16];
                block[pos] = special;
                block[(pos + 7) % 16] = b'"';
                let bits = |f: &dyn Fn(u8) -> bool| {
                    (0..16)
                        .filter(|&i| f(block[i]))
                        .fold(0u16, |m, i| m | 1 << i)
                };
                let want = Masks {
                    quotes: bits(&|c| c == b'"'),
                    bad: bits(&|c| c == b'\\' || c < 0x20),
                    high: bits(&|c| c >= 0x80),
                };
                assert_eq!(swar_block_masks(&block), want);
                assert_eq!(block_masks(&block), want);
            }
        }
    }

    /// The scan against a byte-by-byte statement of what it must find, over random
    /// buffers of the bytes that matter (line ends, quotes, controls, non-ASCII) and
    /// lines around the length limit.
    #[test]
    fn scan_agrees_with_a_plain_statement_of_the_rules() {
        const ALPHABET: &[u8] = b"\"\n\r\\\tab {}:,0\xc3\xa9\x7f";
        let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
        for round in 0..3_000 {
            let len = match round % 3 {
                0 => rng.below(40),
                1 => rng.below(1_200),
                _ => MAX_BYTES - 2 + rng.below(5),
            };
            // Mostly letters, so that long lines occur.
            let buf: Vec<u8> = (0..len)
                .map(|_| match rng.below(8) {
                    0 => *rng.pick(ALPHABET),
                    _ => b'a',
                })
                .collect();
            let mut start = 0;
            let mut want_lines = Vec::new();
            while start < buf.len() {
                let scan = scan_line(&buf, start);
                let line = &buf[start..scan.end];
                want_lines.push(line.to_vec());
                let plain =
                    line.len() <= MAX_BYTES && !line.iter().any(|&c| c == b'\\' || c < 0x20);
                assert_eq!(scan.quotes.is_some(), plain, "{line:?}");
                assert_eq!(scan.ascii, plain && line.is_ascii(), "{line:?}");
                if let Some(q) = &scan.quotes {
                    let mut found = Vec::new();
                    let mut at = 0;
                    while let Some(p) = q.next(at) {
                        found.push(p);
                        at = p + 1;
                    }
                    let want: Vec<usize> = (0..line.len()).filter(|&i| line[i] == b'"').collect();
                    assert_eq!(found, want);
                }
                assert_eq!(&buf[start..scan.end], line);
                start = scan.next;
            }
            // `str::lines` on the same bytes (as Latin-1 text, so every byte is a char).
            let text: String = buf.iter().map(|&b| char::from(b)).collect();
            let std_lines: Vec<Vec<u8>> = text
                .lines()
                .map(|l| l.chars().map(|c| c as u8).collect())
                .collect();
            assert_eq!(want_lines, std_lines, "{buf:?}");
        }
    }
}
