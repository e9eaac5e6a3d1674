//! Random bytes from the OS (secret keys, writer and session ids) and their hex text.

use std::io::Read;

/// `N` bytes from `/dev/urandom`.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

/// Lower-case hex digits of `bytes`, two a byte.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_differ_and_hex_has_two_digits_a_byte() {
        let (a, b) = (
            random_bytes::<16>().expect("urandom"),
            random_bytes::<16>().expect("urandom"),
        );
        assert_ne!(a, b);
        assert_eq!(hex(&[0, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
