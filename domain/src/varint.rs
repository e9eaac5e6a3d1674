//! LEB128 varints, as the checkpoint's compact encodings write them (call states, cells).

/// Appends `v`, 7 bits a byte, lowest first.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` at the start of `buf` as [`put`] appends it; returns its length.
///
/// # Panics
/// When `buf` is shorter than the varint (at most 10 bytes).
pub fn put_in(buf: &mut [u8], mut v: u64) -> usize {
    let mut len = 0;
    while v >= 0x80 {
        buf[len] = (v as u8) | 0x80;
        len += 1;
        v >>= 7;
    }
    buf[len] = v as u8;
    len + 1
}

/// A signed value as an unsigned one for a varint: small magnitudes stay small
/// (0, -1, 1, -2 … become 0, 1, 2, 3 …).
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The signed value [`zigzag`] made `z` of.
pub fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// The varint at `*at` in `b`, moving `*at` past it; `None` when cut short or too long.
pub fn read(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn varints_round_trip_and_cut_ones_are_refused() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            super::put(&mut b, v);
            let mut at = 0;
            assert_eq!(super::read(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
            let mut fixed = [0u8; 10];
            let n = super::put_in(&mut fixed, v);
            assert_eq!(&fixed[..n], &b[..]);
            b.pop();
            assert_eq!(super::read(&b, &mut 0), None);
        }
        for v in [0, -1, 1, -2, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(super::unzigzag(super::zigzag(v)), v);
        }
        assert_eq!([0, -1, 1, -2].map(super::zigzag), [0, 1, 2, 3]);
    }
}
