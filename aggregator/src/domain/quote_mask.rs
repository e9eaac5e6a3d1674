//! Where the quotes of a line are, found 16 bytes at a time before the line is walked
//! (the first stage of simdjson-style parsers): the walk then jumps from a string's
//! opening quote to its closing one with a bit scan, instead of scanning each string
//! byte by byte with a load-compare-branch chain per string.

/// Longest line this covers.
pub const MAX_BYTES: usize = 512;

/// Bit `i` is set when byte `i` of the line is `"`.
pub struct QuoteMask([u64; MAX_BYTES / 64]);

impl QuoteMask {
    /// The quotes of `line`; `None` when it is longer than [`MAX_BYTES`] or holds a
    /// backslash or a control character (so every quote delimits a string, and no string
    /// holds an escape or a byte JSON forbids in strings).
    pub fn of(line: &[u8]) -> Option<Self> {
        if line.len() > MAX_BYTES {
            return None;
        }
        let mut words = [0u64; MAX_BYTES / 64];
        let mut bad = false;
        let (blocks, tail) = line.as_chunks::<16>();
        for (n, block) in blocks.iter().enumerate() {
            let (quotes, b) = block_masks(block);
            bad |= b;
            words[n / 4] |= u64::from(quotes) << (16 * (n % 4));
        }
        if !tail.is_empty() {
            // Padded with a byte that is neither a quote nor special.
            let mut last = [b'a'; 16];
            last[..tail.len()].copy_from_slice(tail);
            let n = blocks.len();
            let (quotes, b) = block_masks(&last);
            bad |= b;
            words[n / 4] |= u64::from(quotes) << (16 * (n % 4));
        }
        (!bad).then_some(Self(words))
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

/// For 16 bytes: a bit per `"`, and whether any is a backslash or a control character.
fn block_masks(block: &[u8; 16]) -> (u16, bool) {
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
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };

    #[target_feature(enable = "sse2")]
    pub(super) fn block_masks(block: &[u8; 16]) -> (u16, bool) {
        let x = u128::from_le_bytes(*block);
        let v = _mm_set_epi64x((x >> 64) as i64, x as i64);
        let quotes = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `byte <= 0x1f` as `max(byte, 0x1f) == 0x1f`.
        let ctl = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        let bad = _mm_movemask_epi8(_mm_or_si128(backslash, ctl));
        (quotes as u16, bad != 0)
    }
}

/// The same, a word at a time, exactly per byte (no borrow between bytes).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn swar_block_masks(block: &[u8; 16]) -> (u16, bool) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // High bit of each byte that is zero.
    let zero = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
    // High bit of each byte below 0x20.
    let small = |x: u64| !(((x & LOW7) + ONES * 0x60) | x | LOW7);
    // The high bits gathered into the low 8 bits, byte 0 first.
    let gather = |h: u64| ((h >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u16;
    let mut quotes = 0u16;
    let mut bad = 0u64;
    for (half, w) in block.as_chunks::<8>().0.iter().enumerate() {
        let x = u64::from_le_bytes(*w);
        quotes |= gather(zero(x ^ (ONES * u64::from(b'"')))) << (8 * half);
        bad |= zero(x ^ (ONES * u64::from(b'\\'))) | small(x);
    }
    (quotes, bad != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                let want_quotes = (0..16)
                    .filter(|&i| block[i] == b'"')
                    .fold(0u16, |m, i| m | 1 << i);
                let want_bad = block.iter().any(|&c| c == b'\\' || c < 0x20);
                assert_eq!(swar_block_masks(&block), (want_quotes, want_bad));
                assert_eq!(block_masks(&block), (want_quotes, want_bad));
            }
        }
    }
}
