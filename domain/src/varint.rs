//! LEB128 varints, as the checkpoint's compact encodings write them (call states, cells).

/// Appends `v`, 7 bits a byte, lowest first.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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
            b.pop();
            assert_eq!(super::read(&b, &mut 0), None);
        }
    }
}
